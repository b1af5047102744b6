"""The lease always outlives the longest a job can take (write, 401 re-send, receipt lookup)."""

from __future__ import annotations

from schemas.settings import DrainSettings, OscuSettings, Settings
from worker.drain import ROUND_TRIPS_PER_JOB, _Renewal


def settings(ttl: float) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        oscu=OscuSettings(connect_timeout_s=10, read_timeout_s=30),
        drain=DrainSettings(lease_ttl_s=ttl),
    )


def test_with_the_default_ttl_every_step_extends_the_lease() -> None:
    renewal = _Renewal.for_lease(settings(120), claimed_at=1000.0)
    assert renewal.due(1000.0)  # 120 s < 4 round trips of 40 s: no slack to skip one


def test_with_a_longer_ttl_the_lease_is_extended_before_a_job_could_outlast_it() -> None:
    renewal = _Renewal.for_lease(settings(600), claimed_at=1000.0)
    worst_job = ROUND_TRIPS_PER_JOB * 40
    assert not renewal.due(1000.0 + 600 - worst_job - 1)  # still a whole worst job left
    assert renewal.due(1000.0 + 600 - worst_job)  # no more: extend before this job
