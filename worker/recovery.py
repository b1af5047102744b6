"""Between send and record, on the rare paths only: ask KRA what it holds under a number.

The drain calls :func:`resolve` when :func:`worker.decide.decide` returned something other
than a plain decision: a :class:`~worker.decide.Verify` (the answer would end a job that an
earlier attempt may have put at KRA, or KRA answered "duplicate" to a resend), or a 994 on a
first send whose other holder may be one of our own jobs. Accepted jobs never come here,
so the drain's hot path makes one call per job.

What KRA holds under the number comes from ``selectInvoiceDetails`` for sales and credit
notes; KRA offers no lookup of a branch's own stock movements by ``sarNo``, so for those the
answer is "unsupported" and the job parks with its number held.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.envelope import InvoiceDetails
from schemas.jobs import JobKind
from schemas.settings import Settings
from worker.decide import Dead, Decision, Held, Holding, Verify, settle
from worker.oscu.client import OscuClient
from worker.oscu.outcome import OutcomeKind
from worker.outbox.branch_store import BranchStore
from worker.steps import Called

log = logging.getLogger("etims_relay.drain")

SALE_KINDS = (JobKind.SALE, JobKind.CREDIT_NOTE)
_LOOKUP_RETRYABLE = frozenset(
    {OutcomeKind.TRANSIENT, OutcomeKind.UNKNOWN, OutcomeKind.RATE_LIMITED}
)


def resolve(
    verdict: Decision | Verify,
    called: Called,
    store: BranchStore,
    client: OscuClient,
    settings: Settings,
) -> tuple[Decision, dict[str, Any] | None]:
    """The final decision (and a recovered receipt) for a verdict that needs KRA or the
    outbox; any other verdict is returned unchanged, with no receipt."""
    if isinstance(verdict, Dead) and verdict.names_holder:
        return _naming_holder(store, called, verdict), None
    if not isinstance(verdict, Verify):
        return verdict, None
    send = called.send
    kind = send.job.kind
    holding, receipt = holding_of(called, client, settings)
    decision = settle(
        verdict,
        holding,
        counter=kind.numbered_by,
        number=send.number,
        attempt=send.attempt,
        retry=settings.retry,
    )
    log.warning(
        "job %s: KRA answered %s after an earlier attempt of %s %s may have reached it; "
        "KRA holds %s there -> %s",
        send.job.id, verdict.code, kind.numbered_by, send.number, holding.held.value,
        type(decision).__name__.lower(),
    )  # fmt: skip
    return decision, (receipt if holding.held is Held.OURS else None)


def holding_of(
    called: Called, client: OscuClient, settings: Settings
) -> tuple[Holding, dict[str, Any] | None]:
    """What KRA holds under the job's number, and the receipt when it is our sale."""
    send = called.send
    ours = str(send.body.get("trdInvcNo")) if send.body.get("trdInvcNo") is not None else None
    if send.job.kind not in SALE_KINDS or send.number is None:
        return Holding(
            Held.UNREACHABLE, ours=ours, detail="no lookup by number", unsupported=True
        ), None
    if not settings.oscu.invoice_details_supported:
        detail = "selectInvoiceDetails is switched off"
        return Holding(Held.UNREACHABLE, ours=ours, detail=detail, unsupported=True), None
    lookup = client.select_invoice_details(called.device.credentials, send.number)
    if lookup.kind is OutcomeKind.EMPTY:
        return Holding(Held.NOTHING, ours=ours), None
    if lookup.kind is not OutcomeKind.ACCEPTED:
        detail = f"selectInvoiceDetails answered {lookup.result_code or lookup.kind.value}"
        return Holding(
            Held.UNREACHABLE, ours=ours, detail=f"{detail}: {lookup.message}"[:300],
            retryable=lookup.kind in _LOOKUP_RETRYABLE, retry_after_s=lookup.retry_after_s,
            unsupported=lookup.http_status == 404,
        ), None  # fmt: skip
    details = InvoiceDetails.from_data(lookup.data) if lookup.data else None
    if details is None:
        return Holding(Held.NOTHING, ours=ours), None
    if details.trdInvcNo is None:
        return Holding(Held.UNCLEAR, ours=ours), None
    theirs = str(details.trdInvcNo)
    if theirs != ours:
        return Holding(Held.OTHER, theirs=theirs, ours=ours), None
    signature = details.signature
    receipt = signature.model_dump(mode="json") if signature is not None else None
    return Holding(Held.OURS, theirs=theirs, ours=ours), receipt


def _naming_holder(store: BranchStore, called: Called, dead: Dead) -> Dead:
    """A 994 on a first send: KRA already holds this trader invoice. Name our job that
    carries the same trdInvcNo, if one does (the producer submitted the sale twice)."""
    job, trd = called.send.job, called.send.body.get("trdInvcNo")
    if trd is None:
        return dead
    others = store.jobs_with_trader_invoice(job.tin, str(trd), exclude_id=job.id)
    if not others:
        return dead
    named = ", ".join(f"{other.idempotency_key} ({other.state})" for other in others[:3])
    message = (
        f"{dead.message} [trdInvcNo {trd} is also carried by our job {named}: the producer "
        "submitted this sale twice]"
    )
    return Dead(dead.code, message, dead.release_number)
