"""Keeping cmcKeys, tokens and consumer secrets out of text that may be logged (invariant 8).

Two tools, because secrets reach text two ways: by *key* inside structured data (the
``cmcKey`` that ``selectInitOsdcInfo`` returns in ``data.info``) and by *value* inside free
text (a server message that echoes a key we sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "[secure]"

#: Lower-cased keys whose values are never shown (the request/response spellings we know).
SENSITIVE_KEYS = frozenset(
    {
        "cmckey",
        "access_token",
        "accesstoken",
        "authorization",
        "consumer_key",
        "consumer_secret",
        "client_secret",
        "pwd",
        "password",
    }
)


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of sensitive keys masked, at any depth."""
    if isinstance(value, dict):
        return {
            key: MASK if str(key).lower() in SENSITIVE_KEYS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each known secret value replaced by a mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
