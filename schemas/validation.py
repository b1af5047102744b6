"""Is this record acceptable? The checks every entry point runs before anything is written.

Pure (no I/O): intake, the CLI, bulk import and the operators' ``dead edit`` all validate with
these functions, so a record refused at one door is refused at every door, with the same
``index`` / ``path`` / ``message`` (invariant 7).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.base import format_errors
from schemas.codes import DEFAULT_TAX_RATES
from schemas.completion import AmountMismatch, Registrant, complete_body
from schemas.jobs import JobEnvelope, JobKind
from schemas.requests import REQUEST_MODELS
from schemas.shape import shape_errors
from schemas.vat import VatScheme

__all__ = [
    "EnqueueOptions",
    "InvalidRecords",
    "RecordError",
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
    tax_rates: Mapping[str, Decimal] | None = None
    registrant: Registrant = field(default_factory=Registrant)


def validate_records(
    records: Sequence[Mapping[str, Any] | JobEnvelope], options: EnqueueOptions
) -> list[JobEnvelope]:
    envelopes: list[JobEnvelope] = []
    errors: list[RecordError] = []
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
    if errors:
        raise InvalidRecords(errors)
    return envelopes


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
    return _payload_errors(0, envelope, options or EnqueueOptions())


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
            rates=options.tax_rates or DEFAULT_TAX_RATES,
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
