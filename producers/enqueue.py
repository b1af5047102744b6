"""``enqueue``: the one way work enters etims-relay (the CLI, HTTP intake and bulk import call it).

Contract (invariants 4 and 7):

- all-or-nothing: every record is validated first; any invalid record raises
  :class:`InvalidRecords` naming each bad record's index and field path, and nothing is written;
- idempotent per tin: same key + same content -> the existing job, nothing new; same key +
  different content -> :class:`IdempotencyConflict` naming the key, nothing written;
- ordered: the jobs of one call are written in one transaction in the order given, each
  branch's jobs taking consecutive ``seq`` numbers; dependencies must already exist or come
  earlier in the same call, so causal order is also enqueue order;
- the branches are woken after commit (a lost wake is recovered by the sweeper).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from schemas.completion import dumps_body
from schemas.jobs import JobEnvelope, JobKind, JobState
from schemas.validation import (
    EnqueueOptions,
    InvalidRecords,
    RecordError,
    payload_errors,
    validate_records,
)
from worker.outbox import queries as q
from worker.outbox.dberrors import DbFailure, classify
from worker.wake import NullWaker, Waker

__all__ = [
    "EnqueueError",
    "EnqueueOptions",
    "Enqueued",
    "IdempotencyConflict",
    "InvalidRecords",
    "RecordError",
    "content_hash",
    "enqueue",
    "parse_envelopes",
    "payload_errors",
]


class EnqueueError(Exception):
    """Base of the refusals that need the database (conflicts); nothing was written.

    Invalid records raise :class:`schemas.validation.InvalidRecords` (a ``ValueError``),
    re-exported here.
    """


class IdempotencyConflict(EnqueueError):
    def __init__(self, index: int, key: str) -> None:
        self.index, self.key = index, key
        super().__init__(
            f"record {index}: idempotency_key {key!r} was already used with a different payload"
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    index: int
    id: int
    idempotency_key: str
    state: str
    created: bool
    branch_id: int


#: A concurrent caller may write one of our keys between our lookup and our insert (a unique
#: violation, raised by the driver itself for the multi-row insert). The transaction is run
#: again: its lookup then finds that job (same payload -> the same job, else a conflict).
WRITE_ATTEMPTS = 3


def parse_envelopes(records: Sequence[Mapping[str, Any]]) -> list[JobEnvelope]:
    """Validate envelopes and their payloads; raise InvalidRecords listing every problem."""
    return validate_records(records, EnqueueOptions())


def enqueue(
    engine: Engine,
    records: Sequence[Mapping[str, Any] | JobEnvelope],
    *,
    options: EnqueueOptions | None = None,
    waker: Waker | None = None,
    request_id: str | None = None,
) -> list[Enqueued]:
    """Validate, dedupe and write ``records`` in one transaction; wake their branches."""
    options = options or EnqueueOptions()
    envelopes = validate_records(records, options)
    now = time.time()
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                results = _write(conn, envelopes, now, request_id)
            break
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or classify(exc) is not DbFailure.CONFLICT:
                raise
    (waker or NullWaker()).wake({r.branch_id for r in results if r.created})
    return results


# --------------------------------------------------------------------------- validation


def content_hash(envelope: JobEnvelope) -> str:
    """Hash of everything that makes two submissions "the same" under one key."""
    canonical = json.dumps(
        {
            "kind": envelope.kind.value,
            "bhf_id": envelope.bhf_id,
            "depends_on": list(envelope.depends_on),
            "original_key": envelope.original_key,
            "payload": _canonical(envelope.payload),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """Numbers compare by value (1160, 1160.0 and "1160.00" as JSON decimal are one payload)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value)).normalize()
        return "n:" + format(number + 0, "f")
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------- writing


