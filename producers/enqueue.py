"""``enqueue``: the one way work enters etims-relay (the CLI, HTTP intake and bulk import call it).

Contract (invariants 4 and 7):

- all-or-nothing: every record is validated first; any invalid record raises
  :class:`InvalidRecords` naming each bad record's index and field path, and nothing is written;
- idempotent per tin: same key + same content -> the existing job, nothing new; same key +
  different content -> :class:`IdempotencyConflict` naming the key, nothing written;
- one trader invoice number per scope: a sale or credit note whose ``trdInvcNo`` another job
  of its branch (or tin, per ``EnqueueOptions.trd_invc_no_scope``) already carries under a
  different key -> :class:`TrdInvcNoConflict` naming that key, nothing written (KRA would
  answer 994 and the branch would stall on it);
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

from producers.enqueue_rules import apply_outbox_rules, record_items
from schemas.completion import Registrant, dumps_body
from schemas.jobs import (
    TRADER_INVOICE_KINDS,
    JobEnvelope,
    JobKind,
    JobState,
    TrdInvcNoScope,
    coalescing_item,
    stock_io_type,
)
from schemas.settings import Settings
from schemas.validation import (
    EnqueueOptions,
    InvalidRecords,
    RecordError,
    payload_errors,
    validate_records,
)
from schemas.vat import VatScheme
from worker.outbox import enqueue_queries as eq
from worker.outbox import intake_queries as iq
from worker.outbox import queries as q
from worker.outbox.dberrors import DbFailure, classify
from worker.tax_rates import with_branch_rates
from worker.wake import NullWaker, Waker

__all__ = [
    "EnqueueError",
    "EnqueueOptions",
    "Enqueued",
    "IdempotencyConflict",
    "InvalidRecords",
    "RecordError",
    "TrdInvcNoConflict",
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


class TrdInvcNoConflict(EnqueueError):
    """A sale or credit note reuses a ``trdInvcNo`` that another job of its scope carries."""

    def __init__(self, index: int, trd_invc_no: str, other_key: str, scope: str) -> None:
        self.index = index
        self.trd_invc_no = trd_invc_no
        #: the idempotency key of the job that already carries the number
        self.other_key = other_key
        #: where the number must be unique, e.g. "branch P051234567A/00"
        self.scope = scope
        super().__init__(
            f"record {index}: trdInvcNo {trd_invc_no!r} is already used by idempotency_key "
            f"{other_key!r} in {scope} (KRA would refuse it with 994)"
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    index: int
    id: int
    idempotency_key: str
    state: str
    created: bool
    branch_id: int


#: A concurrent caller may write one of our keys or trdInvcNo claims between our lookup and
#: our insert (a unique violation, raised by the driver itself for the multi-row insert). The
#: transaction is run again: its lookup then finds that job (same payload -> the same job,
#: else a conflict naming it).
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
    if options.tax_rates is None:
        with engine.connect() as conn:
            options = with_branch_rates(conn, options, _branch_keys(records))
    envelopes = validate_records(records, options)
    now = time.time()
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                results = _write(conn, envelopes, now, request_id, options)
            break
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or classify(exc) is not DbFailure.CONFLICT:
                raise
    (waker or NullWaker()).wake({r.branch_id for r in results if r.created})
    return results


def _branch_keys(records: Sequence[Mapping[str, Any] | JobEnvelope]) -> set[tuple[str, str]]:
    """The (tin, bhf_id) the records name, before validation (a bad one matches nothing)."""
    keys = set()
    for record in records:
        if isinstance(record, JobEnvelope):
            keys.add((record.tin, record.bhf_id))
        elif isinstance(record, Mapping):
            keys.add((str(record.get("tin")), str(record.get("bhf_id"))))
    return keys


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
    conn: Connection,
    envelopes: list[JobEnvelope],
    now: float,
    request_id: str | None,
    options: EnqueueOptions,
) -> list[Enqueued]:
    scope = options.trd_invc_no_scope
    hashes = [content_hash(e) for e in envelopes]  # what the producer sent, before completion
    envelopes = apply_outbox_rules(conn, envelopes, options.rules)
    existing: dict[tuple[str, str], Any] = {}
    for tin in {e.tin for e in envelopes}:
        keys = [e.idempotency_key for e in envelopes if e.tin == tin]
        keys += [d for e in envelopes if e.tin == tin for d in e.all_dependencies]
        for key, row in eq.find_jobs_by_keys(conn, tin, keys).items():
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

    # After reserve_seq: under branch scope the branch row lock serialises this check.
    claims = _claim_trader_invoices(conn, envelopes, fresh, scope)
    ids_by_key: dict[tuple[str, str], int] = {k: int(r.id) for k, r in existing.items()}
    rows = [_job_row(envelopes[i], hashes[i], branch_ids, seqs[i], now, request_id) for i in fresh]
    for job_row, index in zip(rows, fresh, strict=True):
        job_row["trd_invc_no"], job_row["trd_invc_scope"] = claims.get(index, (None, None))
    new_ids = eq.insert_jobs(conn, rows)
    record_items(conn, [envelopes[i] for i in fresh])
    pairs: list[tuple[int, int]] = []
    for index, job_id in zip(fresh, new_ids, strict=True):
        e = envelopes[index]
        ids_by_key[(e.tin, e.idempotency_key)] = job_id
        pairs += [(job_id, ids_by_key[(e.tin, dep)]) for dep in dict.fromkeys(e.all_dependencies)]
        if e.original_key:
            eq.set_original(conn, job_id, ids_by_key[(e.tin, e.original_key)])
        branch_id = branch_ids[(e.tin, e.bhf_id)]
        results[index] = Enqueued(
            index, job_id, e.idempotency_key, JobState.PENDING.value, True, branch_id
        )
    eq.insert_dependencies(conn, pairs)
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


def _claim_trader_invoices(
    conn: Connection, envelopes: list[JobEnvelope], fresh: list[int], scope: TrdInvcNoScope
) -> dict[int, tuple[str, str | None]]:
    """(trdInvcNo, claim scope) of each new sale and credit note; raise on a reuse.

    Earlier jobs are looked up by (tin, trd_invc_no) whatever scope they were claimed under,
    so a scope widened later (branch -> tin) still sees them; the unique index on
    (trd_invc_scope, trd_invc_no) is what stops two concurrent enqueues of one number.
    """
    claims: dict[int, tuple[str, str | None]] = {}
    for index in fresh:
        e = envelopes[index]
        number = e.payload.get("trdInvcNo") if e.kind in TRADER_INVOICE_KINDS else None
        if number is not None:
            claims[index] = (str(number), scope.claim(e.tin, e.bhf_id))
    if scope is TrdInvcNoScope.OFF:
        return claims
    taken: dict[tuple[str | None, str], str] = {}
    for tin in sorted({envelopes[i].tin for i in claims}):
        numbers = [number for i, (number, _) in claims.items() if envelopes[i].tin == tin]
        for row in iq.jobs_with_trader_invoices(conn, tin, numbers):
            where = scope.claim(tin, row.bhf_id)
            taken.setdefault((where, row.trd_invc_no), row.idempotency_key)
    for index, (number, where) in claims.items():  # record order: the first one keeps it
        key = envelopes[index].idempotency_key
        other = taken.setdefault((where, number), key)
        if other != key:
            raise TrdInvcNoConflict(index, number, other, f"{scope.value} {where}")
    return claims


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
        "stock_item_cd": coalescing_item(e.kind.value, e.payload),
        "sar_ty_cd": stock_io_type(e.kind.value, e.payload),
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


def options_from_settings(settings: Settings) -> EnqueueOptions:
    """Validation exactly as this configuration's enqueue does it (CLI, intake, tests)."""
    return EnqueueOptions(
        vat_scheme=VatScheme(settings.vat_scheme),
        tax_rates=settings.tax_rates,
        registrant=Registrant(settings.registrant_id, settings.registrant_name),
        trd_invc_no_scope=TrdInvcNoScope(settings.trd_invc_no_scope),
        rules=settings.body_rules(),
    )
