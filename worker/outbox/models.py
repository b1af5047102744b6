"""The outbox: the system of record for every job. Producers and workers both import this.

Tables
------
``branches``         one row per (tin, bhf_id): the lease (owner, until, fencing token), the
                     per-branch job sequence, KRA's next ``invcNo``/``sarNo``, ``wake_after``
                     (when the sweeper must wake it; NULL = idle) and ``parked_reason``.
``stock_balances``   (branch, itemCd) -> quantity: KRA's running balance of *accepted* stock
                     movements, which ``saveStockMaster.rsdQty`` must equal.
``devices``          (tin, bhf_id): serial, cmcKey encrypted at rest (Fernet), sdcId, mrcNo;
                     the branch's tax rates from KRA's code list (class 04, JSON), when they
                     were fetched, and when the key last worked (throttled, not per job).
``jobs``             one row per enqueued record; ``seq`` orders a branch; ``body`` is the exact
                     request sent (frozen at first send, resent unchanged).
``job_dependencies`` (job, depends_on): the job may only go once depends_on is accepted.
``attempts``         one row per OSCU call: outcome, KRA code, latency, request hash.
``result_events``    one row per accepted/dead/blocked transition (webhooks, consumers).
``audit_log``        who did what to which job, when and why (replay, skip, edit, set-next).

Times are UNIX epoch seconds (float) in every database: one comparison semantics for SQLite
and PostgreSQL, and cheap to index. States are the strings of :class:`schemas.jobs.JobState`.

Indexes that carry the hot paths: ``ix_jobs_branch_active_seq`` (pick the head of a branch;
partial: active jobs only),
``uq_jobs_tin_key`` (idempotent intake), ``uq_jobs_trd_invc_scope_trd_invc_no`` (a trader
invoice number claimed once per scope), ``ix_branches_wake_after`` (the sweeper),
``ix_job_dependencies_depends_on`` (unblock dependents), ``ix_jobs_branch_stock_item_seq``
(a later stock master of the same item, which supersedes an earlier one).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from schemas.jobs import ACTIVE_STATES, JobKind, JobState
from worker.outbox.base import Id, metadata

__all__ = [
    "ACTIVE_STATES",
    "JobKind",
    "JobState",
    "attempts",
    "audit_log",
    "branches",
    "devices",
    "job_dependencies",
    "jobs",
    "result_events",
    "stock_balances",
]

#: Jobs still to send. Written out literally (never bound) wherever it must match the partial
#: index below: a planner only uses a partial index whose predicate the query states itself.
ACTIVE_PREDICATE = "state IN ({})".format(", ".join(f"'{s.value}'" for s in ACTIVE_STATES))

branches = Table(
    "branches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tin", String(11), nullable=False),
    Column("bhf_id", String(2), nullable=False),
    Column("next_seq", BigInteger, nullable=False, default=1),
    Column("next_invc_no", BigInteger, nullable=False, default=1),
    Column("next_sar_no", BigInteger, nullable=False, default=1),
    Column("lease_owner", String(120)),
    Column("lease_until", Float),
    Column("fencing_token", BigInteger, nullable=False, default=0),
    Column("wake_after", Float),
    Column("parked_reason", Text),
    Column("parked_at", Float),
    # KRA's next invcNo/sarNo as its last sequence answer stated it (shown by status).
    Column("kra_expected_invc_no", BigInteger),
    Column("kra_expected_sar_no", BigInteger),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("tin", "bhf_id", name="uq_branches_tin_bhf_id"),
    Index("ix_branches_wake_after", "wake_after"),
)

stock_balances = Table(
    "stock_balances",
    metadata,
    Column("branch_id", Id, ForeignKey("branches.id"), primary_key=True),
    Column("item_cd", String(20), primary_key=True),
    Column("qty", Numeric(18, 2), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("tin", String(11), primary_key=True),
    Column("bhf_id", String(2), primary_key=True),
    Column("serial", String(100), nullable=False),
    Column("cmc_key_encrypted", Text, nullable=False),
    Column("sdc_id", String(40)),
    Column("mrc_no", String(40)),
    Column("info", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    #: KRA's rates per tax type for this branch (class 04 ``userDfnCd1``), JSON of strings.
    Column("tax_rates", Text),
    Column("codes_synced_at", Float),
    #: Last time an authenticated call with this key was accepted (at most once a minute).
    Column("key_ok_at", Float),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("branch_id", Id, ForeignKey("branches.id"), nullable=False),
    Column("tin", String(11), nullable=False),
    Column("bhf_id", String(2), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("payload_hash", String(64), nullable=False),
    Column("original_job_id", Id, ForeignKey("jobs.id")),
    Column("state", String(16), nullable=False, default=JobState.PENDING.value),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    #: some attempt with the current number may have reached KRA: a duplicate then means ours
    Column("maybe_recorded", Boolean, nullable=False, default=False),
    Column("invc_no", BigInteger),
    Column("sar_no", BigInteger),
    Column("body", Text),
    Column("result_code", String(10)),
    Column("result_message", Text),
    Column("receipt", Text),
    Column("receipt_missing", Boolean, nullable=False, default=False),
    Column("qr_url", Text),
    Column("sdc_id", String(40)),
    Column("mrc_no", String(40)),
    Column("blocked_by", Id),
    Column("skip_reason", Text),
    Column("request_id", String(64)),
    #: a sale's or credit note's trdInvcNo (0006), for enqueue's reuse check
    Column("trd_invc_no", String(50)),
    #: where that trdInvcNo is claimed ("tin" or "tin/bhf_id"; NULL when the check is off)
    Column("trd_invc_scope", String(20)),
    #: a stock master's itemCd (0009): finds a later stock master of the same item
    Column("stock_item_cd", String(20)),
    #: a superseded stock master: the later one whose send carries its balance (0009)
    Column("superseded_by", Id),
    #: a stock movement's sarTyCd (0010): a stock-out may wait behind later sales, a stock-in not
    Column("sar_ty_cd", String(2)),
    #: a stock-out sent inside an earlier one's merged insertStockIO: that carrier (0010)
    Column("merged_into", Id),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("accepted_at", Float),
    UniqueConstraint("tin", "idempotency_key", name="uq_jobs_tin_key"),
    UniqueConstraint("branch_id", "seq", name="uq_jobs_branch_seq"),
    # Only jobs still to send, in seq order: a branch's head is the first entry (0004).
    Index(
        "ix_jobs_branch_active_seq",
        "branch_id",
        "seq",
        postgresql_where=text(ACTIVE_PREDICATE),
        sqlite_where=text(ACTIVE_PREDICATE),
    ),
    Index("ix_jobs_state_kind", "state", "kind"),
    # A branch's stock masters per item in seq order: the later one that supersedes (0009).
    Index(
        "ix_jobs_branch_stock_item_seq",
        "branch_id",
        "stock_item_cd",
        "seq",
        postgresql_where=text("stock_item_cd IS NOT NULL"),
        sqlite_where=text("stock_item_cd IS NOT NULL"),
    ),
    # The stock-outs a merged send carries (0010).
    Index(
        "ix_jobs_merged_into",
        "merged_into",
        postgresql_where=text("merged_into IS NOT NULL"),
        sqlite_where=text("merged_into IS NOT NULL"),
    ),
    # A trdInvcNo is claimed once per scope: two concurrent enqueues cannot both take it (0006).
    Index(
        "uq_jobs_trd_invc_scope_trd_invc_no",
        "trd_invc_scope",
        "trd_invc_no",
        unique=True,
        postgresql_where=text("trd_invc_scope IS NOT NULL"),
        sqlite_where=text("trd_invc_scope IS NOT NULL"),
    ),
    # Finds every earlier job of a tin with a trdInvcNo, whatever scope it was claimed under.
    Index(
        "ix_jobs_tin_trd_invc_no",
        "tin",
        "trd_invc_no",
        postgresql_where=text("trd_invc_no IS NOT NULL"),
        sqlite_where=text("trd_invc_no IS NOT NULL"),
    ),
)

job_dependencies = Table(
    "job_dependencies",
    metadata,
    Column("job_id", Id, ForeignKey("jobs.id"), primary_key=True),
    Column("depends_on_id", Id, ForeignKey("jobs.id"), primary_key=True),
    Index("ix_job_dependencies_depends_on", "depends_on_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("kra_number", BigInteger),
    Column("started_at", Float, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("result_code", String(10)),
    Column("message", Text),
    Column("http_status", Integer),
    Column("error", String(80)),
    Column("request_hash", String(64)),
    Column("fencing_token", BigInteger, nullable=False),
    Column("worker", String(120)),
    Index("ix_attempts_job_id", "job_id"),
)

result_events = Table(
    "result_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.id"), nullable=False),
    Column("tin", String(11), nullable=False),
    Column("state", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_result_events_tin_id", "tin", "id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(40), nullable=False),
    Column("job_id", Id),
    Column("tin", String(11)),
    Column("bhf_id", String(2)),
    Column("reason", Text),
    Column("details", Text),
)
