"""The real ``etims-relay`` CLI under races, outages and hostile stored strings: each run
succeeds, waits, or prints one ``error:`` line; never a traceback, never raw escapes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, update

from producers import builders as b
from producers.enqueue import enqueue
from tests.conftest import PG_ADMIN_DSN, _pg_url
from tests.helpers import ETIMS_RELAY, RelayEnv
from tests.workload import TIN, workload
from worker.outbox.db import make_engine
from worker.outbox.models import jobs

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


@pytest.fixture
def relay(tmp_path: Path, pg_url: str, redis_url: str, secret_key: str) -> RelayEnv:
    """CLI environment without a simulator: these commands never call KRA."""
    return RelayEnv.make(tmp_path, pg_url, redis_url, "http://127.0.0.1:9", secret_key)


def start(relay: RelayEnv, *args: str, **overrides: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ETIMS_RELAY, *args],
        env=relay.env(**overrides),
        cwd=relay.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out + err


def count_jobs(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())
    engine.dispose()
    return n


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def test_two_enqueue_runs_of_one_new_file_both_succeed(relay: RelayEnv) -> None:
    # Given a file of new jobs
    records = workload(branches=2, jobs_per_branch=20)
    path = relay.workdir / "batch.jsonl"
    path.write_text("\n".join(json.dumps(r, default=_number) for r in records) + "\n")
    dbname = relay.database_url.rsplit("/", 1)[1]
    with psycopg.connect(_pg_url(dbname)) as gate:
        # (the test holds the jobs table so that both runs look their keys up, find
        # nothing, and reach their writes before either commits: the race, every time)
        gate.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        # When two operators (or a retrying cron) enqueue it at the same time
        procs = [start(relay, "enqueue", str(path)) for _ in range(2)]
        deadline = time.time() + 60
        while _waiting_on_locks(dbname) < 2:
            assert time.time() < deadline, "the two runs never reached their writes"
            assert all(p.poll() is None for p in procs), [finish(p) for p in procs]
            time.sleep(0.05)
        gate.commit()
    results = [finish(p) for p in procs]
    # Then both succeed, and every job exists once
    for code, output in results:
        assert code == 0, output
        assert "Traceback" not in output
    assert count_jobs(relay.database_url) == len(records)


def _waiting_on_locks(dbname: str) -> int:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


def _fresh_pg() -> str:
    name = f"etims_mig_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_db_upgrades_at_once_both_succeed(relay: RelayEnv, store: str) -> None:
    for round_ in range(2):
        pg_name = _fresh_pg() if store == "postgresql" else None
        url = _pg_url(pg_name) if pg_name else f"sqlite:///{relay.workdir / f'fresh{round_}.db'}"
        try:
            # When two deploy hooks migrate the same new database at once
            procs = [start(relay, "db", "upgrade", ETIMS_DATABASE_URL=url) for _ in range(2)]
            results = [finish(p) for p in procs]
            # Then both end well (one waited for the other), and the schema is usable
            for code, output in results:
                assert code == 0, output
                assert "Traceback" not in output
            assert count_jobs(url) == 0
        finally:
            if pg_name:
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def test_commands_against_a_stopped_database_print_one_error_line(relay: RelayEnv) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = relay.database_url.replace(":5432/", f":{port}/")
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    path = relay.workdir / "one.jsonl"
    sale = b.sale(TIN, "00", "s1", [line], trd_invc_no="T-1", at=NOW)
    path.write_text(json.dumps(sale, default=_number) + "\n")
    for args in (("status",), ("dead", "list"), ("enqueue", str(path)), ("db", "upgrade")):
        code, output = finish(start(relay, *args, ETIMS_DATABASE_URL=down))
        output = " ".join(output.split())  # rich wraps long lines
        assert code == 75, (args, output)
        assert "Traceback" not in output
        assert "error: database unavailable" in output, output
        assert "run the command again" in output


def test_dead_list_and_show_escape_stored_control_sequences(relay: RelayEnv) -> None:
    # Given a dead job whose stored key and KRA message carry terminal escape sequences
    # (written before keys were checked, or sent by a misbehaving front door)
    engine = make_engine(relay.database_url)
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    [job] = enqueue(engine, [b.sale(TIN, "00", "s1", [line], trd_invc_no="T-1", at=NOW)])
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id)
            .values(
                state="dead",
                idempotency_key="s1\x1b[2J\x1b[31m[red]owned[/red]",
                result_code="910",
                result_message="bad\r\nforged: line\x07",
            )
        )
    engine.dispose()
    # When an operator lists and shows it
    for args in (("dead", "list"), ("dead", "show", str(job.id))):
        result = relay.cli(*args)
        # Then the terminal gets the escapes as text, and rich markup is not interpreted
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, repr(result.stdout)
        flat = " ".join(result.stdout.split())
        assert "s1\\x1b[2J\\x1b[31m[red]owned[/red]" in flat, flat
        assert "bad\\r\\nforged: line\\x07" in flat, flat


def test_dead_edit_to_an_odd_item_list_is_one_error_line(relay: RelayEnv) -> None:
    engine = make_engine(relay.database_url)
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    [job] = enqueue(engine, [b.sale(TIN, "00", "s1", [line], trd_invc_no="T-1", at=NOW)])
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(state="dead"))
    engine.dispose()
    for value in ('{"itemSeq": 1}', "soap", "[null]"):
        result = relay.cli("dead", "edit", str(job.id), "--set", f"itemList={value}", check=False)
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 1, output
        assert "Traceback" not in output
        assert "error: the edited payload is invalid: payload.itemList" in output, output
