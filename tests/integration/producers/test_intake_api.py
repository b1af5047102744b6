"""The HTTP intake on real PostgreSQL, through a real uvicorn server: what a till or ERP sees."""

# ruff: noqa: F811 - fixtures are imported into the module, then named as parameters

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from producers import builders as b
from tests.integration.producers.intake_fixtures import (  # noqa: F401 - fixtures
    OTHER_TIN,
    IntakeServer,
    intake,
    intake_factory,
)
from tests.workload import TIN

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def item(
    key: str, *, tin: str = TIN, bhf: str = "00", code: str = "KE2NTNO0000001", price: str = "116"
) -> dict[str, Any]:
    return b.item(tin, bhf, key, item_cd=code, item_nm="Soap", price=Decimal(price))


def sale(key: str, *, tin: str = TIN, bhf: str = "00", qty: str = "2") -> dict[str, Any]:
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal(qty), Decimal("116"))
    return b.sale(tin, bhf, key, [line], trd_invc_no=f"T-{key}", at=NOW)


def body(*records: dict[str, Any]) -> str:
    """Amounts go as JSON numbers, as a till would send them."""
    return json.dumps({"jobs": list(records)}, default=_number)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def post(client: Any, *records: dict[str, Any]) -> Any:
    return client.post(
        "/v1/jobs", content=body(*records), headers={"Content-Type": "application/json"}
    )


# --------------------------------------------------------------------------- enqueue


def test_a_valid_batch_is_accepted_and_readable_by_id_key_and_request(intake: IntakeServer) -> None:
    client = intake.client(intake.key())
    # When a till posts an item and a sale that depends on it
    response = post(client, item("i1"), {**sale("s1"), "depends_on": ["i1"]})
    # Then both are written, pending, under one request id
    assert response.status_code == 202, response.text
    answer = response.json()
    assert [j["index"] for j in answer["jobs"]] == [0, 1]
    assert all(j["state"] == "pending" and j["created"] for j in answer["jobs"])
    sale_id = answer["jobs"][1]["id"]

    view = client.get(f"/v1/jobs/{sale_id}").json()
    assert view["idempotency_key"] == "s1"
    assert view["depends_on"] == ["i1"]
    assert view["state"] == "pending" and view["signature"] is None
    assert view["request_id"] == answer["request_id"]

    found = client.get("/v1/jobs", params={"idempotency_key": "s1"}).json()
    assert found["id"] == sale_id
    request = client.get(f"/v1/requests/{answer['request_id']}").json()
    assert [j["idempotency_key"] for j in request["jobs"]] == ["i1", "s1"]

    branch = client.get(f"/v1/branches/{TIN}/00").json()
    assert branch["backlog"] == 2 and branch["jobs_by_state"]["pending"] == 2
    assert branch["parked"] is False and branch["oldest_pending_age_s"] >= 0


def test_same_key_and_payload_gives_the_same_job_and_another_payload_409(
    intake: IntakeServer,
) -> None:
    client = intake.client(intake.key())
    first = post(client, item("i1"))
    assert first.status_code == 202
    job_id = first.json()["jobs"][0]["id"]

    # Same key, same payload (amount spelled differently): same job, 2xx, nothing new
    again = client.post("/v1/jobs", content=body(item("i1")).replace("116.0", "116.00"))
    assert again.status_code == 202, again.text
    assert again.json()["jobs"][0] == {**first.json()["jobs"][0], "created": False}

    # Same key, another payload, after a valid record: 409 naming index 1, nothing written
    before = intake.job_count()
    conflict = post(client, item("i2"), item("i1", price="120"))
    assert conflict.status_code == 409
    assert conflict.json()["errors"] == [
        {
            "index": 1,
            "path": "idempotency_key",
            "message": "idempotency_key 'i1' already used with a different payload",
        }
    ]
    assert intake.job_count() == before
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "pending"


