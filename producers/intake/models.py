"""Wire models of the intake API: what the OpenAPI document promises, request and response.

Input models are documentation for clients and fuzzers (the POST body is parsed by hand, see
:mod:`producers.intake.body`, so amounts stay exact ``Decimal``); output models are what
every route returns, including the one error shape used for every 4xx.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.jobs import JobEnvelope, JobState

#: Records per POST /v1/jobs.
MAX_JOBS_PER_REQUEST = 100


class ErrorItem(BaseModel):
    """One problem: which record of the batch (if any), which field, what is wrong."""

    index: int | None = Field(default=None, description="Position of the record in `jobs`.")
    path: str | None = Field(
        default=None, description="Dotted field path, e.g. payload.itemList.0.qty"
    )
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer: nothing was written."""

    errors: list[ErrorItem]


_EXAMPLE: dict[str, Any] = {
    "jobs": [
        {
            "kind": "item",
            "tin": "P051234567A",
            "bhf_id": "00",
            "idempotency_key": "erp:item:KE2NTNO0000001",
            "payload": {
                "itemCd": "KE2NTNO0000001",
                "itemClsCd": "5020230100",
                "itemTyCd": "2",
                "itemNm": "Soap 100g",
                "orgnNatCd": "KE",
                "pkgUnitCd": "NT",
                "qtyUnitCd": "NO",
                "taxTyCd": "B",
                "dftPrc": 116,
                "isrcAplcbYn": "N",
                "useYn": "Y",
            },
        }
    ]
}


class JobsRequest(BaseModel):
    """POST /v1/jobs: 1 to 100 job envelopes, written all-or-nothing."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    jobs: list[JobEnvelope] = Field(min_length=1, max_length=MAX_JOBS_PER_REQUEST)


class EnqueuedJob(BaseModel):
    index: int
    id: int
    idempotency_key: str
    state: JobState
    created: bool = Field(description="False when the key was already known with this payload.")


class JobsAccepted(BaseModel):
    """202: every record is in the outbox (new or already known)."""

    request_id: str
    jobs: list[EnqueuedJob]


class KraResult(BaseModel):
    code: str | None = Field(default=None, description="KRA resultCd of the last answer.")
    message: str | None = None


class Signature(BaseModel):
    """KRA's signature of an accepted sale or credit note: what the receipt must print."""

    model_config = ConfigDict(extra="ignore")

    curRcptNo: int
    totRcptNo: int
    intrlData: str
    rcptSign: str
    sdcDateTime: str


class Carrier(BaseModel):
    """The stock master whose send carries a superseded one's balance."""

    job_id: int
    state: JobState = Field(
        description="Once accepted, KRA holds the balance the superseded job would have sent."
    )


class JobView(BaseModel):
    id: int
    kind: str
    tin: str
    bhf_id: str
    idempotency_key: str
    state: JobState
    attempts: int
    depends_on: list[str]
    request_id: str | None
    kra: KraResult
    invc_no: int | None = Field(description="KRA invoice number (sales, credit notes).")
    sar_no: int | None = Field(description="KRA stock movement number (stock_io).")
    signature: Signature | None
    sdc_id: str | None
    mrc_no: str | None
    qr_url: str | None
    receipt_missing: bool
    skip_reason: str | None
    created_at: float = Field(description="UNIX epoch seconds.")
    updated_at: float
    accepted_at: float | None
    superseded_by: int | None = Field(
        default=None,
        description="A superseded stock master: the later one of the same item that replaced "
        "it (its balance is newer).",
    )
    merged_into: int | None = Field(
        default=None,
        description="A stock-out sent inside an earlier stock-out's merged insertStockIO: that "
        "job (the carrier). It ends as that send does: accepted with its sarNo, or dead.",
    )
    carried_by: Carrier | None = Field(
        default=None,
        description="A superseded stock master: the send that carries its balance, following "
        "superseded_by through any later superseding. The job is done once this is accepted.",
    )
    merged: list[int] = Field(
        default_factory=list,
        description="A stock-out whose insertStockIO carried later stock-outs (ETIMS_COALESCE__"
        "STOCK_IO): their ids, in order. Each names this job in merged_into and ends as this "
        "send does. Empty for any other job.",
    )


class RequestView(BaseModel):
    request_id: str
    jobs: list[JobView]


class BranchView(BaseModel):
    tin: str
    bhf_id: str
    jobs_by_state: dict[str, int]
    backlog: int = Field(description="Jobs still to send: pending, in_flight, retry_wait, unknown.")
    oldest_pending_age_s: float | None
    parked: bool
    parked_reason: str | None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def schema_components() -> dict[str, Any]:
    """JSON Schemas of the hand-parsed request body, for the OpenAPI document."""
    return JobsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
