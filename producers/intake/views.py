"""Rows of the outbox as API views (the only place that knows both shapes)."""

from __future__ import annotations

import json
from typing import Any

from producers.intake.models import BranchView, Carrier, JobView, KraResult, Signature
from schemas.jobs import ACTIVE_STATES, JobKind, JobState

_SIGNED = (JobKind.SALE.value, JobKind.CREDIT_NOTE.value)


def job_view(
    row: Any,
    depends_on: list[str],
    *,
    carrier: tuple[int, str] | None = None,
    merged: list[int] | None = None,
) -> JobView:
    """``carrier``: for a superseded job, (id, state) of the send that carries its balance.
    ``merged``: for a merged send's carrier, the stock-outs it carries."""
    signature = None
    if row.kind in _SIGNED and row.receipt:
        try:
            signature = Signature.model_validate(json.loads(row.receipt))
        except ValueError:
            signature = None
    return JobView(
        id=int(row.id),
        kind=row.kind,
        tin=row.tin,
        bhf_id=row.bhf_id,
        idempotency_key=row.idempotency_key,
        state=JobState(row.state),
        attempts=int(row.attempts),
        depends_on=depends_on,
        request_id=row.request_id,
        kra=KraResult(code=row.result_code, message=row.result_message),
        invc_no=None if row.invc_no is None else int(row.invc_no),
        sar_no=None if row.sar_no is None else int(row.sar_no),
        signature=signature,
        sdc_id=row.sdc_id,
        mrc_no=row.mrc_no,
        qr_url=row.qr_url,
        receipt_missing=bool(row.receipt_missing),
        skip_reason=row.skip_reason,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
        accepted_at=None if row.accepted_at is None else float(row.accepted_at),
        superseded_by=None if row.superseded_by is None else int(row.superseded_by),
        merged_into=None if row.merged_into is None else int(row.merged_into),
        carried_by=None if carrier is None else Carrier(job_id=carrier[0], state=carrier[1]),
        merged=merged or [],
    )


def branch_view(tin: str, bhf_id: str, summary: dict[str, Any], now: float) -> BranchView:
    counts: dict[str, int] = summary["counts"]
    oldest = summary["oldest_active_at"]
    return BranchView(
        tin=tin,
        bhf_id=bhf_id,
        jobs_by_state=counts,
        backlog=sum(counts.get(s.value, 0) for s in ACTIVE_STATES),
        oldest_pending_age_s=None if oldest is None else round(max(0.0, now - oldest), 3),
        parked=summary["parked_reason"] is not None,
        parked_reason=summary["parked_reason"],
    )
