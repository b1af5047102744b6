"""The simulator over real HTTP: envelopes, lookups, fault modes, admin API, restarts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator import SimulatorHandle, SimulatorProcess, run_simulator, verify_ledger
from simulator.ledger import read_records
from simulator.process import simulator_command
from simulator.samples import Line, item_body, sale_body, stock_io_body
from simulator.testing import SimClient, SimDevice

TIN = "P051234567A"
ITEM = "KE2NTNO0000001"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorHandle]:
    with run_simulator(tmp_path / "ledger.jsonl", seed=1) as handle:
        yield handle


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[SimClient]:
    with SimClient(sim.url) as c:
        yield c


@pytest.fixture
def device(client: SimClient) -> SimDevice:
    dev = client.init(TIN)
    assert client.post("saveItem", item_body(ITEM), dev)["resultCd"] == "000"
    return dev


def sales_in_ledger(path: Path) -> list[int]:
    return [
        r["body"]["invcNo"] for r in read_records(path) if r.get("endpoint") == "saveTrnsSalesOsdc"
    ]


def test_envelope_init_info_and_lookups(client: SimClient, device: SimDevice) -> None:
    assert re.fullmatch(r"KRACU01\d{8}", device.info["sdcId"])
    assert {"tin", "taxprNm", "bhfId", "bhfNm", "dvcId", "mrcNo", "cmcKey"} <= set(device.info)
    codes = client.post("selectCodeList", {"lastReqDt": "20180101000000"}, device)
    assert re.fullmatch(r"\d{14}", codes["resultDt"])
    classes = {c["cdCls"]: c for c in codes["data"]["clsList"]}
    assert {"04", "07", "10", "12", "17"} <= set(classes)
    rates = {d["cd"]: d["userDfnCd1"] for d in classes["04"]["dtlList"]}
    assert rates["B"] == "16.00"
    assert (
        client.post("selectCodeList", {"lastReqDt": codes["resultDt"]}, device)["resultCd"] == "001"
    )
    items = client.post("selectItemList", {"lastReqDt": "20180101000000"}, device)
    assert [i["itemCd"] for i in items["data"]["itemList"]] == [ITEM]
    assert (
        client.post("selectNoticeList", {"lastReqDt": "20180101000000"}, device)["resultCd"]
        == "000"
    )
    assert (
        client.post("selectBhfList", {"lastReqDt": "20180101000000"}, device)["data"]["bhfList"][0][
            "bhfId"
        ]
        == "00"
    )
    for empty in ("selectImportItemList", "selectStockMoveList", "selectTrnsPurchaseSalesList"):
        assert client.post(empty, {"lastReqDt": "20180101000000"}, device)["resultCd"] == "001"
    assert (
        client.post("selectCustomer", {"custmTin": TIN}, device)["data"]["custList"][0]["tin"]
        == TIN
    )
    assert client.post("selectCustomer", {"custmTin": "A000000000Z"}, device)["resultCd"] == "001"


def test_header_names_are_case_insensitive_and_paths_are_strict(
    client: SimClient, device: SimDevice
) -> None:
    lower = {"TIN": TIN, "BHFID": "00", "CMCKEY": device.cmc_key}
    response = client.http.post(
        "/selectNoticeList", json={"lastReqDt": "20180101000000"}, headers=lower
    )
    assert response.json()["resultCd"] == "000"
    assert client.http.post("/saveTrnsSales", json={}).status_code == 404
    assert client.http.get("/selectNoticeList").json()["resultCd"] == "912"


def test_sale_then_invoice_details(client: SimClient, device: SimDevice) -> None:
    body = sale_body(1, [Line(ITEM, 2)], cust_tin="P000000001Z")
    signed = client.post("saveTrnsSalesOsdc", body, device)["data"]
    details = client.post("selectInvoiceDetails", {"invcNo": 1}, device)
    sale = details["data"]["salesList"][0]
    assert (sale["custTin"], sale["trdInvcNo"], sale["totAmt"]) == (
        "P000000001Z",
        "TRD-1",
        body["totAmt"],
    )
    receipt = sale["receipt"]
    assert receipt["rcptSign"] == signed["rcptSign"] and receipt["intrlData"] == signed["intrlData"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d", receipt["sdcDateTime"])
    assert client.post("selectInvoiceDetails", {"invcNo": 2}, device)["resultCd"] == "001"


def test_lost_answer_records_the_sale_but_drops_the_connection(
    sim: SimulatorHandle, client: SimClient, device: SimDevice
) -> None:
    # Given a lost_answer fault on sales
    sim.faults.add(kind="lost_answer", endpoint="saveTrnsSalesOsdc", times=1)
    # When a sale is sent, the client sees the connection close without an answer
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), device)
    # Then KRA recorded it: the ledger has it, and the resend is a duplicate
    assert sales_in_ledger(sim.ledger_path) == [1]
    assert (
        client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), device)["resultCd"] == "921"
    )
    assert sim.stats()["events"]["lost_answers"] == 1


def test_drop_records_nothing(sim: SimulatorHandle, client: SimClient, device: SimDevice) -> None:
    sim.faults.add(kind="drop", endpoint="saveTrnsSalesOsdc", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), device)
    assert sales_in_ledger(sim.ledger_path) == []
    assert (
        client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), device)["resultCd"] == "000"
    )


def test_http_error_and_result_code_faults(
    sim: SimulatorHandle, client: SimClient, device: SimDevice
) -> None:
    sim.faults.add(kind="http_error", endpoint="saveTrnsSalesOsdc", status=503, times=1)
    sim.faults.add(kind="result_code", endpoint="*", code="990", times=1)
    body = sale_body(1, [Line(ITEM, 1)])
    assert (
        client.http.post("/saveTrnsSalesOsdc", json=body, headers=device.headers).status_code == 503
    )
    assert client.post("saveTrnsSalesOsdc", body, device)["resultCd"] == "990"
    assert client.post("saveTrnsSalesOsdc", body, device)["resultCd"] == "000"
    assert sales_in_ledger(sim.ledger_path) == [1]


def test_latency_after_processing_outlasts_a_read_timeout(
    sim: SimulatorHandle, client: SimClient, device: SimDevice
) -> None:
    sim.faults.add(kind="latency", endpoint="saveTrnsSalesOsdc", ms=1500, times=1)
    with httpx.Client(base_url=sim.url, timeout=httpx.Timeout(5.0, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post(
                "/saveTrnsSalesOsdc", json=sale_body(1, [Line(ITEM, 1)]), headers=device.headers
            )
    assert sales_in_ledger(sim.ledger_path) == [1]


def test_no_invoice_details_answers_404(tmp_path: Path) -> None:
    with (
        run_simulator(tmp_path / "l.jsonl", invoice_details=False) as sim,
        SimClient(sim.url) as client,
    ):
        dev = client.init(TIN)
        response = client.http.post(
            "/selectInvoiceDetails", json={"invcNo": 1}, headers=dev.headers
        )
        assert response.status_code == 404


def test_subprocess_faults_over_admin_http_and_crash_restart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    with SimulatorProcess(ledger, approved_serials=["SN-OK"], seed=3) as proc:
        with SimClient(proc.url) as client:
            refused = client.http.post(
                "/selectInitOsdcInfo", json={"tin": TIN, "bhfId": "00", "dvcSrlNo": "SN-X"}
            )
            assert refused.json()["resultCd"] == "905"
            dev = client.init(TIN, serial="SN-OK")
            client.post("saveItem", item_body(ITEM), dev)
            # Given faults installed over HTTP from this (other) process
            admin = httpx.Client(base_url=f"{proc.url}/__admin", timeout=5)
            faults = [
                {"endpoint": "saveTrnsSalesOsdc", "kind": "result_code", "code": "990", "times": 1},
                {"endpoint": "*", "kind": "http_error", "status": 502, "times": 1},
            ]
            ids = admin.post("/faults", json=faults).json()["ids"]
            assert len(ids) == 2
            assert admin.post("/faults", json={"kind": "nope"}).status_code == 400
            assert len(admin.get("/faults").json()["faults"]) == 2
            # When sales arrive, Then the faults answer first, then the sale is signed
            assert (
                client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), dev)["resultCd"]
                == "990"
            )
            assert client.http.post("/selectNoticeList", json={"lastReqDt": "20180101000000"},
                                    headers=dev.headers).status_code == 502  # fmt: skip
            assert (
                client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), dev)["resultCd"]
                == "000"
            )
            proc.add_fault(kind="drop", endpoint="selectNoticeList")
            # exhausted rules stay listed (with their fired count) until cleared
            assert admin.delete("/faults").json() == {"cleared": 3}
            stats = admin.get("/stats").json()
            assert (
                stats["faults_fired"]["result_code"] == 1
                and stats["faults_fired"]["http_error"] == 1
            )
            assert stats["by_endpoint"]["saveTrnsSalesOsdc"]["results"] == {"990": 1, "000": 1}
            admin.close()
        # When the simulator is SIGKILLed and restarted on the same port and ledger
        proc.restart(crash=True)
        with SimClient(proc.url) as client:
            # Then the device key still works and the sequence continues
            assert (
                client.post("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)]), dev)["resultCd"]
                == "921"
            )
            assert (
                client.post("saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)]), dev)["resultCd"]
                == "000"
            )
            assert (
                client.post("insertStockIO", stock_io_body(1, "11", [Line(ITEM, 2)]), dev)[
                    "resultCd"
                ]
                == "000"
            )
    assert verify_ledger(ledger).ok
    done = subprocess.run([*simulator_command(), "simulator", "verify", "--ledger", str(ledger)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sales=2" in done.stdout and "stock_ios=1" in done.stdout
