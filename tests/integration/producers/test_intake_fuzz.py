"""Schemathesis against the intake's own OpenAPI document, over real HTTP and PostgreSQL.

Thousands of generated requests (valid and invalid by the schema): no answer is a 5xx, every
answer matches the documented status codes and schemas, and a request answered 4xx never
leaves a job behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine

from producers.enqueue import EnqueueOptions
from producers.intake import IntakeContext, create_app
from producers.intake.ratelimit import KeyRateLimiter
from tests.conftest import PG_ADMIN_DSN, _pg_url
from tests.integration.producers.intake_fixtures import IntakeServer, start_intake
from worker.wake import NullWaker


def _document() -> dict[str, object]:
    context = IntakeContext(
        engine=create_engine("sqlite://"),
        waker=NullWaker(),
        options=EnqueueOptions(),
        limiter=KeyRateLimiter("1/second"),
        broker_url="",
    )
    return create_app(context).openapi()


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_x00=True
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_intake(pg_template: str) -> Iterator[tuple[IntakeServer, dict[str, str]]]:
    """One server for the module (hypothesis runs many examples per test)."""
    name = f"etims_fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    server = start_intake(_pg_url(name))
    # An admin key, so generated records get past the tenant check into validation.
    headers = {"Authorization": f"Bearer {server.key(admin=True)}"}
    yield server, headers
    server.stop()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


FUZZ = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}
post_jobs = schema.include(path="/v1/jobs", method="POST")
#: The intake's own read endpoints.
reads = schema.include(path_regex=r"^/(v1/(jobs|requests|branches)|healthz|readyz)").exclude(
    path="/v1/jobs", method="POST"
)
#: Operations routes mounted on the same app: notices, inbound notifications, admin tooling.
operations = schema.include(path_regex=r"^/v1/(notices|notifications|admin)")


@post_jobs.parametrize()
@settings(max_examples=500, **FUZZ)
def test_post_jobs_never_5xx_and_4xx_writes_nothing(
    case: schemathesis.Case, fuzz_intake: tuple[IntakeServer, dict[str, str]]
) -> None:
    _call_and_check(case, *fuzz_intake)


@reads.parametrize()
@settings(max_examples=1000, **FUZZ)
def test_reads_never_5xx_and_write_nothing(
    case: schemathesis.Case, fuzz_intake: tuple[IntakeServer, dict[str, str]]
) -> None:
    _call_and_check(case, *fuzz_intake)


@operations.parametrize()
@settings(max_examples=150, **FUZZ)
def test_operations_routes_never_5xx_and_write_no_job(
    case: schemathesis.Case, fuzz_intake: tuple[IntakeServer, dict[str, str]]
) -> None:
    _call_and_check(case, *fuzz_intake)


def _call_and_check(case: schemathesis.Case, server: IntakeServer, headers: dict[str, str]) -> None:
    before = server.job_count()
    response = case.call(base_url=server.url, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if 400 <= response.status_code < 500:
        assert server.job_count() == before, (response.status_code, response.text[:500])
    case.validate_response(response, checks=CHECKS)
