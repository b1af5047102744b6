"""The real OscuClient against the simulator over loopback: one test per outcome class.

These pin the contract between the two halves of the project: whatever the simulator
answers (or fails to answer) must land in the outcome kind the drain loop expects.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from schemas.settings import OscuSettings
from simulator import SimulatorHandle, run_simulator
from simulator.ledger import read_records
from simulator.samples import Line, item_body, sale_body, stock_io_body
from worker.oscu.client import OscuClient
from worker.oscu.credentials import DeviceCredentials
from worker.oscu.outcome import OutcomeKind

TIN = "P051234567A"
ITEM = "KE2NTNO0000001"
ITEM2 = "KE2NTNO0000002"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorHandle]:
    with run_simulator(tmp_path / "ledger.jsonl") as handle:
        yield handle


@pytest.fixture(params=["stdlib", "httpx"])
def client(sim: SimulatorHandle, request: pytest.FixtureRequest) -> Iterator[OscuClient]:
    """Built as the worker builds it, on each HTTP engine (``ETIMS_OSCU__HTTP_ENGINE``)."""
    settings = OscuSettings(connect_timeout_s=5.0, read_timeout_s=5.0, http_engine=request.param)
    with OscuClient.from_settings(sim.url, settings) as oscu:
        yield oscu


@pytest.fixture
def device(client: OscuClient) -> DeviceCredentials:
    init = client.call(
        "selectInitOsdcInfo",
        {"tin": TIN, "bhfId": "00", "dvcSrlNo": "SN-1"},
        device=None,
        write=True,
    )
    assert init.kind is OutcomeKind.ACCEPTED, init
    assert init.data is not None
    creds = DeviceCredentials(TIN, "00", SecretStr(init.data["info"]["cmcKey"]))
    for code in (ITEM, ITEM2):
        saved = client.call("saveItem", item_body(code), device=creds, write=True)
        assert saved.kind is OutcomeKind.ACCEPTED, saved
    return creds


def sell(client: OscuClient, device: DeviceCredentials, invc_no: int, **kw: Any) -> Any:
    return client.call(
        "saveTrnsSalesOsdc", sale_body(invc_no, [Line(ITEM, 1)], **kw), device=device, write=True
    )


def ledger_sales(sim: SimulatorHandle) -> list[int]:
    return [
        r["body"]["invcNo"]
        for r in read_records(sim.ledger_path)
        if r.get("endpoint") == "saveTrnsSalesOsdc"
    ]


def test_accepted_with_signature(client: OscuClient, device: DeviceCredentials) -> None:
    outcome = sell(client, device, 1)
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.data is not None and len(outcome.data["rcptSign"]) == 16
    assert len(outcome.data["intrlData"]) == 26


def test_empty_lookup(client: OscuClient, device: DeviceCredentials) -> None:
    outcome = client.call("selectInvoiceDetails", {"invcNo": 5}, device=device, write=False)
    assert (outcome.kind, outcome.result_code) == (OutcomeKind.EMPTY, "001")


def test_duplicate(client: OscuClient, device: DeviceCredentials) -> None:
    assert sell(client, device, 1).kind is OutcomeKind.ACCEPTED
    again = sell(client, device, 1)
    assert (again.kind, again.result_code) == (OutcomeKind.DUPLICATE, "921")


def test_sequence(client: OscuClient, device: DeviceCredentials) -> None:
    # stock-out 11 of an item no accepted sale sold
    outcome = client.call(
        "insertStockIO", stock_io_body(1, "11", [Line(ITEM2, 1)]), device=device, write=True
    )
    assert (outcome.kind, outcome.result_code) == (OutcomeKind.SEQUENCE, "922")


def test_rate_limited(sim: SimulatorHandle, client: OscuClient, device: DeviceCredentials) -> None:
    sim.faults.add(kind="result_code", endpoint="saveTrnsSalesOsdc", code="990", times=1)
    assert sell(client, device, 1).kind is OutcomeKind.RATE_LIMITED
    assert sell(client, device, 1).kind is OutcomeKind.ACCEPTED


def test_transient_on_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    creds = DeviceCredentials(TIN, "00", SecretStr("k" * 64))
    with OscuClient(f"http://127.0.0.1:{closed_port}") as oscu:
        outcome = oscu.call(
            "saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), device=creds, write=True
        )
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.may_have_reached_kra is False


def test_transient_on_503(
    sim: SimulatorHandle, client: OscuClient, device: DeviceCredentials
) -> None:
    sim.faults.add(kind="http_error", endpoint="saveTrnsSalesOsdc", status=503, times=1)
    outcome = sell(client, device, 1)
    assert (outcome.kind, outcome.http_status) == (OutcomeKind.TRANSIENT, 503)
    assert ledger_sales(sim) == []


def test_unknown_on_lost_answer(
    sim: SimulatorHandle, client: OscuClient, device: DeviceCredentials
) -> None:
    # Given KRA records the sale but the answer never arrives
    sim.faults.add(kind="lost_answer", endpoint="saveTrnsSalesOsdc", times=1)
    outcome = sell(client, device, 1)
    # Then the outcome is unknown, and the resend of the same body is a duplicate
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert ledger_sales(sim) == [1]
    assert sell(client, device, 1).kind is OutcomeKind.DUPLICATE


def test_unknown_on_read_timeout_after_kra_recorded(
    sim: SimulatorHandle, device: DeviceCredentials
) -> None:
    # Given KRA signs at once but answers 1.5 s later, and a client that waits 0.3 s
    sim.faults.add(kind="latency", endpoint="saveTrnsSalesOsdc", ms=1500, times=1)
    with OscuClient(sim.url, timeout=httpx.Timeout(5.0, read=0.3)) as impatient:
        outcome = sell(impatient, device, 1)
    # Then the client cannot know, but the ledger holds the sale
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert ledger_sales(sim) == [1]


def test_rejected(client: OscuClient, device: DeviceCredentials) -> None:
    outcome = sell(client, device, 1, cust_tin="not-a-pin")
    assert (outcome.kind, outcome.result_code) == (OutcomeKind.REJECTED, "910")
    assert "custTin" in outcome.message


def test_auth_on_wrong_key(client: OscuClient, device: DeviceCredentials) -> None:
    wrong = DeviceCredentials(TIN, "00", SecretStr("0" * 64))
    outcome = sell(client, wrong, 1)
    assert (outcome.kind, outcome.result_code) == (OutcomeKind.AUTH, "901")
