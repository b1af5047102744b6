"""Intake API keys: created once, stored hashed, checked in constant time, scoped to a tenant.

A key reads ``etr_<key_id>_<secret>``. ``key_id`` is public (``apikey list`` shows it, logs
may name it) and finds the row; the sha256 of the whole key is what is stored and compared
(``hmac.compare_digest``). The secret part carries 256 bits from :mod:`secrets`, so a plain
sha256 is enough: there is nothing to brute-force.

Scope: a key belongs to one tin and optionally to some of its branches (empty = every
branch). An ``admin`` key is the relay operator's: it reaches every tin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from schemas.types import BHF_ID_RE, TIN_RE
from worker.outbox import intake_queries as iq

__all__ = [
    "ApiKeyInfo",
    "Principal",
    "authenticate",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
]

KEY_PREFIX = "etr_"
_KEY = re.compile(r"^etr_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TIN = re.compile(TIN_RE)
_BHF = re.compile(BHF_ID_RE)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: what an authenticated key may see and do."""

    key_id: str
    tin: str
    branches: frozenset[str]
    admin: bool

    def may_access(self, tin: str, bhf_id: str) -> bool:
        """May enqueue and read jobs of this branch."""
        if self.admin:
            return True
        return tin == self.tin and (not self.branches or bhf_id in self.branches)

    def covers_tin(self, tin: str) -> bool:
        """Sees every branch of ``tin`` (so "not found" there reveals nothing hidden)."""
        return self.admin or (tin == self.tin and not self.branches)


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What ``apikey list`` shows: never the key or its hash."""

    key_id: str
    tin: str
    branches: tuple[str, ...]
    admin: bool
    label: str | None
    created_at: float
    revoked_at: float | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    engine: Engine,
    tin: str,
    *,
    branches: Iterable[str] = (),
    admin: bool = False,
    label: str | None = None,
) -> tuple[ApiKeyInfo, str]:
    """Create a key; return its info and the key itself (the only time it is available)."""
    if not _TIN.match(tin):
        raise ValueError("tin must be a KRA PIN: a letter, 9 digits, a letter")
    scope = tuple(sorted(set(branches)))
    bad = [b for b in scope if not _BHF.match(b)]
    if bad:
        raise ValueError(f"branch ids must be two digits, got {', '.join(bad)}")
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    now = time.time()
    with engine.begin() as conn:
        iq.insert_api_key(
            conn,
            {
                "key_id": key_id,
                "key_hash": _hash(key),
                "tin": tin,
                "branches": json.dumps(list(scope)),
                "admin": admin,
                "label": label,
                "created_at": now,
            },
        )
    return ApiKeyInfo(key_id, tin, scope, admin, label, now, None), key


def list_api_keys(engine: Engine, tin: str | None = None) -> list[ApiKeyInfo]:
    with engine.connect() as conn:
        rows = iq.list_api_keys(conn, tin)
    return [
        ApiKeyInfo(
            r.key_id,
            r.tin,
            tuple(json.loads(r.branches)),
            bool(r.admin),
            r.label,
            float(r.created_at),
            None if r.revoked_at is None else float(r.revoked_at),
        )
        for r in rows
    ]


def revoke_api_key(engine: Engine, key_id: str) -> bool:
    """Revoke by public id; False if no active key has that id."""
    with engine.begin() as conn:
        return iq.revoke_api_key(conn, key_id, time.time()) == 1


def authenticate(engine: Engine, presented: str) -> Principal | None:
    """The principal of a presented key, or None (unknown, malformed or revoked)."""
    match = _KEY.match(presented)
    if match is None:
        return None
    with engine.connect() as conn:
        row = iq.get_api_key(conn, match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(str(row.key_hash), _hash(presented)):
        return None
    return Principal(
        key_id=str(row.key_id),
        tin=str(row.tin),
        branches=frozenset(json.loads(row.branches)),
        admin=bool(row.admin),
    )
