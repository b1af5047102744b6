"""Text that ends up on a terminal or in a log line: what is refused, and how it is shown.

A key or reason with a CR/LF can forge a separate line in a text log; one with ESC
sequences can clear or recolour an operator's terminal when ``dead list`` prints it. So
identifiers are refused unless printable (:func:`key_problem`), and anything stored that
is shown again goes through :func:`escape_controls` first.
"""

from __future__ import annotations

__all__ = ["escape_controls", "key_problem"]


def key_problem(value: str) -> str | None:
    """Why ``value`` cannot be an idempotency key (or ``None``): keys are printed in logs
    and terminals and compared byte for byte, so no control or invisible characters, and no
    surrounding whitespace a till might add or drop."""
    if not value.strip():
        return "must not be blank"
    if value != value.strip():
        return "must not start or end with whitespace"
    if not value.isprintable():
        return "must be printable text (no control, format or line-separator characters)"
    return None


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character written as a Python escape (``\\n``,
    ``\\x1b``, ``\\u2028``): one log line stays one line, and a terminal shows the bytes
    instead of obeying them. Printable text (the common case) is returned as is."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