def _write(
    conn: Connection, envelopes: list[JobEnvelope], now: float, request_id: str | None
) -> list[Enqueued]:
    hashes = [content_hash(e) for e in envelopes]
    existing: dict[tuple[str, str], Any] = {}
    for tin in {e.tin for e in envelopes}:
        keys = [e.idempotency_key for e in envelopes if e.tin == tin]
        keys += [d for e in envelopes if e.tin == tin for d in e.all_dependencies]
        for key, row in q.find_jobs_by_keys(conn, tin, keys).items():
            existing[(tin, key)] = row

    results, fresh, seen_in_call = _dedupe(envelopes, hashes, existing)
    _check_dependencies(envelopes, fresh, existing, seen_in_call)

    branch_keys = sorted({(envelopes[i].tin, envelopes[i].bhf_id) for i in fresh})
    branch_ids = {key: q.ensure_branch(conn, *key, now) for key in branch_keys}
    per_branch: dict[int, list[int]] = defaultdict(list)
    for index in fresh:
        per_branch[branch_ids[(envelopes[index].tin, envelopes[index].bhf_id)]].append(index)
    seqs: dict[int, int] = {}
    for branch_id in sorted(per_branch):  # fixed lock order: no deadlock between callers
        first = q.reserve_seq(conn, branch_id, len(per_branch[branch_id]), now)
        for offset, index in enumerate(per_branch[branch_id]):
            seqs[index] = first + offset

    ids_by_key: dict[tuple[str, str], int] = {k: int(r.id) for k, r in existing.items()}
    rows = [_job_row(envelopes[i], hashes[i], branch_ids, seqs[i], now, request_id) for i in fresh]
    new_ids = q.insert_jobs(conn, rows)
    pairs: list[tuple[int, int]] = []
    for index, job_id in zip(fresh, new_ids, strict=True):
        e = envelopes[index]
        ids_by_key[(e.tin, e.idempotency_key)] = job_id
        pairs += [(job_id, ids_by_key[(e.tin, dep)]) for dep in dict.fromkeys(e.all_dependencies)]
        if e.original_key:
            q.set_original(conn, job_id, ids_by_key[(e.tin, e.original_key)])
        branch_id = branch_ids[(e.tin, e.bhf_id)]
        results[index] = Enqueued(
            index, job_id, e.idempotency_key, JobState.PENDING.value, True, branch_id
        )
    q.insert_dependencies(conn, pairs)
    for index, e in enumerate(envelopes):
        if index not in results:  # a repeat of a key earlier in this same call
            earlier = results[seen_in_call[(e.tin, e.idempotency_key)]]
            results[index] = Enqueued(
                index, earlier.id, earlier.idempotency_key, earlier.state, False, earlier.branch_id
            )
    return [results[i] for i in range(len(envelopes))]


def _dedupe(
    envelopes: list[JobEnvelope], hashes: list[str], existing: Mapping[tuple[str, str], Any]
) -> tuple[dict[int, Enqueued], list[int], dict[tuple[str, str], int]]:
    """Split records into already-known (same content), new, and repeats within this call."""
    results: dict[int, Enqueued] = {}
    fresh: list[int] = []
    seen_in_call: dict[tuple[str, str], int] = {}
    for index, (envelope, digest) in enumerate(zip(envelopes, hashes, strict=True)):
        scoped = (envelope.tin, envelope.idempotency_key)
        row = existing.get(scoped)
        if row is not None:
            if row.payload_hash != digest:
                raise IdempotencyConflict(index, envelope.idempotency_key)
            results[index] = Enqueued(
                index, int(row.id), envelope.idempotency_key, row.state, False, int(row.branch_id)
            )
        elif scoped in seen_in_call:
            if hashes[seen_in_call[scoped]] != digest:
                raise IdempotencyConflict(index, envelope.idempotency_key)
        else:
            seen_in_call[scoped] = index
            fresh.append(index)
    return results, fresh, seen_in_call


def _job_row(
    e: JobEnvelope,
    digest: str,
    branch_ids: Mapping[tuple[str, str], int],
    seq: int,
    now: float,
    request_id: str | None,
) -> dict[str, Any]:
    return {
        "branch_id": branch_ids[(e.tin, e.bhf_id)],
        "tin": e.tin,
        "bhf_id": e.bhf_id,
        "seq": seq,
        "kind": e.kind.value,
        "idempotency_key": e.idempotency_key,
        "payload": dumps_body(e.payload),
        "payload_hash": digest,
        "state": JobState.PENDING.value,
        "attempts": 0,
        "maybe_recorded": False,
        "receipt_missing": False,
        "request_id": request_id,
        "created_at": now,
        "updated_at": now,
    }


def _check_dependencies(
    envelopes: list[JobEnvelope],
    fresh: list[int],
    existing: Mapping[tuple[str, str], Any],
    seen_in_call: Mapping[tuple[str, str], int],
) -> None:
    errors: list[RecordError] = []
    for index in fresh:
        e = envelopes[index]
        for position, dep in enumerate(e.all_dependencies):
            earlier = seen_in_call.get((e.tin, dep))
            if (e.tin, dep) in existing or (earlier is not None and earlier < index):
                if e.original_key == dep:
                    _check_original_kind(index, e, existing, envelopes, earlier, errors)
                continue
            field = "original_key" if dep == e.original_key else f"depends_on.{position}"
            errors.append(
                RecordError(index, field, f"unknown idempotency_key {dep!r}: enqueue it first")
            )
    if errors:
        raise InvalidRecords(errors)


def _check_original_kind(
    index: int,
    envelope: JobEnvelope,
    existing: Mapping[tuple[str, str], Any],
    envelopes: list[JobEnvelope],
    earlier: int | None,
    errors: list[RecordError],
) -> None:
    row = existing.get((envelope.tin, envelope.original_key or ""))
    kind = row.kind if row is not None else envelopes[earlier or 0].kind.value
    bhf = row.bhf_id if row is not None else envelopes[earlier or 0].bhf_id
    if kind != JobKind.SALE.value:
        errors.append(RecordError(index, "original_key", "must name a sale"))
    elif bhf != envelope.bhf_id:
        errors.append(RecordError(index, "original_key", "must name a sale of the same branch"))
