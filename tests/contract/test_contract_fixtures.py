"""Contract tests: OSCU bodies from sources outside this project, replayed against both sides.

Each fixture in ``fixtures/`` restates a request or response published by someone else (the
spec's samples as transcribed by Paybill's docs, GavaConnect's reported validator, Odoo's
tests as the team reference transcribes them) and says in ``_source`` where it comes from and
what was changed. Requests go to the simulator, which must accept a valid one under the VAT
scheme it was written for (and refuse it under another) and refuse a known-bad one; valid
requests must also satisfy the relay's own request models and VAT arithmetic, so neither
reading of the spec can drift from the outside world unnoticed. Responses go through the
client (``OscuClient`` classification) and its parsing models.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from schemas.envelope import InitInfo, InvoiceDetails, SaleSignature
from schemas.requests import REQUEST_MODELS
from schemas.vat import check_sale_amounts, check_stock_io_amounts
from simulator import Simulator, SimulatorOptions
from simulator.answers import Answer
from simulator.options import DEFAULT_TAX_RATES
from simulator.samples import Line, item_body, stock_io_body
from worker.oscu import DeviceCredentials, OscuClient, OutcomeKind

FIXTURES = Path(__file__).parent / "fixtures"
TIN = "P051234567A"
DEVICE = DeviceCredentials(TIN, "00", SecretStr("fixture-cmc-key"))


def load(kind: str) -> list[Any]:
    found = []
    for path in sorted(FIXTURES.glob(f"{kind}_*.json")):
        doc = json.loads(path.read_text())
        found.append(pytest.param(doc, id=path.stem.removeprefix(f"{kind}_")))
    return found


REQUESTS = load("request")
RESPONSES = load("response")


def test_every_fixture_names_its_source() -> None:
    paths = sorted(FIXTURES.glob("*.json"))
    assert len(paths) == len(REQUESTS) + len(RESPONSES) >= 12
    for path in paths:
        source = json.loads(path.read_text())["_source"]
        assert all(source.get(k) for k in ("repository", "path", "what", "changed")), path.name


# -- requests: the simulator --------------------------------------------------------------------


def post(sim: Simulator, headers: dict[str, str], endpoint: str, body: Any) -> Answer:
    return sim.process(endpoint, headers, orjson.dumps(body))


def replay(tmp_path: Path, doc: dict[str, Any], scheme: str) -> Answer:
    """A fresh simulator under ``scheme``: a device, the items the body names, stock for a
    stock master; then the fixture's body."""
    sim = Simulator(tmp_path / f"{scheme}.jsonl", SimulatorOptions(vat_scheme=scheme))
    endpoint, body = doc["endpoint"], doc["body"]
    if endpoint == "selectInitOsdcInfo":
        return post(sim, {}, endpoint, body)
    init = post(sim, {}, "selectInitOsdcInfo", {"tin": TIN, "bhfId": "00", "dvcSrlNo": "FIX-1"})
    key = (init.data or {})["info"]["cmcKey"]
    headers = {"tin": TIN, "bhfid": "00", "cmckey": key}
    codes = {line.get("itemCd") for line in body.get("itemList", [])} | {body.get("itemCd")}
    for code in sorted(c for c in codes if isinstance(c, str)):
        assert post(sim, headers, "saveItem", item_body(code)).result_cd == "000"
    if endpoint == "saveStockMaster":
        stock_in = stock_io_body(1, "06", [Line(body["itemCd"], 10)], scheme=scheme)
        assert post(sim, headers, "insertStockIO", stock_in).result_cd == "000"
    return post(sim, headers, endpoint, body)


