"""Structured logging: one JSON object per line with ``ETIMS_LOG_FORMAT=json``, readable text
otherwise.

Log calls pass their fields as ``extra={...}`` (``job_id``, ``idempotency_key``, ``branch``,
``kind``, ``outcome``, ``result_code``, ``latency_ms``, ``attempt``...). The text format shows
the message, which already reads ``key=value``; the JSON format adds every extra field as a
key, so Loki/Elasticsearch can filter on them without parsing the message.

Secrets: the fields go through :func:`worker.oscu._secrets.redact`, so a ``cmcKey``,
``authorization`` or ``api_key`` field prints as ``[secure]`` whatever a caller passes.
Whole payloads are never logged at INFO (the observer logs identities and outcomes only).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from schemas.text import escape_controls
from worker.oscu._secrets import MASK, SENSITIVE_KEYS, redact

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "route_uvicorn_logs"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

#: Keys whose values never reach a log line (beyond worker.oscu._secrets' list).
_EXTRA_SENSITIVE = frozenset({"api_key", "apikey", "secret_key", "token", "x-api-key"})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record, with secret-named keys masked."""
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_"):
            continue
        lowered = key.lower()
        if lowered in SENSITIVE_KEYS or lowered in _EXTRA_SENSITIVE:
            fields[key] = MASK
        else:
            fields[key] = redact(value)
    return fields


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message`` (the message carries the fields as ``key=value``).

    Control characters in the message are escaped (a CR/LF is written as the four
    characters ``\\r\\n``): a message quotes keys and KRA's words, and an idempotency key
    with a line break must not forge a line of its own. A traceback, appended after the
    message, keeps its lines.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        original = record.message
        record.message = escape_controls(original)
        try:
            return super().formatMessage(record)
        finally:
            record.message = original


class LineHandler(logging.Handler):
    """Writes each formatted line to a file descriptor with one ``os.write``, holding no lock.

    ``StreamHandler`` holds its lock across the write and flush system calls, so drain threads
    that log every job queue on it (bench/README.md, 2026-11-22). One ``write`` per line
    needs no lock: Linux
    keeps concurrent writes to one file or pipe from interleaving (a line is far below
    PIPE_BUF, and a regular file's offset is updated atomically per write).

    The handler holds the stream, not just its descriptor: a descriptor outliving its
    stream is soon another file's or socket's (found when a dropped log file's descriptor
    went to a PostgreSQL connection, and log lines into its protocol stream). So the stream
    stays open while the handler lives, and one closed elsewhere fails the line (reported
    by ``handleError``) instead of writing wherever its old number now points.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def handle(self, record: logging.LogRecord) -> bool:
        """As ``Handler.handle``, without taking the handler's lock around ``emit``."""
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = memoryview((self.format(record) + "\n").encode("utf-8", "backslashreplace"))
            fd = self.stream.fileno()  # raises once the stream is closed
            while data:
                data = data[os.write(fd, data) :]
        except Exception:
            self.handleError(record)


def configure_logging(
    level: str = "INFO", fmt: str = "text", stream: IO[str] | None = None
) -> None:
    """Install one handler on the root logger (replacing earlier ones: idempotent).

    A stream with a file descriptor (stderr, a log file) gets a :class:`LineHandler`; any
    other (a StringIO in tests) a plain ``StreamHandler``.
    """
    stream = stream or sys.stderr
    handler: logging.Handler
    try:
        stream.flush()  # what was buffered goes out before lines written around the buffer
        stream.fileno()
        handler = LineHandler(stream)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # httpx logs every request line (URL included) at INFO; ours is the one line per call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class _DropColorMessage(logging.Filter):
    """uvicorn attaches an ANSI-coloured copy of some messages; the plain one is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def route_uvicorn_logs() -> None:
    """Send uvicorn's error and access lines through the root handler (our formatter).

    Run uvicorn with ``log_config=None`` so it installs no handlers of its own; its loggers
    then propagate here and ``ETIMS_LOG_FORMAT=json`` makes every line of the intake JSON.
    """
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        for old_filter in list(logger.filters):
            logger.removeFilter(old_filter)
        logger.addFilter(_DropColorMessage())
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
