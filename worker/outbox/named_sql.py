"""Named SQL statements kept as plain text in ``worker/outbox/sql/*.sql``.

A file holds several statements, each under a ``-- name: <name>`` line (the layout
procrastinate and aiosql use): what runs is the text in the file, nothing is assembled.
Parameters are written ``:name`` and bound by SQLAlchemy's ``text()``. Comment lines are
documentation and are left out of the executed text (a ``:word`` in a comment would
otherwise be taken for a parameter).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

from sqlalchemy import TextClause, text

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse(source: str) -> dict[str, str]:
    """``{name: statement text}`` of one file's content."""
    statements: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in source.splitlines():
        header = _NAME.match(line.strip())
        if header:
            name = header.group(1)
            if name in statements:
                raise ValueError(f"statement {name!r} is defined twice")
            current = statements[name] = []
        elif current is not None and not line.lstrip().startswith("--"):
            current.append(line)
    texts = {name: "\n".join(lines).strip() for name, lines in statements.items()}
    empty = [name for name, sql in texts.items() if not sql]
    if empty:
        raise ValueError(f"no SQL under {empty}")
    return texts


@cache
def load(filename: str) -> Mapping[str, TextClause]:
    """The statements of ``worker/outbox/sql/<filename>``, ready to execute."""
    source = resources.files("worker.outbox").joinpath("sql", filename).read_text("utf-8")
    return {name: text(sql) for name, sql in parse(source).items()}
