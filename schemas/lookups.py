"""Device initialisation and the read-only lookups (§2.1, §2.2, §3.1, §3.4)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field

from schemas.base import BranchBody, WireModel
from schemas.types import D14, BhfId, Char, DocNumber, Tin

__all__ = [
    "CustomerLookupRequest",
    "InitRequest",
    "InvoiceDetailsRequest",
    "LastReqDtRequest",
]


class InitRequest(WireModel):
    """``selectInitOsdcInfo``: the one call without auth headers, so identity is in the body."""

    tin: Tin
    bhfId: BhfId
    dvcSrlNo: Annotated[str, Char(100)]


class LastReqDtRequest(BranchBody):
    """Incremental lookups: everything changed after ``lastReqDt`` (the previous
    ``resultDt``; any old date such as ``20180101000000`` for a full sync)."""

    lastReqDt: D14


class CustomerLookupRequest(BranchBody):
    """``selectCustomer``. The spec's field is ``custmTin``; ``custTin`` is read as well
    because it is the name every other endpoint uses for a buyer PIN."""

    custmTin: Tin = Field(validation_alias=AliasChoices("custmTin", "custTin"))


class InvoiceDetailsRequest(BranchBody):
    """``selectInvoiceDetails`` (not in the spec): recovers a signature after a duplicate."""

    invcNo: Annotated[DocNumber, Field(ge=1)]
