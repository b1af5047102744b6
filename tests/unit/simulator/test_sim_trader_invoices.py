"""The simulator's rule for a reused trader invoice number (994) follows its configured scope.

No OSCU source says whether KRA compares ``trdInvcNo`` per branch or per taxpayer; the
simulator assumes what the relay is configured for (``--trd-invc-no-scope``), and ``verify``
judges a ledger by the scope written in its start record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from etims_relay.cli import app
from simulator import Simulator, SimulatorOptions, verify_records
from simulator.answers import Answer
from simulator.ledger import read_records
from simulator.samples import Line, item_body, sale_body

TIN = "P051234567A"
ITEM = "KE2NTNO0000001"


class Device:
    """One branch's device; ``initialise=False`` reuses the one a reopened ledger knows."""

    def __init__(self, sim: Simulator, bhf_id: str, *, initialise: bool = True) -> None:
        self.sim = sim
        if initialise:
            init = sim.process(
                "selectInitOsdcInfo",
                {},
                orjson.dumps({"tin": TIN, "bhfId": bhf_id, "dvcSrlNo": f"SN-{bhf_id}"}),
            )
            assert init.result_cd == "000", init
        key = sim.state.devices[(TIN, bhf_id)].cmc_key
        self.headers = {"tin": TIN, "bhfid": bhf_id, "cmckey": key}
        if initialise:
            assert self.post("saveItem", item_body(ITEM)).result_cd == "000"
        self.invc_no = sim.state.branch(TIN, bhf_id).last_invc_no

    def post(self, endpoint: str, body: dict[str, Any]) -> Answer:
        return self.sim.process(endpoint, self.headers, orjson.dumps(body))

    def sell(self, trd_invc_no: str) -> Answer:
        answer = self.post(
            "saveTrnsSalesOsdc",
            sale_body(self.invc_no + 1, [Line(ITEM, 1)], trd_invc_no=trd_invc_no),
        )
        if answer.result_cd == "000":
            self.invc_no += 1
        return answer


def two_branches(tmp_path: Path, scope: str) -> tuple[Simulator, Device, Device]:
    sim = Simulator(tmp_path / "ledger.jsonl", SimulatorOptions(trd_invc_no_scope=scope))
    return sim, Device(sim, "00"), Device(sim, "01")


@pytest.mark.parametrize("scope", ["branch", "tin"])
def test_a_reused_number_on_the_same_branch_is_994(tmp_path: Path, scope: str) -> None:
    _, main, _ = two_branches(tmp_path, scope)
    assert main.sell("INV-1").result_cd == "000"
    again = main.sell("INV-1")
    assert again.result_cd == "994"
    assert "trdInvcNo INV-1 was already accepted as invcNo 1 on branch 00" in again.message


def test_branch_scope_lets_another_branch_use_the_number(tmp_path: Path) -> None:
    sim, main, other = two_branches(tmp_path, "branch")
    assert main.sell("INV-1").result_cd == "000"
    assert other.sell("INV-1").result_cd == "000"
    assert verify_records(list(read_records(sim.ledger.path))).ok


def test_tin_scope_refuses_the_number_on_another_branch(tmp_path: Path) -> None:
    _, main, other = two_branches(tmp_path, "tin")
    assert main.sell("INV-1").result_cd == "000"
    answer = other.sell("INV-1")
    assert answer.result_cd == "994"
    assert "on branch 00" in answer.message
    assert other.sell("INV-2").result_cd == "000"  # nothing was recorded for the refused sale


def test_off_accepts_a_reused_number(tmp_path: Path) -> None:
    sim, main, _ = two_branches(tmp_path, "off")
    assert main.sell("INV-1").result_cd == "000"
    assert main.sell("INV-1").result_cd == "000"
    assert verify_records(list(read_records(sim.ledger.path))).ok


def test_a_reopened_ledger_keeps_the_register(tmp_path: Path) -> None:
    _, main, _ = two_branches(tmp_path, "branch")
    assert main.sell("INV-1").result_cd == "000"
    # Restarted with the tin rule: the number accepted on branch 00 before is remembered.
    reopened = Simulator(tmp_path / "ledger.jsonl", SimulatorOptions(trd_invc_no_scope="tin"))
    assert Device(reopened, "01", initialise=False).sell("INV-1").result_cd == "994"
    assert Device(reopened, "00", initialise=False).sell("INV-2").result_cd == "000"


def test_verify_judges_by_the_scope_of_the_run(tmp_path: Path) -> None:
    sim, main, other = two_branches(tmp_path, "branch")
    main.sell("INV-1")
    other.sell("INV-1")
    records = list(read_records(sim.ledger.path))
    assert verify_records(records).ok
    # The same records judged as a tin-scoped run: the second use is a violation.
    as_tin = [
        {**r, "options": {**r["options"], "trd_invc_no_scope": "tin"}}
        if r.get("kind") == "start"
        else r
        for r in records
    ]
    report = verify_records(as_tin)
    assert any("trdInvcNo INV-1 already accepted" in v for v in report.violations)


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="trd_invc_no_scope"):
        SimulatorOptions(trd_invc_no_scope="company")


def test_the_cli_refuses_an_unknown_scope(tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger.jsonl")
    result = CliRunner().invoke(
        app, ["simulator", "--ledger", ledger, "--trd-invc-no-scope", "company"]
    )
    assert result.exit_code == 2
    assert "trd_invc_no_scope must be one of" in result.output
