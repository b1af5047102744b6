"""The pure half of the client: envelopes, result codes and Retry-After, without sockets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from worker.oscu.classify import (
    classify_code,
    classify_response,
    normalize_code,
    parse_retry_after,
    read_envelope,
)
from worker.oscu.errors import BadEnvelope
from worker.oscu.outcome import CallOutcome, OutcomeKind

K = OutcomeKind

#: Result codes (spec §4.18), every row, plus 904 (inside the brief's 900-905 range) and an unknown.
CODE_TABLE = {
    "000": K.ACCEPTED,
    "001": K.EMPTY,
    "891": K.REJECTED,
    "892": K.REJECTED,
    "893": K.REJECTED,
    "894": K.TRANSIENT,
    "895": K.REJECTED,
    "896": K.TRANSIENT,
    "899": K.REJECTED,
    "900": K.AUTH,
    "901": K.AUTH,
    "902": K.AUTH,
    "903": K.AUTH,
    "904": K.AUTH,
    "905": K.AUTH,
    "910": K.REJECTED,
    "911": K.REJECTED,
    "912": K.REJECTED,
    "921": K.DUPLICATE,
    "922": K.SEQUENCE,
    "990": K.RATE_LIMITED,
    "991": K.TRANSIENT,
    "992": K.TRANSIENT,
    "993": K.TRANSIENT,
    "994": K.DUPLICATE,
    "995": K.TRANSIENT,
    "999": K.TRANSIENT,
    "123": K.REJECTED,
    "E04": K.REJECTED,
}


@pytest.mark.parametrize(("code", "kind"), CODE_TABLE.items())
def test_result_code_table(code: str, kind: OutcomeKind) -> None:
    assert classify_code(code) is kind


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("000", "000"),
        ("0", "000"),
        ("00", "000"),
        ("0000", "000"),
        (0, "000"),
        (1, "001"),
        (" 910 ", "910"),
        (910, "910"),
        ("", None),
        (None, None),
        (True, None),
        ([], None),
    ],
)
def test_normalize_code(raw: object, expected: str | None) -> None:
    assert normalize_code(raw) == expected


def test_envelope_keys_are_stripped_at_any_depth() -> None:
    body = {" resultCd ": "000", "resultMsg ": "ok", " data": {" info ": {"x ": 1}}}
    envelope = read_envelope(json.dumps(body).encode())
    assert envelope.result_code == "000"
    assert envelope.message == "ok"
    assert envelope.data == {"info": {"x": 1}}


def test_gavaconnect_nested_envelope() -> None:
    body = {
        "responseHeader": {"responseCode": 200, "customerMessage": "Successful"},
        "responseBody": {"resultCd": "0", "resultMsg": "Successful", "data": {"info": {}}},
    }
    envelope = read_envelope(json.dumps(body).encode())
    assert (envelope.result_code, envelope.data) == ("000", {"info": {}})


def test_gavaconnect_status_only_envelope() -> None:
    body = {"responseHeader": {"responseCode": "400", "debugMessage": "bad"}, "responseBody": None}
    envelope = read_envelope(json.dumps(body).encode())
    assert (envelope.result_code, envelope.embedded_status, envelope.message) == (None, 400, "bad")


def test_apigee_token_fault_reads_as_401() -> None:
    body = {"fault": {"faultstring": "Access Token expired", "detail": {"errorcode": "x"}}}
    assert read_envelope(json.dumps(body).encode()).embedded_status == 401


def test_root_level_extras_are_kept() -> None:
    body = {"resultCd": "000", "resultMsg": "ok", "data": None, "cmcKey": "k"}
    assert read_envelope(json.dumps(body).encode()).extra == {"cmcKey": "k"}


@pytest.mark.parametrize("content", [b"<html>oops</html>", b"", b"[1, 2]", b'{"a": 1}', b"\xff"])
def test_bad_envelopes(content: bytes) -> None:
    with pytest.raises(BadEnvelope):
        read_envelope(content)


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 2.5 ", now=now) == 2.5
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    for junk in (None, "", "soon", "-3", "nan", "inf"):
        assert parse_retry_after(junk, now=now) is None


def test_outcome_repr_masks_secrets_in_data() -> None:
    outcome = CallOutcome(
        kind=K.ACCEPTED,
        endpoint="selectInitOsdcInfo",
        data={"info": {"cmcKey": "THE-NEW-KEY", "dvcId": "1"}},
        extra={"cmcKey": "THE-NEW-KEY"},
    )
    assert "THE-NEW-KEY" not in repr(outcome)
    assert "THE-NEW-KEY" not in str(outcome)
    assert "dvcId" in repr(outcome)
    assert outcome.data is not None and outcome.data["info"]["cmcKey"] == "THE-NEW-KEY"


@pytest.mark.parametrize(
    ("status", "content", "write", "kind"),
    [
        (408, b"", True, K.TRANSIENT),  # the server never got the whole request
        (302, b"", True, K.UNKNOWN),  # a redirect of a POST: not an answer we can read
        (302, b"", False, K.TRANSIENT),
        (500, json.dumps({"resultCd": "910"}).encode(), True, K.REJECTED),  # the code decides
        (500, json.dumps({"resultCd": "999"}).encode(), True, K.TRANSIENT),
        (429, json.dumps({"resultCd": "000"}).encode(), True, K.RATE_LIMITED),  # gateway first
        (401, json.dumps({"resultCd": "000"}).encode(), True, K.AUTH),
        (422, b"<html/>", True, K.REJECTED),
    ],
)
def test_classify_response_edges(status: int, content: bytes, write: bool, kind: K) -> None:
    outcome = classify_response("saveItem", status, {}, content, write=write)
    assert (outcome.kind, outcome.http_status) == (kind, status)
