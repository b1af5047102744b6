"""Every Prometheus metric of etims-relay, declared on one explicit registry.

Two kinds of metric live here (docs/operations-metrics.md lists each with its meaning):

- **Process counters and histograms**, changed as things happen (the drain's observer, the
  webhook sender, the notices sync, the notification intake). Each worker process exposes its
  own on ``etims-relay worker --metrics-port P`` and the intake on ``/metrics``; Prometheus
  sums them over targets. The worker runs a threads pool, so every drain thread of a process
  updates the same (thread-safe) objects: nothing is lost between threads, and nothing needs
  prometheus-client's multiprocess mode.
- **Database gauges**, computed at scrape time by :class:`DbCollector` (jobs by state and
  kind, oldest pending age, stuck branches, unread notices, flagged devices, branches whose
  KRA tax rates disagree with ``ETIMS_TAX_RATES``). Every target
  reports the same values, so dashboards and alerts aggregate them with ``max``, never ``sum``.
  The queries are bounded (see :mod:`worker.outbox.ops_queries`) and cached for a few seconds
  per process, so a scrape stays cheap with a million pending jobs.

Labels are bounded: endpoint (the OSCU endpoint list), outcome and kind (enums), KRA code (three
digits or a few words, anything else is ``other``), reason (the retry reasons). Never a job id,
an invoice number or a branch, except the ``branch`` label of the worst-N gauge, capped at N.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from schemas.jobs import ACTIVE_STATES, JobKind, JobState
from schemas.settings import MetricsSettings
from worker.oscu.endpoints import ENDPOINTS
from worker.oscu.outcome import CallOutcome
from worker.outbox import device_queries as dq
from worker.outbox import ops_queries as oq
from worker.tax_rates import override_mismatches

log = logging.getLogger("etims_relay.metrics")

#: The one registry every etims-relay metric is declared on (no global default registry).
REGISTRY = CollectorRegistry(auto_describe=True)
# The standard process_* (CPU, memory, open fds, start time), python_info and python_gc_*
# series, as on prometheus_client's default registry: memory growth and fd leaks show here.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

#: OSCU answers in ~2 s when healthy; the client gives up at the read timeout (30 s).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
#: From enqueue to KRA's signature: seconds when flowing, hours when KRA is down.
END_TO_END_BUCKETS_S = (
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    21600.0, 86400.0,
)  # fmt: skip

OSCU_CALLS = Counter(
    "etims_oscu_calls_total",
    "OSCU calls by endpoint, outcome (worker.oscu.outcome.OutcomeKind) and KRA result code.",
    ["endpoint", "outcome", "code"],
    registry=REGISTRY,
)
OSCU_LATENCY = Histogram(
    "etims_oscu_call_duration_seconds",
    "Wall time of one OSCU call, from sending the request to classifying the answer.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
JOB_OUTCOMES = Counter(
    "etims_job_outcomes_total",
    "What each send decided for its job: accepted, retry, dead or parked; superseded for a "
    "stock master ended without a call because a later one carries its balance. A stock-out "
    "carried by a merged send counts with that send's outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
STOCK_OUTS_MERGED = Counter(
    "etims_stock_outs_merged_total",
    "Stock-outs that went inside an earlier stock-out's merged insertStockIO, counted when "
    "that send ended (accepted or dead); each also counts in etims_job_outcomes_total.",
    ["outcome"],
    registry=REGISTRY,
)
MERGED_SENDS = Counter(
    "etims_merged_sends_total",
    "Merged insertStockIO sends (carriers with at least one stock-out inside) that ended "
    "accepted or dead.",
    ["outcome"],
    registry=REGISTRY,
)
ENQUEUE_TO_ACCEPTED = Histogram(
    "etims_job_enqueue_to_accepted_seconds",
    "Time from a job's enqueue to KRA accepting it.",
    ["kind"],
    buckets=END_TO_END_BUCKETS_S,
    registry=REGISTRY,
)
RETRIES = Counter(
    "etims_job_retries_total",
    "Sends scheduled again: reason is transient, rate_limited, unknown or sequence.",
    ["kind", "reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "etims_job_dead_letters_total",
    "Jobs that went dead, by kind and KRA code (LOCAL: body not buildable; ATTEMPTS: gave up).",
    ["kind", "code"],
    registry=REGISTRY,
)
BRANCH_PARKS = Counter(
    "etims_branch_parks_total",
    "Branches parked for an operator (KRA's counter ahead, outcome unknown after all attempts).",
    registry=REGISTRY,
)
LEASE_TAKEOVERS = Counter(
    "etims_lease_takeovers_total",
    "Drains that found their branch lease taken over by another worker (their writes refused).",
    registry=REGISTRY,
)
DRAINS = Counter(
    "etims_drains_total",
    "Drains that took a branch lease.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "etims_webhook_deliveries_total",
    "Result webhook POSTs by outcome (delivered, retry, failed).",
    ["outcome"],
    registry=REGISTRY,
)
NOTICE_SYNCS = Counter(
    "etims_notice_syncs_total",
    "selectNoticeList syncs per device, by outcome (accepted, empty, or the failure kind).",
    ["outcome"],
    registry=REGISTRY,
)
NOTICES_STORED = Counter(
    "etims_notices_stored_total",
    "KRA notices stored for the first time (a re-sync of a known notice does not count).",
    registry=REGISTRY,
)
NOTIFICATIONS_RECEIVED = Counter(
    "etims_notifications_received_total",
    "Device events pushed to PUT /v1/notifications, by event and result (stored, duplicate).",
    ["event", "result"],
    registry=REGISTRY,
)
OPERATOR_ACTIONS = Counter(
    "etims_operator_actions_total",
    "Audited operator actions done by this process (replay, skip, edit, set_next).",
    ["action"],
    registry=REGISTRY,
)

_KRA_CODE = re.compile(r"^[0-9]{3}$")
#: Codes that are ours, not KRA's (see worker/drain.py and worker/decide.py).
LOCAL_CODES = frozenset({"LOCAL", "DEVICE", "ATTEMPTS"})


def code_label(code: str | None) -> str:
    """A KRA result code as a bounded label: 3 digits, one of ours, ``none`` or ``other``."""
    if not code:
        return "none"
    if _KRA_CODE.match(code) or code in LOCAL_CODES:
        return code
    return "other"


def endpoint_label(endpoint: str) -> str:
    """An OSCU endpoint name as a bounded label (unknown names become ``other``)."""
    return endpoint if endpoint in ENDPOINTS else "other"


def record_call(outcome: CallOutcome) -> None:
    """Count one OSCU call and its latency (the drain's observer and the notices sync)."""
    endpoint = endpoint_label(outcome.endpoint)
    OSCU_CALLS.labels(endpoint, outcome.kind.value, code_label(outcome.result_code)).inc()
    OSCU_LATENCY.labels(endpoint).observe(outcome.latency_s)


# --------------------------------------------------------------------------- database gauges

#: States reported by ``etims_jobs``: the ones an operator must watch (``merged``: stock-outs
#: waiting inside a merged send that is on its way, e.g. retrying through a KRA outage).
#: Accepted and skipped grow without bound; their rate is ``etims_job_outcomes_total``.
GAUGE_STATES = tuple(
    s.value for s in (*ACTIVE_STATES, JobState.MERGED, JobState.BLOCKED, JobState.DEAD)
)
ACTIVE = tuple(s.value for s in ACTIVE_STATES)
#: Events of inbound notifications that flag a device (worker/notifications.py).
FLAG_EVENTS = (
    "credentials_expiring",
    "device_dates_expiring",
    "device_deactivated",
    "device_unused",
)
#: Tax types of class 04, one sample each of ``etims_tax_rate_override_mismatches``.
TAX_TYPES = ("A", "B", "C", "D", "E")
#: Defaults of :class:`DbCollector` (overridable through ``Settings.metrics``).
DEFAULT_WORST_BRANCHES = 10
DEFAULT_COUNT_CAP = 100_000
DEFAULT_CACHE_S = 5.0
#: Jobs walked per active state to rank the worst branches (ops_queries.oldest_branches).
BRANCH_WALK = 2_000
#: Blocked jobs read to count blocked branches (ops_queries.blocked_branches).
BLOCKED_CAP = 10_000


class DbCollector(Collector):
    """Gauges read from the outbox at scrape time, cached ``cache_s`` seconds per process.

    A database that does not answer yields ``etims_db_up 0`` and nothing else: the scrape
    itself still succeeds, so the process counters are not lost with it.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        worst_branches: int = DEFAULT_WORST_BRANCHES,
        count_cap: int = DEFAULT_COUNT_CAP,
        cache_s: float = DEFAULT_CACHE_S,
        clock: Callable[[], float] = time.time,
        tax_override: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.engine = engine
        #: ETIMS_TAX_RATES, compared with each branch's KRA rates at scrape time
        self.tax_override = tax_override
        self.worst_branches = worst_branches
        self.count_cap = count_cap
        self.cache_s = cache_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        """Names only, so registering never queries the database."""
        return _families({}, now=0.0, describe=True)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                self._cached = (now, self._read(now))
            return list(self._cached[1])

    def _read(self, now: float) -> list[Metric]:
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                values: dict[str, Any] = {
                    "jobs": oq.capped_job_counts(
                        conn, GAUGE_STATES, [k.value for k in JobKind], self.count_cap
                    ),
                    "oldest": oq.oldest_created_at(conn, ACTIVE),
                    "worst": oq.oldest_branches(conn, ACTIVE, self.worst_branches, BRANCH_WALK),
                    "parked": oq.parked_branches(conn),
                    "blocked": oq.blocked_branches(conn, BLOCKED_CAP),
                    "unread": oq.unread_notice_count(conn),
                    "flagged": oq.flagged_device_counts(conn, FLAG_EVENTS),
                    "rates": override_mismatches(dq.device_tax_rates(conn), self.tax_override)
                    if self.tax_override is not None
                    else [],
                }
        except Exception as exc:  # any driver error: report the DB down, keep the scrape
            log.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
            up = GaugeMetricFamily("etims_db_up", "1 if the scrape-time DB read worked.")
            up.add_metric([], 0.0)
            return [up]
        values["duration"] = time.perf_counter() - started
        return list(_families(values, now=now))


def _families(values: dict[str, Any], *, now: float, describe: bool = False) -> Iterator[Metric]:
    """The gauge families; with ``describe`` only their names (no samples)."""
    up = GaugeMetricFamily("etims_db_up", "1 if the scrape-time DB read worked.")
    took = GaugeMetricFamily(
        "etims_db_collect_duration_seconds", "Time the scrape-time DB read took."
    )
    jobs = GaugeMetricFamily(
        "etims_jobs",
        f"Jobs by state and kind, now (each count stops at the cap, default {DEFAULT_COUNT_CAP}).",
        labels=["state", "kind"],
    )
    oldest = GaugeMetricFamily(
        "etims_oldest_pending_age_seconds",
        "Age of the oldest job not yet accepted and still being worked (0 if none).",
    )
    worst = GaugeMetricFamily(
        "etims_branch_oldest_pending_age_seconds",
        "Age of the oldest pending job of the worst N branches (label branch=TIN/BHF).",
        labels=["branch"],
    )
    stuck = GaugeMetricFamily(
        "etims_branches_stuck",
        "Branches that cannot progress without an operator: parked, or holding blocked jobs.",
        labels=["reason"],
    )
    stuck_age = GaugeMetricFamily(
        "etims_branch_stuck_max_age_seconds",
        "How long the longest-stuck branch has been parked / had a blocked job (0 if none).",
        labels=["reason"],
    )
    unread = GaugeMetricFamily("etims_notices_unread", "KRA notices nobody has marked read.")
    flagged = GaugeMetricFamily(
        "etims_devices_flagged",
        "Devices with an unacknowledged pushed event (credentials expiring, deactivated, ...).",
        labels=["event"],
    )
    mismatch = GaugeMetricFamily(
        "etims_tax_rate_override_mismatches",
        "Branches whose KRA rate (code list class 04) for a tax type differs from "
        "ETIMS_TAX_RATES (0 without an override).",
        labels=["tax_type"],
    )
    families = [up, took, jobs, oldest, worst, stuck, stuck_age, unread, flagged, mismatch]
    if describe:
        yield from families
        return
    up.add_metric([], 1.0)
    took.add_metric([], values["duration"])
    for state, kind, count in values["jobs"]:
        jobs.add_metric([state, kind], float(count))
    oldest.add_metric([], _age(now, values["oldest"]))
    for tin, bhf_id, created in values["worst"]:
        worst.add_metric([f"{tin}/{bhf_id}"], _age(now, created))
    for reason, (count, since) in (("parked", values["parked"]), ("blocked", values["blocked"])):
        stuck.add_metric([reason], float(count))
        stuck_age.add_metric([reason], _age(now, since))
    unread.add_metric([], float(values["unread"]))
    for event, count in values["flagged"].items():
        flagged.add_metric([event], float(count))
    for tax_type in TAX_TYPES:
        differing = sum(tax_type in m.differences for m in values["rates"])
        mismatch.add_metric([tax_type], float(differing))
    yield from families


def _age(now: float, since: float | None) -> float:
    return 0.0 if since is None else max(0.0, now - since)


# --------------------------------------------------------------------------- wiring

_installed: DbCollector | None = None
_install_lock = threading.Lock()


def install_db_collector(engine: Engine, **options: Any) -> DbCollector:
    """Register the DB gauges on :data:`REGISTRY` (replacing a previous one in this process)."""
    global _installed
    with _install_lock:
        if _installed is not None:
            REGISTRY.unregister(_installed)
        _installed = DbCollector(engine, **options)
        REGISTRY.register(_installed)
        return _installed


def ensure_db_collector(engine: Engine, **options: Any) -> DbCollector:
    """The installed DB gauges if they read ``engine``, else install them (the intake)."""
    with _install_lock:
        if _installed is not None and _installed.engine is engine:
            return _installed
    return install_db_collector(engine, **options)


def uninstall_db_collector() -> None:
    """Drop the DB gauges (a process whose engine is closing)."""
    global _installed
    with _install_lock:
        if _installed is not None:
            REGISTRY.unregister(_installed)
            _installed = None


def exported_names() -> frozenset[str]:
    """Every sample name this code can expose (``_total``, ``_bucket``... included).

    The dashboard test checks each metric a panel queries against this set.
    """
    names: set[str] = set()
    for family in [*REGISTRY.collect(), *_families({}, now=0.0, describe=True)]:
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return frozenset(names)


def install_for(
    engine: Engine,
    settings: MetricsSettings,
    *,
    tax_override: Mapping[str, Decimal] | None = None,
) -> DbCollector:
    """The DB gauges with the configured bounds (entry points call this once)."""
    return install_db_collector(
        engine,
        worst_branches=settings.worst_branches,
        count_cap=settings.count_cap,
        cache_s=settings.db_cache_s,
        tax_override=tax_override,
    )


def serve(port: int, bind: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from elsewhere
    """Serve :data:`REGISTRY` on ``http://bind:port/metrics`` in a daemon thread.

    Returns the bound port (``port=0`` picks a free one, which the worker logs).
    """
    server, _thread = start_http_server(port, addr=bind, registry=REGISTRY)
    return int(server.server_port)


def render() -> tuple[bytes, str]:
    """The exposition text of :data:`REGISTRY` and its content type (for ``/metrics`` routes)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
