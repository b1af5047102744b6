"""worker.celery_app: a module-level app for ``celery -A worker.celery_app`` that does nothing on
import, and one configuration shared with ``etims-relay worker``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from schemas.settings import Settings
from worker.celery_app import celery_config, create_app, node_name
from worker.embedded_broker import PID_NAME, socket_path_for

PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import celery
    import worker.celery_app as module

    state = Path(sys.argv[1])
    report = {
        "configured_on_import": module.app.configured,
        "current_on_import": celery.current_app is module.app,
        "files_on_import": sorted(p.name for p in state.iterdir()) if state.exists() else [],
    }
    conf = module.app.conf  # first read: settings are loaded, the broker resolved
    report.update(
        broker_url=conf.broker_url,
        pool=conf.worker_pool,
        time_limit=conf.task_time_limit,
        events=conf.worker_send_task_events,
        queue=conf.task_default_queue,
    )
    print(json.dumps(report))
    """
)


def _probe(tmp_path: Path, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
    clean.update(ETIMS_STATE_DIR=str(tmp_path / "state"), **env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "state")],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_module_starts_nothing_and_reading_its_config_uses_the_settings(
    tmp_path: Path,
) -> None:
    report = _probe(
        tmp_path,
        ETIMS_DATABASE_URL=f"sqlite:///{tmp_path}/x.db",
        ETIMS_BROKER_URL="redis://127.0.0.1:6379/12",
        ETIMS_CELERY__EVENTS="true",
    )
    assert report["configured_on_import"] is False
    assert report["current_on_import"] is False
    assert report["files_on_import"] == []
    assert report["broker_url"] == "redis://127.0.0.1:6379/12"
    assert report["pool"] == "threads"
    assert report["time_limit"] is None, "the threads pool cannot enforce a time limit"
    assert report["events"] is True
    assert report["queue"] == "etims"


def test_embedded_broker_starts_only_when_the_config_is_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    report = _probe(tmp_path, ETIMS_DATABASE_URL=f"sqlite:///{tmp_path}/x.db", ETIMS_BROKER_URL="")
    try:
        assert report["files_on_import"] == []
        assert str(report["broker_url"]).startswith("redis+socket://")
        assert (state / PID_NAME).exists() and socket_path_for(state).exists()
    finally:
        from worker.embedded_broker import stop_embedded_redis

        stop_embedded_redis(state)


def test_etims_relay_worker_and_the_module_app_share_one_configuration() -> None:
    settings = Settings(_env_file=None, broker_url="redis://x/0")  # type: ignore[call-arg]
    app = create_app(settings, "redis://x/0")
    for key, value in celery_config(settings, "redis://x/0").items():
        assert app.conf[key] == value, key
    assert app.conf.task_time_limit is None
    assert app.conf.worker_send_task_events is False


def test_node_names_are_stable() -> None:
    assert node_name(host="h1") == "etims@h1"
    assert node_name("w2", host="h1") == "etims-w2@h1"
    assert node_name("w2", host="h1") == node_name("w2", host="h1")