def test_batches_of_zero_or_101_are_refused_with_a_clear_message(intake: IntakeServer) -> None:
    client = intake.client(intake.key())
    too_many = post(client, *[item(f"i{n}") for n in range(101)])
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["path"] == "jobs"
    assert "at most 100 jobs per request, got 101" in too_many.json()["errors"][0]["message"]
    empty = post(client)
    assert empty.status_code == 422 and "at least one" in empty.json()["errors"][0]["message"]
    assert post(client, *[item(f"i{n}") for n in range(100)]).status_code == 202
    assert intake.job_count() == 100


def test_bad_records_are_422_naming_index_and_path_and_nothing_is_written(
    intake: IntakeServer,
) -> None:
    client = intake.client(intake.key())
    wrong_type = item("i3")
    wrong_type["payload"]["dftPrc"] = {"a": 1}
    overlong = item("i4", code="K" * 21)
    bad_code = item("i5")
    bad_code["payload"]["taxTyCd"] = "Z"
    not_adding_up = sale("s6")
    not_adding_up["payload"]["totAmt"] = Decimal("999")
    long_key = item("k" * 201)
    response = post(client, item("i0"), wrong_type, overlong, bad_code, not_adding_up, long_key)
    assert response.status_code == 422
    errors = {(e["index"], e["path"]) for e in response.json()["errors"]}
    assert {
        (1, "payload.dftPrc"),
        (2, "payload.itemCd"),
        (3, "payload.taxTyCd"),
        (4, "payload.totAmt"),
        (5, "idempotency_key"),
    } <= errors
    assert 0 not in {index for index, _ in errors}
    assert intake.job_count() == 0


def test_malformed_bodies_are_4xx_never_500(intake: IntakeServer) -> None:
    client = intake.client(intake.key())
    cases: list[bytes] = [
        b"{not json",
        b"",
        b"[]",
        b'{"jobs": "all"}',
        b'{"jobs": [1, "two", null]}',
        b'{"jobs": [], "extra": 1}',
        b'{"jobs": [{"kind": "item", "payload": {"dftPrc": NaN}}]}',
        b"\xff\xfe\x00garbage",
        b"[" * 5000 + b"]" * 5000,
        body({**item("a"), "idempotency_key": "nul\u0000key"}).encode(),
        b'{"jobs": [{"kind": "item", "idempotency_key": "\\ud800", "tin": "x"}]}',
    ]
    for raw in cases:
        response = client.post("/v1/jobs", content=raw)
        assert 400 <= response.status_code < 500, (raw[:40], response.status_code, response.text)
        assert response.json()["errors"], raw[:40]
    assert intake.job_count() == 0


def test_body_size_limit_is_413(intake_factory: Callable[..., IntakeServer]) -> None:
    intake = intake_factory(max_body_bytes=10_000)
    client = intake.client(intake.key())
    big = post(client, *[item(f"i{n}") for n in range(60)])
    assert big.status_code == 413
    assert "larger than 10000 bytes" in big.json()["errors"][0]["message"]
    assert post(client, item("small")).status_code == 202


# --------------------------------------------------------------------------- tenants


def test_a_key_of_tin_a_gets_403_for_tin_b_jobs_branches_and_enqueues(
    intake: IntakeServer,
) -> None:
    mine = intake.client(intake.key(TIN))
    theirs = intake.client(intake.key(OTHER_TIN))
    their_job = post(theirs, item("secret", tin=OTHER_TIN)).json()["jobs"][0]

    # Reading their job by id: 403, with the same words as for an id that does not exist
    by_id = mine.get(f"/v1/jobs/{their_job['id']}")
    missing = mine.get("/v1/jobs/999999")
    assert by_id.status_code == missing.status_code == 403
    assert by_id.json()["errors"][0]["message"].replace(
        str(their_job["id"]), "N"
    ) == missing.json()["errors"][0]["message"].replace("999999", "N")
    theirs_by_key = {"idempotency_key": "secret", "tin": OTHER_TIN}
    assert mine.get("/v1/jobs", params=theirs_by_key).status_code == 403
    assert mine.get("/v1/jobs", params={"idempotency_key": "secret"}).status_code == 404
    assert mine.get(f"/v1/branches/{OTHER_TIN}/00").status_code == 403
    request_id = theirs.get(f"/v1/jobs/{their_job['id']}").json()["request_id"]
    assert mine.get(f"/v1/requests/{request_id}").status_code == 403

    # Enqueueing for their tin: 403 naming the record, nothing written
    before = intake.job_count()
    refused = post(mine, item("mine"), item("x", tin=OTHER_TIN))
    assert refused.status_code == 403
    assert refused.json()["errors"] == [
        {"index": 1, "path": "tin", "message": "outside this API key's tin"}
    ]
    assert intake.job_count() == before


