"""A text log line is one line: a key or a KRA message with CR/LF or ESC cannot forge
another line or drive the terminal that tails the log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker.logs import configure_logging

FORGED = "s1\r\n2026-12-05 03:00:00,000 INFO etims_relay.drain job accepted key=s9\x1b[2J"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_log_escapes_control_characters_in_the_message(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    logging.getLogger("etims_relay.intake").info("enqueued key=%s", FORGED)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\x1b" not in lines[0]
    assert lines[0].endswith(
        "key=s1\\r\\n2026-12-05 03:00:00,000 INFO etims_relay.drain job accepted key=s9\\x1b[2J"
    )


def test_text_log_keeps_a_traceback_readable(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("etims_relay.drain").exception("drain failed key=%s", "a\nb")
    text = stream.getvalue()
    assert "drain failed key=a\\nb\nTraceback (most recent call last):" in text
    assert "RuntimeError: boom" in text


def test_json_log_carries_the_key_intact_on_one_line(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("etims_relay.intake").info("enqueued", extra={"idempotency_key": FORGED})
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["idempotency_key"] == FORGED
