"""Structurally wrong envelopes against the intake: over 10,000 requests, not one 5xx.

Schemathesis (test_intake_fuzz.py) generates from the OpenAPI schema, so it mostly sends
what the schema allows or breaks it at the top. This generator starts from valid records of
every kind and breaks them where the code reads them: lists where objects are expected and
the reverse, nulls, numbers for text, control characters and padding in keys, unknown and
missing fields, at the envelope, in the payload and inside ``itemList`` lines. Each example
sends every mutated record alone and then all of them as one batch; a 4xx must write
nothing. The bulk runs in process against SQLite (fast enough for CI); a smaller run goes through a
real server (uvicorn in a thread, as in intake_fixtures) to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from producers import builders as b
from producers.apikeys import create_api_key
from producers.enqueue import EnqueueOptions
from producers.intake import IntakeContext, create_app
from producers.intake.ratelimit import KeyRateLimiter
from tests.conftest import PG_ADMIN_DSN, _pg_url
from tests.integration.producers.intake_fixtures import IntakeServer, start_intake
from tests.workload import TIN
from worker.outbox import migrate
from worker.outbox.db import make_engine
from worker.outbox.models import jobs
from worker.wake import NullWaker

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
#: Mutated records per example; each is sent alone, then all together as one batch.
RECORDS_PER_EXAMPLE = 10
SQLITE_EXAMPLES = 950  # x (10 + 1) requests = 10,450
POSTGRES_EXAMPLES = 60


def _valid_records() -> list[dict[str, Any]]:
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    item = b.item(TIN, "00", "i", item_cd="KE2NTNO0000001", item_nm="Soap", price=line.prc)
    sale = b.sale(TIN, "00", "s", [line], trd_invc_no="T-1", at=NOW, depends_on=["i"])
    credit = b.credit_note(TIN, "00", "c", "s", [line], trd_invc_no="T-1C", at=NOW)
    credit["depends_on"] = ["i"]
    stock = b.stock_io(TIN, "00", "o", [line], sar_ty_cd="11", at=NOW)
    master = b.stock_master(TIN, "00", "m", item_cd="KE2NTNO0000001", rsd_qty=Decimal(5))
    return json.loads(json.dumps([item, sale, credit, stock, master], default=_number))


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


BASES = _valid_records()

#: Text a till should never send: controls, padding, separators, markup, very long.
nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "   ",
            " k",
            "k\n",
            "k\r\nforged line",
            "\x1b[2J",
            "k\u2028",
            "k\u202e",
            "[red]x[/red]",
            "x" * 300,
            "P051234567A\n",
            "00\n",
            "\uff11\uff12",  # full-width digits
        ]
    ),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _containers(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object in a record a mutation may change (envelope, payload, lines)."""
    found: list[dict[str, Any]] = []
    stack: list[Any] = [record]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _swap(value: Any) -> Any:
    """The structural opposite: an object for a list, a list for an object or a value."""
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)} or {"a": 1}
    if isinstance(value, dict):
        return list(value.values()) or [None]
    return [value]


@st.composite
def broken_record(draw: st.DrawFn) -> dict[str, Any]:
    record = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = draw(st.sampled_from(_containers(record)))
        op = draw(st.sampled_from(["swap", "replace", "null", "delete", "add"]))
        key = draw(st.sampled_from(sorted(target))) if target else "x"
        if op == "swap" and key in target:
            target[key] = _swap(target[key])
        elif op == "replace":
            target[key] = draw(json_values)
        elif op == "null":
            target[key] = None
        elif op == "delete":
            target.pop(key, None)
        else:
            target[draw(nasty_text)] = draw(json_values)
    # Keys unique per draw, so a valid mutation does not collide with an earlier one
    if isinstance(record.get("idempotency_key"), str) and draw(st.booleans()):
        record["idempotency_key"] += f"-{time.perf_counter_ns()}"
    return record


batches = st.lists(broken_record(), min_size=RECORDS_PER_EXAMPLE, max_size=RECORDS_PER_EXAMPLE)

Post = Callable[[str], tuple[int, str]]
Counter = Callable[[], int]


def _exercise(post: Post, count_jobs: Counter, records: list[dict[str, Any]]) -> None:
    """Every request answered below 500; the jobs written are exactly those the 2xx answers
    report as created (so a 4xx wrote nothing, and nothing was written unreported)."""
    bodies = [json.dumps({"jobs": [r]}) for r in records] + [json.dumps({"jobs": records})]
    before, created = count_jobs(), 0
    for content in bodies:
        status, text = post(content)
        assert status < 500, (status, text[:300], content[:1000])
        if status < 300:
            created += sum(1 for job in json.loads(text)["jobs"] if job["created"])
    assert count_jobs() == before + created


FUZZ: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "database": None,
}


def _serve(database_url: str) -> tuple[IntakeServer, Post]:
    server = start_intake(database_url)
    client = server.client(server.key(admin=True))

    def post(content: str) -> tuple[int, str]:
        response = client.post(
            "/v1/jobs", content=content, headers={"Content-Type": "application/json"}
        )
        return response.status_code, response.text

    return server, post


@pytest.fixture(scope="module")
def sqlite_fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Post, Counter]]:
    """The app called in process (httpx's ASGI transport, no sockets) over one SQLite file:
    the whole stack from routing to the database, at a few milliseconds a request."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'outbox.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    context = IntakeContext(
        engine=engine,
        waker=NullWaker(),
        options=EnqueueOptions(),
        limiter=KeyRateLimiter("1000000/second"),
        broker_url="",
    )
    key = create_api_key(engine, TIN, admin=True)[1]
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(context)),
        base_url="http://intake",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )

    def post(content: str) -> tuple[int, str]:
        response = loop.run_until_complete(client.post("/v1/jobs", content=content))
        return response.status_code, response.text

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    yield post, count
    loop.run_until_complete(client.aclose())
    loop.close()
    engine.dispose()


@settings(max_examples=SQLITE_EXAMPLES, **FUZZ)
@given(records=batches)
def test_broken_envelopes_never_5xx_on_sqlite(
    sqlite_fuzz_client: tuple[Post, Counter], records: list[dict[str, Any]]
) -> None:
    _exercise(*sqlite_fuzz_client, records)


@pytest.fixture(scope="module")
def pg_fuzz_client(pg_template: str) -> Iterator[tuple[Post, Counter]]:
    """One real server over one PostgreSQL database for every example."""
    name = f"etims_fuzzs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    server, post = _serve(_pg_url(name))
    yield post, server.job_count
    server.stop()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@settings(max_examples=POSTGRES_EXAMPLES, **FUZZ)
@given(records=batches)
def test_broken_envelopes_never_5xx_on_postgresql(
    pg_fuzz_client: tuple[Post, Counter], records: list[dict[str, Any]]
) -> None:
    _exercise(*pg_fuzz_client, records)
