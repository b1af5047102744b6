"""The till story with real processes: intake (uvicorn), Celery workers, PostgreSQL, Redis,
the simulator as KRA, and a till process that is killed mid-flush.

Given a till selling while the intake dies and the till itself is SIGKILLed, when both come
back, then every spooled sale reaches KRA exactly once, in spool order, and KRA's signature
of each sale is back in the till's spool for its receipt.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from producers.till.spool import Spool
from tests.helpers import ETIMS_RELAY, RelayEnv, WorkerPool, ledger_writes, wait_until
from tests.workload import TIN
from worker.device_init import init_device
from worker.runtime import build_runtime

pytestmark = pytest.mark.slow

SALES = 40

DRIVER = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from producers.till import SaleLine, Till

    spool, url, key, phase = sys.argv[1:5]
    sales = int(sys.argv[5])
    till = Till(spool, url, key, tin="P051234567A", bhf_id="00", batch_size=5, interval_s=0.1)
    if phase == "sell":
        till.enqueue_item("item-1", item_cd="KE2NTNO0000001", item_nm="Soap", price=Decimal("116"))
        stock = SaleLine("KE2NTNO0000001", "Soap", Decimal(1000), Decimal("116"))
        till.enqueue_stock_io("opening", [stock], sar_ty_cd="06", depends_on=["item-1"])
        for n in range(1, sales + 1):
            line = SaleLine("KE2NTNO0000001", "Soap", Decimal(1), Decimal("116"))
            till.enqueue_sale(f"sale-{n}", [line], trd_invc_no=f"T{n:03d}",
                              depends_on=["opening"] if n == 1 else ())
            print(f"spooled {n}", flush=True)
            time.sleep(0.05)
        time.sleep(3600)  # keep flushing until killed
    else:
        while True:
            if all(till.receipt(f"sale-{n}") for n in range(1, sales + 1)):
                print("all signed", flush=True)
                break
            time.sleep(0.2)
        till.close()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_intake(relay: RelayEnv, port: int) -> subprocess.Popen[bytes]:
    log = open(relay.workdir / f"intake-{port}.log", "ab")
    proc = subprocess.Popen(
        [ETIMS_RELAY, "intake", "--host", "127.0.0.1", "--port", str(port)],
        env=relay.env(),
        cwd=relay.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(lambda: _healthy(port), timeout=30, what="intake /healthz")
    return proc


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _till(relay: RelayEnv, args: list[str], name: str) -> subprocess.Popen[bytes]:
    script = relay.workdir / "till_driver.py"
    script.write_text(DRIVER)
    out = open(relay.workdir / f"{name}.log", "wb")
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=Path(__file__).resolve().parents[3],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )


def _counts(spool_path: Path) -> dict[str, int]:
    if not spool_path.exists():
        return {}
    spool = Spool(spool_path)
    try:
        return spool.counts()
    finally:
        spool.close()


def test_killed_intake_and_killed_till_lose_nothing_duplicate_nothing_and_get_signatures(
    relay_env: RelayEnv, workers: WorkerPool, simulator: object, tmp_path: Path
) -> None:
    runtime = build_runtime(relay_env.settings(), need_broker=False)
    try:
        init_device(
            runtime.engine, runtime.client, runtime.devices, tin=TIN, bhf_id="00", serial="SER-00"
        )
    finally:
        runtime.close()
    workers.start(1, concurrency=4)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    intake = _start_intake(relay_env, port)
    key = relay_env.cli("apikey", "create", "--tin", TIN).stdout.strip().splitlines()[-1]
    spool_path = tmp_path / "till" / "spool.db"
    args = [str(spool_path), url, key]

    # Given a till selling and flushing in small batches
    seller = _till(relay_env, [*args, "sell", str(SALES)], "till-sell")
    try:
        # When the intake dies mid-flush, the till keeps selling, and then the till is killed
        wait_until(
            lambda: _counts(spool_path).get("forwarded", 0) >= 20,
            timeout=60,
            what="some records forwarded",
        )
        _kill(intake)
        sell_log = relay_env.workdir / "till-sell.log"
        wait_until(
            lambda: f"spooled {SALES}\n" in sell_log.read_text(),
            timeout=60,
            what="every sale spooled while the intake is down",
        )
        assert _counts(spool_path)["spooled"] > 0
    finally:
        _kill(seller)

    # And both come back
    intake = _start_intake(relay_env, port)
    finisher = _till(relay_env, [*args, "finish", str(SALES)], "till-finish")
    try:
        assert finisher.wait(timeout=90) == 0, (relay_env.workdir / "till-finish.log").read_text()
    finally:
        _kill(finisher)
        _kill(intake)

    # Then KRA has each sale exactly once, in spool order
    sales = [w["body"]["trdInvcNo"] for w in ledger_writes(simulator.ledger, ["saveTrnsSalesOsdc"])]  # type: ignore[attr-defined]
    assert sales == [f"T{n:03d}" for n in range(1, SALES + 1)]
    # And every sale's signature is in the spool, with its QR link
    spool = Spool(spool_path)
    try:
        rows = {r["idempotency_key"]: r for r in spool.rows()}
        counts = spool.counts()
    finally:
        spool.close()
    assert counts["refused"] == counts["held"] == counts["spooled"] == 0, counts
    for n in range(1, SALES + 1):
        row = rows[f"sale-{n}"]
        assert row["job_state"] == "accepted" and row["signature"] and row["qr_url"], row
