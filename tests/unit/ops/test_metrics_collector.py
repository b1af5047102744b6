"""The scrape-time DB gauges and the metric helpers, on a real (SQLite) outbox."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, insert, update

from worker import metrics
from worker.metrics import DbCollector, code_label, endpoint_label
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import queries as q
from worker.outbox.db import make_engine
from worker.outbox.models import branches, jobs
from worker.outbox.ops_models import notices, notification_registrations, notifications

TIN = "P051234567A"
NOW = 1_000_000.0


def samples(collector: DbCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def add_jobs(engine: Engine, bhf_id: str, states: list[tuple[str, str, float]]) -> int:
    """Jobs (state, kind, created_at) on a branch; returns the branch id."""
    with engine.begin() as conn:
        branch_id = q.ensure_branch(conn, TIN, bhf_id, NOW)
        first = q.reserve_seq(conn, branch_id, len(states), NOW)
        for offset, (state, kind, created) in enumerate(states):
            conn.execute(
                insert(jobs).values(
                    branch_id=branch_id, tin=TIN, bhf_id=bhf_id, seq=first + offset, kind=kind,
                    idempotency_key=f"{bhf_id}:{offset}", payload="{}", payload_hash="h",
                    state=state, attempts=0, maybe_recorded=False, receipt_missing=False,
                    created_at=created, updated_at=created,
                )
            )  # fmt: skip
    return branch_id


def test_gauges_report_the_outbox(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    add_jobs(engine, "00", [("accepted", "sale", NOW - 900), ("pending", "sale", NOW - 120),
                            ("retry_wait", "item", NOW - 60), ("dead", "sale", NOW - 50),
                            ("blocked", "stock_io", NOW - 40)])  # fmt: skip
    parked = add_jobs(engine, "01", [("pending", "item", NOW - 300)])
    with engine.begin() as conn:
        conn.execute(
            update(branches)
            .where(branches.c.id == parked)
            .values(parked_reason="KRA ahead", parked_at=NOW - 200)
        )
        conn.execute(update(jobs).where(jobs.c.state == "blocked").values(updated_at=NOW - 30))
        conn.execute(insert(notices).values(tin=TIN, bhf_id="00", notice_no="1", fetched_at=NOW))
        conn.execute(insert(notices).values(
            tin=TIN, bhf_id="00", notice_no="2", fetched_at=NOW, read_at=NOW
        ))  # fmt: skip
        sender = conn.execute(
            insert(notification_registrations)
            .values(name="kra", key_hash="x", created_at=NOW)
            .returning(notification_registrations.c.id)
        ).scalar_one()
        for delivery, bhf in (("a", "00"), ("b", "00"), ("c", "01")):
            conn.execute(insert(notifications).values(
                registration_id=sender, delivery_id=delivery, event="device_deactivated",
                tin=TIN, bhf_id=bhf, body="{}", received_at=NOW,
            ))  # fmt: skip

    got = samples(DbCollector(engine, clock=lambda: NOW, worst_branches=1))

    assert got[("etims_db_up", ())] == 1
    assert got[("etims_jobs", (("kind", "sale"), ("state", "pending")))] == 1
    assert got[("etims_jobs", (("kind", "item"), ("state", "retry_wait")))] == 1
    assert got[("etims_jobs", (("kind", "sale"), ("state", "dead")))] == 1
    assert got[("etims_jobs", (("kind", "item"), ("state", "unknown")))] == 0
    assert not any(name == "etims_jobs" and ("state", "accepted") in labels for name, labels in got)
    assert got[("etims_oldest_pending_age_seconds", ())] == 300
    # worst N = 1: only the branch with the oldest pending job, labelled TIN/BHF
    worst = {k: v for k, v in got.items() if k[0] == "etims_branch_oldest_pending_age_seconds"}
    assert worst == {("etims_branch_oldest_pending_age_seconds", (("branch", f"{TIN}/01"),)): 300}
    assert got[("etims_branches_stuck", (("reason", "parked"),))] == 1
    assert got[("etims_branch_stuck_max_age_seconds", (("reason", "parked"),))] == 200
    assert got[("etims_branches_stuck", (("reason", "blocked"),))] == 1
    assert got[("etims_branch_stuck_max_age_seconds", (("reason", "blocked"),))] == 30
    assert got[("etims_notices_unread", ())] == 1
    assert got[("etims_devices_flagged", (("event", "device_deactivated"),))] == 2
    assert got[("etims_devices_flagged", (("event", "credentials_expiring"),))] == 0
    engine.dispose()


def test_counts_stop_at_the_cap_and_reads_are_cached(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    add_jobs(engine, "00", [("pending", "sale", NOW - i) for i in range(30)])
    clock = [NOW]
    collector = DbCollector(engine, count_cap=10, cache_s=5, clock=lambda: clock[0])
    assert samples(collector)[("etims_jobs", (("kind", "sale"), ("state", "pending")))] == 10
    add_jobs(engine, "01", [("dead", "item", NOW)])
    dead = ("etims_jobs", (("kind", "item"), ("state", "dead")))
    assert samples(collector)[dead] == 0  # cached
    clock[0] += 6
    assert samples(collector)[dead] == 1
    engine.dispose()


def test_an_unreachable_database_reports_down_without_failing_the_scrape() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    got = samples(DbCollector(engine, cache_s=0))
    assert got == {("etims_db_up", ()): 0.0}
    engine.dispose()


def test_labels_are_bounded() -> None:
    assert [code_label(c) for c in ("000", "910", None, "", "LOCAL", "ATTEMPTS", "x" * 50)] == [
        "000", "910", "none", "none", "LOCAL", "ATTEMPTS", "other",
    ]  # fmt: skip
    assert endpoint_label("saveItem") == "saveItem"
    assert endpoint_label("../../etc/passwd") == "other"


def test_record_call_counts_the_call_and_its_latency() -> None:
    def value(name: str, **labels: Any) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("etims_oscu_calls_total", endpoint="saveItem", outcome="rejected", code="910")
    count = value("etims_oscu_call_duration_seconds_count", endpoint="saveItem")
    metrics.record_call(CallOutcome(OutcomeKind.REJECTED, "saveItem", "910", "bad", latency_s=0.2))
    assert value("etims_oscu_calls_total", endpoint="saveItem", outcome="rejected", code="910") == (
        before + 1
    )
    assert value("etims_oscu_call_duration_seconds_count", endpoint="saveItem") == count + 1


def test_every_name_has_the_prefix_and_a_unit_or_total_suffix() -> None:
    # process_* and python_* are prometheus_client's standard collectors, named by it.
    names = {n for n in metrics.exported_names() if not n.startswith(("process_", "python_"))}
    assert all(n.startswith("etims_") for n in names)
    assert "etims_webhook_deliveries_total" in names
    for name in names:
        assert not name.endswith("_ms"), name
