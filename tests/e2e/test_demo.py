"""``etims-relay demo`` end to end, as a user runs it: a subprocess, nothing installed.

The expected numbers are worked out here from the scenario's rules (not imported from it), so
a change to the scenario or a job lost in the pipeline both show up as a mismatch. The ledger
the demo keeps is checked again independently of what the demo printed.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from simulator.ledger import read_records
from simulator.verify import verify_ledger
from worker.embedded_broker import embedded_redis_pid

BRANCHES, SALES = 2, 20
ITEMS = 5


def _expected_accepted(branches: int, sales: int) -> int:
    """Items, opening stock-in + a master per item, then per sale: the sale, its stock-out and a
    master per line (sale i has 1 + i % 3 lines), plus one credit note per 25 sales."""
    per_sale = sum(3 + i % 3 for i in range(sales))
    return branches * (ITEMS + 1 + ITEMS + per_sale + math.ceil(sales / 25))


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("etims-relay")
    return (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from etims_relay.cli import main; main()"]
    )


@pytest.mark.slow
def test_demo_settles_every_job_and_names_kras_refusals(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [
            *_cli(),
            "demo",
            "--branches",
            str(BRANCHES),
            "--sales",
            str(SALES),
            "--keep",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    # the dead records, with KRA's code and reason, per branch
    for bhf in ("00", "01"):
        assert (
            f"[910] itemList.0.itemCd: item KE2NTNO0000099 is not registered on branch {bhf}"
            in output
        ), output
    # (the stale counts are named twice: refused, then still dead in the summary)
    assert output.count("[910] rsdQty mismatch. Expected:") == 2 * BRANCHES, output
    # the bad sale's two dependents were blocked, naming the dead job they wait for
    assert output.count("dead [910]") == 2 * BRANCHES, output

    # the replay journey, as the commands an operator types: fix the cause, replay the sales
    flat = " ".join(output.split())
    assert "$ etims-relay dead list" in flat
    assert "$ etims-relay enqueue register-item.jsonl enqueued 4 new job(s)" in flat
    replays = re.findall(
        r"\$ etims-relay replay (\d+) --reason 'item KE2NTNO0000099 registered' job \1 is pending"
        r" again",
        flat,
    )
    assert len(replays) == BRANCHES, output

    # the fix (item + opening stock) and the replayed sale with its stock-out and master
    expected = _expected_accepted(BRANCHES, SALES) + BRANCHES * (2 + 3)
    found = re.search(r"accepted (\d+) of (\d+) job\(s\), (\d+) stock master", output)
    assert found, output
    accepted, superseded = int(found.group(1)), int(found.group(3))
    # (a stock master whose item has a later one waiting is superseded, never sent)
    assert accepted + superseded == expected
    assert int(found.group(2)) == expected + BRANCHES  # the stale count stays dead
    assert "ledger verifies" in output

    # KRA's side, checked again: every accepted write is in the ledger, and it is consistent
    ledger = workdir / "ledger.jsonl"
    assert verify_ledger(ledger).ok
    writes = Counter(
        r["endpoint"]
        for r in read_records(ledger)
        if r.get("kind") == "write" and r["endpoint"] != "selectInitOsdcInfo"
    )
    assert sum(writes.values()) == accepted
    # the replayed sales are KRA's: signed once each, with the item registered before them
    sales = [
        r
        for r in read_records(ledger)
        if r.get("kind") == "write" and r["endpoint"] == "saveTrnsSalesOsdc"
    ]
    for bhf in ("00", "01"):
        gift_cards = [
            r
            for r in sales
            if r["bhfId"] == bhf
            and any(line["itemCd"] == "KE2NTNO0000099" for line in r["body"]["itemList"])
        ]
        assert len(gift_cards) == 1, gift_cards

    # nothing left running: the embedded redis-server is gone with the workers and simulator
    assert embedded_redis_pid(workdir / ".etims-relay") is None
