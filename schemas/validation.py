"""Is this record acceptable? The checks every entry point runs before anything is written.

Pure (no I/O): intake, the CLI, bulk import and the operators' ``dead edit`` all validate with
these functions, so a record refused at one door is refused at every door, with the same
``index`` / ``path`` / ``message`` (invariant 7).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.base import format_errors
from schemas.body_rules import (
    BodyRules,
    item_code_errors,
    item_types_in,
    pkg_errors,
    service_stock_errors,
)
from schemas.codes import DEFAULT_TAX_RATES
from schemas.completion import AmountMismatch, Registrant, complete_body
from schemas.jobs import JobEnvelope, JobKind, TrdInvcNoScope
from schemas.requests import REQUEST_MODELS
from schemas.shape import shape_errors
from schemas.vat import VatScheme

__all__ = [
    "EnqueueOptions",
    "InvalidRecords",
    "RecordError",
    "body_rule_errors",
    "payload_errors",
    "validate_records",
]


@dataclass(frozen=True, slots=True)
class RecordError:
    index: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.path}: {self.message}"


class InvalidRecords(ValueError):
    """Some records are invalid; ``errors`` names each one's index and field path."""

    def __init__(self, errors: list[RecordError]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(str(e) for e in errors[:5]) + (" ..." if len(errors) > 5 else "")
        )


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """How payloads are completed and checked (from Settings, passed by the entry point)."""

    vat_scheme: VatScheme = VatScheme.SPLIT
    #: ``ETIMS_TAX_RATES``: when set, the rates of every branch (as in the drain).
    tax_rates: Mapping[str, Decimal] | None = None
    registrant: Registrant = field(default_factory=Registrant)
    #: Where a sale's ``trdInvcNo`` must be unique (enqueue refuses a reuse under another key).
    trd_invc_no_scope: TrdInvcNoScope = TrdInvcNoScope.BRANCH
    #: KRA's rates of the branches concerned, (tin, bhf_id) -> rates, read by the caller.
    branch_rates: Mapping[tuple[str, str], Mapping[str, Decimal]] = field(default_factory=dict)

    def rates_for(self, tin: str, bhf_id: str) -> Mapping[str, Decimal]:
        """The rates present amounts are checked with: the override, else the branch's rates
        from KRA, else (no device or no code sync yet) the spec's table. The drain freezes
        the body with the branch's rates later and checks present amounts again then."""
        if self.tax_rates is not None:
            return self.tax_rates
        return self.branch_rates.get((tin, bhf_id)) or DEFAULT_TAX_RATES

    #: Host-specific body rules (schemas.body_rules); defaults are the etims-api host's.
    rules: BodyRules = field(default_factory=BodyRules)


def validate_records(
    records: Sequence[Mapping[str, Any] | JobEnvelope], options: EnqueueOptions
) -> list[JobEnvelope]:
    envelopes: list[JobEnvelope] = []
    errors: list[RecordError] = []
    positions: list[int] = []  # the record index of each envelope
    for index, record in enumerate(records):
        try:
            envelope = (
                record if isinstance(record, JobEnvelope) else JobEnvelope.model_validate(record)
            )
        except ValidationError as exc:
            errors.extend(RecordError(index, path, msg) for path, msg in format_errors(exc))
            continue
        errors.extend(_payload_errors(index, envelope, options))
        envelopes.append(envelope)
        positions.append(index)
    # Host rules judge the records whose shape is right (a malformed line is reported once,
    # by the request model); all errors come back in one answer.
    # (They never see a malformed record: they read its fields without checking types.)
    refused = {e.index for e in errors}
    well_formed = [(pos, env) for pos, env in zip(positions, envelopes, strict=True)
                   if pos not in refused]  # fmt: skip
    errors += [
        RecordError(well_formed[e.index][0], e.path, e.message)
        for e in body_rule_errors([env for _, env in well_formed], options.rules)
    ]
    errors.sort(key=lambda e: e.index)
    if errors:
        raise InvalidRecords(errors)
    return envelopes


def body_rule_errors(envelopes: Sequence[JobEnvelope], rules: BodyRules) -> list[RecordError]:
    """The host-specific rules of :mod:`schemas.body_rules` over well-formed envelopes.

    Also run alone by the till before it spools (it cannot know the relay's VAT scheme, but
    it knows its host's rules). A service in a stock job is found as far as this call tells:
    its own item records (the latest per tin wins, as KRA upserts items), else the itemCd
    prefix; ``enqueue`` consults the items of earlier calls for the codes left open.
    """
    types: dict[str, dict[str, str]] = defaultdict(dict)
    for envelope in envelopes:
        types[envelope.tin].update(item_types_in(envelope.kind.value, envelope.payload))
    errors: list[RecordError] = []
    for index, envelope in enumerate(envelopes):
        kind, payload = envelope.kind.value, envelope.payload
        problems = item_code_errors(kind, payload, rules) + pkg_errors(kind, payload, rules)
        problems += service_stock_errors(
            kind, payload, rules, types[envelope.tin], "its item record in this batch"
        )
        errors += [RecordError(index, f"payload.{path}", message) for path, message in problems]
    return errors


def payload_errors(
    kind: str,
    tin: str,
    bhf_id: str,
    payload: Mapping[str, Any],
    options: EnqueueOptions | None = None,
) -> list[RecordError]:
    """Validate one job's payload exactly as :func:`enqueue` would (index 0, nothing written).

    For operators who correct a dead job's payload (``etims-relay dead edit``): the edited
    payload must pass the same checks as a new record, or the replay would only die again.
    """
    record: dict[str, Any] = {
        "kind": kind,
        "tin": tin,
        "bhf_id": bhf_id,
        "idempotency_key": "edit",
        "payload": dict(payload),
    }
    if kind == JobKind.CREDIT_NOTE.value:
        record["original_key"] = "edit:original"  # the link itself is not being edited
    try:
        envelope = JobEnvelope.model_validate(record)
    except ValidationError as exc:
        return [RecordError(0, path, msg) for path, msg in format_errors(exc)]
    options = options or EnqueueOptions()
    return _payload_errors(0, envelope, options) or body_rule_errors([envelope], options.rules)


def _payload_errors(
    index: int, envelope: JobEnvelope, options: EnqueueOptions
) -> list[RecordError]:
    model = REQUEST_MODELS[envelope.kind.endpoint]
    wrong_types = shape_errors(envelope.payload, model)
    if wrong_types:  # the amounts below would trip over them
        return [RecordError(index, f"payload.{path}", msg) for path, msg in wrong_types]
    try:
        body = complete_body(
            envelope.kind,
            envelope.payload,
            tin=envelope.tin,
            bhf_id=envelope.bhf_id,
            registrant=options.registrant,
            scheme=options.vat_scheme,
            rates=options.rates_for(envelope.tin, envelope.bhf_id),
        )
    except AmountMismatch as exc:
        return [
            RecordError(index, f"payload.{path}", f"expected {expected}, found {found}")
            for path, expected, found in exc.issues
        ]
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        return [_located(index, str(exc))]
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return [RecordError(index, f"payload.{path}", msg) for path, msg in format_errors(exc)]
    return []


_LOCATED = re.compile(r"^(?P<path>[A-Za-z_][\w.]*): (?P<message>.+)$", re.DOTALL)


def _located(index: int, text: str) -> RecordError:
    """Errors raised while completing a body say ``field.path: message``; keep the path."""
    match = _LOCATED.match(text)
    if match:
        return RecordError(index, f"payload.{match['path']}", match["message"])
    return RecordError(index, "payload", text)
