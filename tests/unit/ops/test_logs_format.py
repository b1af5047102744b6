"""Structured logs: JSON with the extra fields when asked, readable text otherwise, and a
secret-named field never printed whatever a caller passes."""

from __future__ import annotations

import gc
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.jobs import JobKind, JobState
from worker.decide import Accept, Dead, Retry
from worker.logs import configure_logging
from worker.observe import MetricsObserver
from worker.oscu.outcome import CallOutcome, OutcomeKind


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """A stream to configure logging onto; the root logger is put back as it was after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield io.StringIO()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old_level in noisy.items():
        logging.getLogger(name).setLevel(old_level)


JOB = SimpleNamespace(
    id=7, idempotency_key="till:1", tin="P051234567A", bhf_id="00", kind="sale",
    attempts=1, state="pending", created_at=0.0,
)  # fmt: skip


def test_json_lines_carry_the_job_fields(capture: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=capture)
    observer = MetricsObserver()
    outcome = CallOutcome(OutcomeKind.REJECTED, "saveTrnsSalesOsdc", "910", "bad", latency_s=0.5)
    observer.call_finished(JobKind.SALE, outcome, JOB, 2)
    observer.job_decided(JOB, Dead("910", "bad", True), outcome, 10.0)
    call, change = (json.loads(line) for line in capture.getvalue().splitlines())
    assert call["event"] == "oscu_call" and call["level"] == "INFO"
    assert {k: call[k] for k in ("job_id", "idempotency_key", "branch", "attempt")} == {
        "job_id": 7, "idempotency_key": "till:1", "branch": "P051234567A/00", "attempt": 2,
    }  # fmt: skip
    assert (call["outcome"], call["result_code"], call["latency_ms"]) == ("rejected", "910", 500.0)
    assert change["event"] == "job_state" and change["level"] == "WARNING"
    assert (change["from_state"], change["state"], change["reason"]) == ("pending", "dead", "bad")


def test_text_lines_read_as_key_value(capture: io.StringIO) -> None:
    configure_logging("INFO", "text", stream=capture)
    outcome = CallOutcome(OutcomeKind.RATE_LIMITED, "saveItem", "990", "slow", latency_s=0.1)
    MetricsObserver().job_decided(JOB, Retry(JobState.RETRY_WAIT, 1.0, "rate_limited"), outcome, 1)
    MetricsObserver().job_decided(JOB, Accept(), outcome, 1)
    first, second = capture.getvalue().splitlines()
    assert "INFO etims_relay.jobs job=7 key=till:1 branch=P051234567A/00 kind=sale" in first
    assert first.endswith("-> retry_wait") and second.endswith("-> accepted")


def test_secret_named_fields_are_masked(capture: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=capture)
    logging.getLogger("etims_relay.test").info(
        "x", extra={"cmcKey": "K-SECRET", "api_key": "A-SECRET", "nested": {"cmcKey": "N"}}
    )
    entry = json.loads(capture.getvalue())
    assert entry["cmcKey"] == entry["api_key"] == entry["nested"]["cmcKey"] == "[secure]"
    assert "SECRET" not in capture.getvalue()


def test_lines_from_many_threads_stay_whole_in_a_log_file(
    capture: io.StringIO, tmp_path: Path
) -> None:
    # Given the JSON format writing to a real file, as a worker's stderr does under systemd
    with (tmp_path / "worker.log").open("w") as stream:
        configure_logging("INFO", "json", stream=stream)
        logger = logging.getLogger("etims_relay.test")
        padding = "x" * 3000  # long lines: a torn write would show

        def log_many(thread: int) -> None:
            for i in range(200):
                logger.info("line", extra={"writer": thread, "i": i, "padding": padding})

        # When eight threads log at once
        threads = [threading.Thread(target=log_many, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # Then every line is one whole JSON object, none lost
    lines = (tmp_path / "worker.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert sorted((e["writer"], e["i"]) for e in entries) == [
        (t, i) for t in range(8) for i in range(200)
    ]


def test_a_log_file_nobody_else_holds_still_gets_the_lines(
    capture: io.StringIO, tmp_path: Path
) -> None:
    # Given logging configured onto a file the caller keeps no reference to
    configure_logging("INFO", "text", stream=(tmp_path / "worker.log").open("w"))
    gc.collect()
    # When the process opens another file (it would get a freed descriptor) and logs
    with (tmp_path / "other").open("w") as other:
        logging.getLogger("etims_relay.test").info("a line for the log")
        other.write("other content\n")
    # Then the line is in the log, and nothing of it in the other file
    assert (tmp_path / "other").read_text() == "other content\n"
    assert "a line for the log" in (tmp_path / "worker.log").read_text()


def test_a_log_stream_closed_elsewhere_never_writes_to_what_reuses_its_descriptor(
    capture: io.StringIO, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given logging configured onto a file that its owner then closes
    stream = (tmp_path / "worker.log").open("w")
    configure_logging("INFO", "text", stream=stream)
    stream.close()
    # When a socket or file takes its descriptor number and a line is logged
    with (tmp_path / "other").open("w"):
        logging.getLogger("etims_relay.test").info("a line for the log")
    # Then the line goes nowhere but the logging error report
    assert (tmp_path / "other").read_text() == ""
    assert "Logging error" in capsys.readouterr().err
