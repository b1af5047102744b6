"""Onboarding devices through the real CLI: init, import (a key another system obtained),
list, codes sync, and the status line an operator sees when ETIMS_TAX_RATES disagrees with
KRA. No command ever prints a cmcKey."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.process import SimulatorProcess
from simulator.testing import SimClient
from tests.helpers import RelayEnv, ledger_writes
from tests.workload import TIN


def flat(text: str) -> str:
    """CLI text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_device_onboarding_through_the_cli_never_shows_a_key(
    relay_env: RelayEnv, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    outputs: list[str] = []

    def run(*args: str, input: str | None = None, check: bool = True) -> str:
        result = relay_env.cli(*args, input=input, check=check)
        outputs.append(result.stdout + result.stderr)
        return flat(result.stdout + result.stderr)

    relay_env.cli("db", "upgrade")
    # Given branch 00 initialised by us, and branch 01 by another system (KRA keeps its key)
    initialised = run("device", "init", "--tin", TIN, "--bhf-id", "00", "--serial", "S-00")
    assert "tax rates A=0.00 B=16.00 C=0.00 D=0.00 E=8.00" in initialised
    with SimClient(simulator.url) as other_system:
        key_01 = other_system.init(TIN, "01", "S-01").cmc_key

    # When we try to initialise 01: KRA's 902, and the command that helps
    refused = run("device", "init", "--tin", TIN, "--bhf-id", "01", "--serial", "S-01",
                  check=False)  # fmt: skip
    assert "902" in refused and "etims-relay device import" in refused

    # When a wrong key is imported: a clear error and nothing stored
    (tmp_path / "wrong.key").write_text("0" * 64 + "\n")
    wrong = run("device", "import", "--tin", TIN, "--bhf-id", "01", "--serial", "S-01",
                "--cmc-key-file", str(tmp_path / "wrong.key"), check=False)  # fmt: skip
    assert "KRA refused the key" in wrong and "nothing stored" in wrong
    listed = json.loads(relay_env.cli("device", "list", "--json").stdout)
    assert [d["bhf_id"] for d in listed] == ["00"]

    # When the right key is piped in
    imported = run("device", "import", "--tin", TIN, "--bhf-id", "01", "--serial", "S-01",
                   "--cmc-key-file", "-", input=key_01 + "\n")  # fmt: skip
    assert "imported" in imported and "E=8.00" in imported

    # Then both devices are listed with their rates and when their key last worked
    listed = json.loads(run("device", "list", "--json"))
    assert [(d["bhf_id"], d["tax_rates"]["E"]) for d in listed] == [("00", "8.00"), ("01", "8.00")]
    assert all(d["key_ok_at"] is not None for d in listed)
    assert "key last worked" in run("device", "list")

    # When codes are synced on demand, every device answers
    synced = json.loads(run("codes", "sync", "--json"))
    assert [(s["branch"], s["outcome"]) for s in synced] == [(f"{TIN}/00", "accepted"),
                                                             (f"{TIN}/01", "accepted")]  # fmt: skip

    # When an override disagrees with KRA, status says so (text and JSON)
    relay_env.extra["ETIMS_TAX_RATES"] = '{"A": 0, "B": 16, "C": 0, "D": 0, "E": 0}'
    status = relay_env.status()["tax_rates"]
    assert status["override"]["E"] == "0"
    assert [m["branch"] for m in status["mismatches"]] == [f"{TIN}/00", f"{TIN}/01"]
    assert status["mismatches"][0]["differences"] == {"E": {"kra": "8.00", "override": "0"}}
    assert "ETIMS_TAX_RATES disagrees with KRA" in run("status")

    # And no output ever held a key KRA issued
    inits = ledger_writes(simulator.ledger, ["selectInitOsdcInfo"])
    keys = [w["data"]["info"]["cmcKey"] for w in inits]
    assert len(keys) == 2
    assert not [k for k in keys for text in outputs if k in text]
