"""The job envelope producers hand to etims-relay, and the job life cycle.

One envelope per record (one JSONL line, one element of an intake batch)::

    {"kind": "sale", "tin": "P051234567A", "bhf_id": "00",
     "idempotency_key": "till-03:000123",
     "depends_on": ["till-03:000122"],
     "original_key": "till-03:000100",      # credit_note only
     "payload": {...OSCU field names for that endpoint...}}

The service owns the fields that encode order and identity at KRA (``invcNo``, ``orgInvcNo``,
``sarNo``, ``tin``/``bhfId``), so a producer must not send them: a producer that numbers its
own invoices would break the no-gap rule the moment two tills share a branch.

Job states::

    pending -> in_flight -> accepted
    in_flight -> retry_wait -> in_flight      transient: refused, 5xx, 429, 990, 894, 999
    in_flight -> unknown -> in_flight         sent, no definitive answer: resend same body
    in_flight -> dead -> pending (replay)     definitive rejection or attempts exhausted, and
                                              KRA holds nothing under a maybe-sent number
    in_flight -> pending (branch parked)      KRA ahead/behind, systemic refusal, or a
                                              maybe-sent number KRA could not confirm
    pending -> blocked -> pending             a dependency is dead; back when it is accepted
    dead | blocked | pending -> skipped       operator, with a reason
    pending -> superseded                     a stock master never sent, whose balance a later
                                              stock master of the same item carries
    pending -> merged -> accepted | dead      a stock-out sent inside an earlier one's merged
                                              insertStockIO (``merged_into``): it ends as that
                                              send does, with its sarNo
    merged -> pending                         the carrier parked, its body dropped
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import InitErrorDetails

from schemas.base import raise_if_any, rule_error
from schemas.text import key_problem

#: A per-branch KRA number series: invoices and credit notes, stock movements.
Counter = Literal["invcNo", "sarNo"]


class JobKind(StrEnum):
    """What a job submits; each kind maps to one OSCU write endpoint."""

    ITEM = "item"
    SALE = "sale"
    CREDIT_NOTE = "credit_note"
    STOCK_IO = "stock_io"
    STOCK_MASTER = "stock_master"

    @property
    def endpoint(self) -> str:
        return _ENDPOINTS[self]

    @property
    def numbered_by(self) -> Counter | None:
        """The per-branch KRA counter this kind consumes, if any."""
        if self in (JobKind.SALE, JobKind.CREDIT_NOTE):
            return "invcNo"
        if self is JobKind.STOCK_IO:
            return "sarNo"
        return None


_ENDPOINTS = {
    JobKind.ITEM: "saveItem",
    JobKind.SALE: "saveTrnsSalesOsdc",
    JobKind.CREDIT_NOTE: "saveTrnsSalesOsdc",
    JobKind.STOCK_IO: "insertStockIO",
    JobKind.STOCK_MASTER: "saveStockMaster",
}


class TrdInvcNoScope(StrEnum):
    """Where a trader invoice number (``trdInvcNo``) must be unique among sales and credit notes.

    KRA answers 994 ("overlapped data") for a ``trdInvcNo`` it already holds; no source says
    whether it compares per branch or per taxpayer, so the scope is configured.
    """

    #: unique per (tin, bhf_id): the default
    BRANCH = "branch"
    #: unique across every branch of a tin
    TIN = "tin"
    #: not checked
    OFF = "off"

    def claim(self, tin: str, bhf_id: str) -> str | None:
        """Where a number is claimed: "tin/bhf_id", "tin", or None when the check is off."""
        if self is TrdInvcNoScope.BRANCH:
            return f"{tin}/{bhf_id}"
        return tin if self is TrdInvcNoScope.TIN else None


#: Kinds that carry a ``trdInvcNo`` and share one number space at KRA (saveTrnsSalesOsdc).
TRADER_INVOICE_KINDS = frozenset({JobKind.SALE, JobKind.CREDIT_NOTE})


class JobState(StrEnum):
    """Where a job is in its life; terminal states are accepted, dead, skipped, superseded."""

    #: waiting for its turn in the branch
    PENDING = "pending"
    #: being sent by the lease holder (or its holder died: resent as if unknown)
    IN_FLIGHT = "in_flight"
    #: a transient failure; due again at next_attempt_at
    RETRY_WAIT = "retry_wait"
    #: sent, no definitive answer; the identical body is resent
    UNKNOWN = "unknown"
    #: KRA accepted it
    ACCEPTED = "accepted"
    #: KRA refused it definitively, or attempts ran out
    DEAD = "dead"
    #: a job it depends on is dead, blocked or skipped
    BLOCKED = "blocked"
    #: an operator gave up on it, with a reason
    SKIPPED = "skipped"
    #: a stock master that was never sent: a later one of the same item carries its balance
    #: (``superseded_by``)
    SUPERSEDED = "superseded"
    #: a stock-out whose lines go inside an earlier stock-out's merged send (``merged_into``,
    #: the carrier); it ends accepted, with the carrier's sarNo, or dead, as the carrier does
    MERGED = "merged"


#: States a drain still has to work through, in seq order.
ACTIVE_STATES = (JobState.PENDING, JobState.IN_FLIGHT, JobState.RETRY_WAIT, JobState.UNKNOWN)

#: Fields only the service may set (numbering and identity at KRA).
SERVICE_OWNED_FIELDS = frozenset({"invcNo", "orgInvcNo", "sarNo", "tin", "bhfId"})

_TIN = re.compile(r"^[A-Z][0-9]{9}[A-Z]$")
_BHF = re.compile(r"^[0-9]{2}$")


class JobEnvelope(BaseModel):
    """One record to submit. Validation here is structural; payload rules live per kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: JobKind
    tin: str
    bhf_id: str
    idempotency_key: str = Field(min_length=1, max_length=200)
    depends_on: tuple[str, ...] = ()
    original_key: str | None = Field(default=None, min_length=1, max_length=200)
    payload: dict[str, Any]

    @field_validator("idempotency_key", "original_key")
    @classmethod
    def _printable_key(cls, value: str | None) -> str | None:
        problem = None if value is None else key_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("tin")
    @classmethod
    def _tin_shape(cls, value: str) -> str:
        if not _TIN.fullmatch(value):
            raise ValueError("must be a KRA PIN: a letter, 9 digits, a letter (e.g. P051234567A)")
        return value

    @field_validator("bhf_id")
    @classmethod
    def _bhf_shape(cls, value: str) -> str:
        if not _BHF.fullmatch(value):
            raise ValueError("must be a 2-digit branch id such as 00")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> JobEnvelope:
        """Each refusal is located at the field to change (``payload.invcNo``,
        ``depends_on.0``), so a till is told exactly what to fix."""
        errors: list[InitErrorDetails] = []
        if self.kind is JobKind.CREDIT_NOTE and self.original_key is None:
            message = "required for a credit_note (the sale it credits)"
            errors.append(rule_error(("original_key",), message, None))
        if self.kind is not JobKind.CREDIT_NOTE and self.original_key is not None:
            message = "only for credit_note jobs"
            errors.append(rule_error(("original_key",), message, self.original_key))
        for position, dependency in enumerate(self.depends_on):
            problem = key_problem(dependency)
            if dependency == self.idempotency_key:
                problem = "a job cannot depend on itself"
            if problem:
                errors.append(rule_error(("depends_on", position), problem, dependency))
        for name in sorted(SERVICE_OWNED_FIELDS & self.payload.keys()):
            message = "must not be set: etims-relay assigns it"
            errors.append(rule_error(("payload", name), message, self.payload[name]))
        raise_if_any("JobEnvelope", errors)
        return self

    @property
    def all_dependencies(self) -> tuple[str, ...]:
        """Declared dependencies plus the credited sale: a credit note follows its original."""
        if self.original_key and self.original_key not in self.depends_on:
            return (*self.depends_on, self.original_key)
        return self.depends_on


def stock_io_type(kind: str, payload: Mapping[str, Any]) -> str | None:
    """A stock movement's ``sarTyCd``, stored as ``jobs.sar_ty_cd`` (enqueue, and again on an
    operator's edit) so that the drain tells a stock-out, which may wait behind later sales
    and be merged, from a stock-in, which never waits: a later sale may need its goods."""
    if kind != JobKind.STOCK_IO.value or payload.get("sarTyCd") is None:
        return None
    return str(payload["sarTyCd"])[:2]


def coalescing_item(kind: str, payload: Mapping[str, Any]) -> str | None:
    """The item of a stock master whose ``rsdQty`` the relay computes, stored as
    ``jobs.stock_item_cd`` (enqueue, and again on an operator's edit) so the drain finds a
    later stock master of the same item (``worker.coalesce``). None for any other job, and
    for a producer's own count (a stock-take): that is news for KRA, never superseded and
    never superseding."""
    if kind != JobKind.STOCK_MASTER.value or payload.get("rsdQty") is not None:
        return None
    item_cd = payload.get("itemCd")
    return None if item_cd is None else str(item_cd)
