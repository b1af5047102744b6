"""The body rules that need the outbox: what earlier jobs of the same tin say.

``schemas.validation`` checks each record on its own and against the rest of its call; two
rules need jobs enqueued earlier, so ``enqueue`` runs them inside its transaction:

- a credit note copies its original sale's buyer (``custTin``, ``custNm``, ``receipt.custTin``)
  where it carries none, and is refused if it names another PIN;
- a stock job naming an item whose item job (enqueued earlier, any call) declared it a
  service (``itemTyCd`` 3) is refused.

Enqueue also records every new item job's type in ``item_catalog`` and moves the tin's itemCd
counter past a conforming code's running number (``record_items``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from schemas.body_rules import (
    BodyRules,
    credit_note_buyer,
    item_code,
    item_types_in,
    service_stock_errors,
    stock_item_codes,
)
from schemas.completion import loads_payload
from schemas.jobs import JobEnvelope, JobKind
from schemas.validation import InvalidRecords, RecordError
from worker.outbox import catalog_queries as cq

__all__ = ["apply_outbox_rules", "record_items"]


def apply_outbox_rules(
    conn: Connection, envelopes: Sequence[JobEnvelope], rules: BodyRules
) -> list[JobEnvelope]:
    """The envelopes with credit-note buyers filled in; raise InvalidRecords on a refusal."""
    errors: list[RecordError] = []
    completed = _credit_note_buyers(conn, envelopes, rules, errors)
    errors += _services_in_stock(conn, completed, rules)
    if errors:
        raise InvalidRecords(sorted(errors, key=lambda e: e.index))
    return completed


def record_items(conn: Connection, envelopes: Sequence[JobEnvelope]) -> None:
    """Remember the type of each new item and keep the allocator past its running number."""
    types: dict[str, dict[str, str]] = defaultdict(dict)
    used: dict[str, int] = {}
    for envelope in envelopes:
        declared = item_types_in(envelope.kind.value, envelope.payload)
        types[envelope.tin].update(declared)
        for code in declared:
            parts = item_code(code)
            if parts is not None:
                used[envelope.tin] = max(used.get(envelope.tin, 0), parts.number)
    for tin in sorted(types):
        if types[tin]:
            cq.record_item_types(conn, tin, types[tin])
    for tin in sorted(used):
        cq.advance_item_counter(conn, tin, used[tin])


def _credit_note_buyers(
    conn: Connection,
    envelopes: Sequence[JobEnvelope],
    rules: BodyRules,
    errors: list[RecordError],
) -> list[JobEnvelope]:
    if not rules.credit_note_buyer:
        return list(envelopes)
    in_call: dict[tuple[str, str], JobEnvelope] = {}
    wanted: dict[str, list[str]] = defaultdict(list)
    for envelope in envelopes:
        if envelope.original_key and (envelope.tin, envelope.original_key) not in in_call:
            wanted[envelope.tin].append(envelope.original_key)
        in_call.setdefault((envelope.tin, envelope.idempotency_key), envelope)
    stored = {
        (tin, key): found
        for tin, keys in wanted.items()
        for key, found in cq.job_payloads(conn, tin, keys).items()
    }
    result = []
    for index, envelope in enumerate(envelopes):
        original = _original(envelope, in_call, stored)
        if original is not None:
            payload, problems = credit_note_buyer(envelope.payload, original, rules)
            errors += [RecordError(index, f"payload.{path}", msg) for path, msg in problems]
            if payload != envelope.payload:
                envelope = envelope.model_copy(update={"payload": payload})
        result.append(envelope)
    return result


def _original(
    envelope: JobEnvelope,
    in_call: Mapping[tuple[str, str], JobEnvelope],
    stored: Mapping[tuple[str, str], tuple[str, str]],
) -> dict[str, Any] | None:
    """The credited sale's payload; None when unknown or not a sale (reported elsewhere)."""
    if envelope.kind is not JobKind.CREDIT_NOTE or envelope.original_key is None:
        return None
    key = (envelope.tin, envelope.original_key)
    if key in stored:
        kind, text = stored[key]
        return loads_payload(text) if kind == JobKind.SALE.value else None
    earlier = in_call.get(key)
    if earlier is None or earlier.kind is not JobKind.SALE:
        return None
    return dict(earlier.payload)


def _services_in_stock(
    conn: Connection, envelopes: Sequence[JobEnvelope], rules: BodyRules
) -> list[RecordError]:
    """Stock jobs whose item was declared a service by an item job of an earlier call.

    Codes typed by this call's own item jobs or (structure rule on) by their prefix were
    judged by ``schemas.validation`` already.
    """
    if not rules.no_service_stock:
        return []
    in_call: dict[str, dict[str, str]] = defaultdict(dict)
    open_codes: dict[str, set[str]] = defaultdict(set)
    for envelope in envelopes:
        in_call[envelope.tin].update(item_types_in(envelope.kind.value, envelope.payload))
    for envelope in envelopes:
        for _, code in stock_item_codes(envelope.kind.value, envelope.payload):
            typed_by_prefix = rules.item_code_structure and item_code(code) is not None
            if code not in in_call[envelope.tin] and not typed_by_prefix:
                open_codes[envelope.tin].add(code)
    stored = {tin: cq.item_types(conn, tin, sorted(codes)) for tin, codes in open_codes.items()}
    errors: list[RecordError] = []
    for index, envelope in enumerate(envelopes):
        known = stored.get(envelope.tin)
        if not known:
            continue
        # Codes outside ``known`` were judged by schemas.validation; if they were services
        # this call would have been refused there, so nothing is reported twice.
        errors += [
            RecordError(index, f"payload.{path}", message)
            for path, message in service_stock_errors(
                envelope.kind.value, envelope.payload, rules, known, "its item job"
            )
        ]
    return errors
