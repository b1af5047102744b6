"""The simulator standing in for GavaConnect (``--flavour gavaconnect``): its paths, its OAuth
gateway, and the whole pipeline (sale + stock) going through both with ``oscu.flavour``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from producers import builders as b
from schemas.settings import OscuSettings
from simulator import SimulatorProcess
from simulator.runner import SimulatorHandle, run_simulator
from simulator.samples import Line, item_body, sale_body, stock_io_body
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline, make_settings
from tests.workload import TIN, item_code
from worker.device_init import init_device
from worker.oscu import OscuClient
from worker.runtime import build_runtime

BASIC = "Basic " + base64.b64encode(b"sim-consumer:sim-secret").decode()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorHandle]:
    with run_simulator(tmp_path / "ledger.jsonl", flavour="gavaconnect") as handle:
        yield handle


def token(http: httpx.Client) -> str:
    answer = http.get("/v1/token/generate", params={"grant_type": "client_credentials"},
                      headers={"Authorization": BASIC})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_in"] == "3599"
    value: str = answer.json()["access_token"]
    return value


def test_oscu_calls_need_a_bearer_token_from_its_token_endpoint(sim: SimulatorHandle) -> None:
    init = {"tin": TIN, "bhfId": "00", "dvcSrlNo": "SER-G"}
    with httpx.Client(base_url=sim.url) as http:
        # Without a token, or with one it never issued: the gateway's 401, nothing recorded
        for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": BASIC}):
            refused = http.post("/initialize", json=init, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["header"]["responseCode"] == 401
        assert sim.state.devices == {}
        # A token needs client credentials, a GET and the client_credentials grant
        assert (
            http.get("/v1/token/generate", params={"grant_type": "client_credentials"}).status_code
            == 401
        )
        assert http.post("/v1/token/generate", headers={"Authorization": BASIC}).content == b""
        # With a token: the device is initialised, its info inside GavaConnect's responseBody
        bearer = {"Authorization": f"Bearer {token(http)}"}
        answer = http.post("/initialize", json=init, headers=bearer).json()
    assert answer["responseHeader"]["responseCode"] == 200
    assert answer["responseBody"]["resultCd"] == "000"
    assert answer["responseBody"]["data"]["info"]["cmcKey"]
    assert (TIN, "00") in sim.state.devices


def test_renamed_endpoints_answer_only_on_their_gavaconnect_path(sim: SimulatorHandle) -> None:
    with httpx.Client(base_url=sim.url) as http:
        bearer = {"Authorization": f"Bearer {token(http)}"}
        init = http.post("/initialize", json={"tin": TIN, "bhfId": "00", "dvcSrlNo": "S"},
                         headers=bearer).json()  # fmt: skip
        key = init["responseBody"]["data"]["info"]["cmcKey"]
        device = {**bearer, "tin": TIN, "bhfId": "00", "cmcKey": key}
        item = item_body(item_code(1))
        assert http.post("/saveItem", json=item, headers=device).json()["resultCd"] == "000"
        stock_in = stock_io_body(1, "06", [Line(item_code(1), 5)])
        sale = sale_body(1, [Line(item_code(1), 1)])  # pkg = qty = 1 suits every pkg rule
        # The spec names of renamed endpoints are not paths on this host
        for path in ("/selectInitOsdcInfo", "/saveTrnsSalesOsdc", "/insertStockIO"):
            assert http.post(path, json=sale, headers=device).status_code == 404
        stock = http.post("/insert/stockIO", json=stock_in, headers=device).json()
        signed = http.post("/sendSalesTransaction", json=sale, headers=device).json()
        details = http.post("/selectInvoiceDetail", json={"invcNo": 1}, headers=device).json()
    assert (stock["resultCd"], signed["resultCd"], details["resultCd"]) == ("000", "000", "000")
    assert signed["data"]["rcptSign"]
    writes = [w["endpoint"] for w in ledger_writes(sim.ledger_path)]
    assert writes == ["selectInitOsdcInfo", "saveItem", "insertStockIO", "saveTrnsSalesOsdc"]


def test_a_restart_forgets_tokens_and_the_client_fetches_a_new_one(tmp_path: Path) -> None:
    # Given a client holding a token from a GavaConnect simulator that then restarts
    with SimulatorProcess(tmp_path / "ledger.jsonl", flavour="gavaconnect") as proc:
        settings = OscuSettings(
            flavour="gavaconnect",
            token_url=f"{proc.url}/v1/token/generate",
            consumer_key=SecretStr("sim-consumer"),
            consumer_secret=SecretStr("sim-secret"),
        )
        with OscuClient.from_settings(proc.url, settings) as client:
            assert client.init_device(TIN, "00", "SER-R").ok
            proc.restart()
            # When it calls again: the gateway's 401, a new token, and the call goes through
            outcome = client.init_device(TIN, "01", "SER-R1")
    assert outcome.ok, outcome


NOW = datetime.now(UTC)


@pytest.fixture
def gava_pipeline(db_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with run_simulator(tmp_path / "ledger.jsonl", flavour="gavaconnect") as sim:
        base = make_settings(db_url, sim.url, tmp_path)
        oscu = OscuSettings(
            connect_timeout_s=1,
            read_timeout_s=1,
            flavour="gavaconnect",
            token_url=f"{sim.url}/v1/token/generate",
            consumer_key=SecretStr("sim-consumer"),
            consumer_secret=SecretStr("sim-secret"),
        )
        runtime = build_runtime(base.model_copy(update={"oscu": oscu}), need_broker=False)
        try:
            init_device(runtime.engine, runtime.client, runtime.devices, tin=TIN, bhf_id="00",
                        serial="SER-00")  # fmt: skip
            yield Pipeline(runtime, sim)
        finally:
            runtime.close()


def test_a_sale_with_its_stock_goes_through_the_gavaconnect_paths(gava_pipeline: Pipeline) -> None:
    # Given an item, opening stock, and a sale with its stock-out and stock master
    water = item_code(1)
    line = b.SaleLine(water, "Water", Decimal("2"), Decimal("116"))
    records: list[dict[str, Any]] = [
        b.item(TIN, "00", "item-1", item_cd=water, item_nm="Water", price=Decimal("116")),
        b.stock_io(
            TIN,
            "00",
            "opening",
            [b.SaleLine(water, "Water", Decimal("10"), Decimal("116"))],
            sar_ty_cd="06",
            at=NOW,
            depends_on=["item-1"],
        ),
        # built with the pkg rule GavaConnect enforces (pkg 1 for an unpackaged line)
        *b.sale_with_stock(
            TIN, "00", "s1", [line], trd_invc_no="T1", at=NOW, pkg_rule="one_for_unpackaged"
        ),
    ]
    gava_pipeline.enqueue(records)
    # When the branch drains through a client configured for GavaConnect
    gava_pipeline.drain()
    # Then every job is accepted: KRA signed the sale and holds the stock in causal order
    assert set(gava_pipeline.states().values()) == {"accepted"}, gava_pipeline.states()
    assert gava_pipeline.job("s1").state == "accepted"
    writes = [w["endpoint"] for w in ledger_writes(gava_pipeline.sim.ledger_path)]
    assert writes == [
        "selectInitOsdcInfo",
        "saveItem",
        "insertStockIO",
        "saveTrnsSalesOsdc",
        "insertStockIO",
        "saveStockMaster",
    ]
    # and every call went through the gateway with a token (the simulator 401s any other)
    stats = gava_pipeline.sim.stats()["by_endpoint"]
    assert all("http_401" not in row["results"] for row in stats.values()), stats