def test_branch_scoped_keys_and_admin_keys(intake: IntakeServer) -> None:
    till = intake.client(intake.key(TIN, branches=("01",)))
    admin = intake.client(intake.key(TIN, admin=True))
    assert post(till, item("b01", bhf="01")).status_code == 202
    other_branch = post(admin, item("b00", bhf="00")).json()["jobs"][0]["id"]
    assert post(till, item("x", bhf="00")).json()["errors"][0]["path"] == "bhf_id"
    assert till.get(f"/v1/jobs/{other_branch}").status_code == 403
    assert till.get(f"/v1/branches/{TIN}/00").status_code == 403
    assert till.get(f"/v1/branches/{TIN}/01").status_code == 200
    # The operator's admin key reaches every tin, and may learn that a job does not exist
    assert post(admin, item("o", tin=OTHER_TIN)).status_code == 202
    assert admin.get("/v1/jobs/999999").status_code == 404


def test_authentication_and_revocation(intake: IntakeServer) -> None:
    from producers.apikeys import list_api_keys, revoke_api_key

    key = intake.key()
    assert intake.client().get("/v1/jobs/1").status_code == 401
    assert intake.client("etr_000000000000_" + "A" * 43).get("/v1/jobs/1").status_code == 401
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert intake.client(wrong_secret).get("/v1/jobs/1").status_code == 401
    client = intake.client(key)
    assert client.get("/v1/jobs/1").status_code == 403
    revoke_api_key(intake.engine, list_api_keys(intake.engine)[0].key_id)
    response = client.get("/v1/jobs/1")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert key not in response.text


def test_rate_limit_per_key_is_429_with_retry_after(
    intake_factory: Callable[..., IntakeServer],
) -> None:
    intake = intake_factory(rate_limit="3/minute")
    noisy, quiet = intake.client(intake.key()), intake.client(intake.key())
    codes = [noisy.get("/v1/jobs/1").status_code for _ in range(4)]
    assert codes == [403, 403, 403, 429]
    limited = noisy.get("/v1/jobs/1")
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert quiet.get("/v1/jobs/1").status_code == 403  # another key has its own budget


# --------------------------------------------------------------------------- health


def test_healthz_and_readyz(intake_factory: Callable[..., IntakeServer], redis_url: str) -> None:
    up = intake_factory(broker_url=redis_url)
    assert up.client().get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = up.client().get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}

    down = intake_factory(broker_url="redis://127.0.0.1:1/0", ready_timeout_s=1)
    not_ready = down.client().get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["database"] == "ok"
    assert not_ready.json()["checks"]["broker"] != "ok"


def test_openapi_documents_the_body_and_the_error_shape(intake: IntakeServer) -> None:
    document = intake.client().get("/openapi.json").json()
    post_jobs = document["paths"]["/v1/jobs"]["post"]
    assert post_jobs["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobsRequest"
    }
    assert {"202", "401", "403", "409", "413", "422", "429"} <= set(post_jobs["responses"])
    assert document["components"]["schemas"]["JobsRequest"]["properties"]["jobs"]["maxItems"] == 100
    assert "JobEnvelope" in document["components"]["schemas"]