@pytest.mark.parametrize("doc", REQUESTS)
def test_the_simulator_answers_each_request_as_its_source_says(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    answer = replay(tmp_path, doc, doc["scheme"])
    assert answer.result_cd == doc["expect"], answer.message
    if "message" in doc:
        assert doc["message"] in answer.message


AMOUNT_ENDPOINTS = ("saveTrnsSalesOsdc", "insertStockIO")
VALID_WITH_AMOUNTS = [
    p
    for p in REQUESTS
    if p.values[0]["expect"] == "000" and p.values[0]["endpoint"] in AMOUNT_ENDPOINTS
]


@pytest.mark.parametrize("doc", VALID_WITH_AMOUNTS)
def test_a_valid_body_is_refused_under_any_other_vat_scheme(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    for scheme in {"inclusive", "split", "exclusive"} - {doc["scheme"]}:
        answer = replay(tmp_path, doc, scheme)
        assert (answer.result_cd, answer.message.startswith("Invalid")) == ("910", True), scheme


# -- requests: the relay's own models agree with the same outside sources ------------------------


@pytest.mark.parametrize("doc", [p for p in REQUESTS if p.values[0]["expect"] == "000"])
def test_the_relays_request_models_accept_each_valid_body(doc: dict[str, Any]) -> None:
    REQUEST_MODELS[doc["endpoint"]].model_validate(doc["body"])


@pytest.mark.parametrize("doc", VALID_WITH_AMOUNTS)
def test_the_relays_vat_arithmetic_agrees_with_each_valid_body(doc: dict[str, Any]) -> None:
    check = check_sale_amounts if doc["endpoint"] == "saveTrnsSalesOsdc" else check_stock_io_amounts
    assert check(doc["body"], doc["scheme"], dict(DEFAULT_TAX_RATES)) == []


# -- responses: the client ----------------------------------------------------------------------


def answered(doc: dict[str, Any]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=doc["body"])

    with OscuClient("http://kra.invalid", transport=httpx.MockTransport(handler)) as client:
        device = None if doc["endpoint"] == "selectInitOsdcInfo" else DEVICE
        write = doc["endpoint"] in ("selectInitOsdcInfo", "saveTrnsSalesOsdc", "insertStockIO")
        return client.call(doc["endpoint"], {}, device=device, write=write)


@pytest.mark.parametrize("doc", RESPONSES)
def test_the_client_reads_each_response_as_accepted(doc: dict[str, Any]) -> None:
    outcome = answered(doc)
    assert (outcome.kind, outcome.result_code) == (OutcomeKind.ACCEPTED, "000")


def by_id(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"response_{name}.json").read_text())
    return doc


@pytest.mark.parametrize("name", ["spec_init", "gavaconnect_init_wrapped"])
def test_init_info_yields_the_key_and_device_ids(name: str) -> None:
    doc = by_id(name)
    info = InitInfo.from_data(answered(doc).data)
    assert info.cmcKey.get_secret_value().startswith("fake-cmc-key-from-fixture")
    assert info.sdcId in ("KRACU013000001", "KRACU0400001224")
    assert info.mrcNo and info.dvcId
    assert "fake-cmc-key" not in repr(info)


def test_sale_signature_from_the_spec_sample() -> None:
    signature = SaleSignature.from_data(answered(by_id("spec_save_sale")).data)
    assert (signature.curRcptNo, signature.totRcptNo) == (1, 1)
    assert (signature.rcptSign, signature.sdcDateTime) == ("QUII27MATATSHFRB", "20210502115145")
    assert len(signature.intrlData) == 26


def test_invoice_details_recover_the_signature() -> None:
    details = InvoiceDetails.from_data(answered(by_id("odoo_invoice_details")).data)
    assert details is not None and details.signature is not None
    assert (details.invcNo, details.trdInvcNo, details.custTin) == (
        7,
        "INV/2024/00007",
        "A123456789Z",
    )
    assert (details.signature.curRcptNo, details.signature.totRcptNo) == (7, 9)
    assert details.signature.sdcDateTime == "20240415153039"


def test_code_list_gives_the_tax_rates_of_class_04() -> None:
    data = answered(by_id("spec_code_list")).data
    (taxes,) = [c for c in data["clsList"] if c["cdCls"] == "04"]
    rates = {row["cd"]: Decimal(row["userDfnCd1"]) for row in taxes["dtlList"]}
    assert rates == {"A": Decimal(0), "B": Decimal(18)}
