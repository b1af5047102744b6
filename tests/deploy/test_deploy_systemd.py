"""deploy/systemd/: units that systemd accepts, that run real commands, and stop gracefully."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.deploy.deploy_support import (
    DEPLOY,
    check_cli_argv,
    drain_stop_bound_s,
    load_settings,
    settings_field,
)

SYSTEMD = DEPLOY / "systemd"
INSTALLED_CLI = "/opt/etims-relay/venv/bin/etims-relay"
SERVICES = {
    "worker": SYSTEMD / "etims-relay-worker@.service",
    "beat": SYSTEMD / "etims-relay-beat.service",
    "intake": SYSTEMD / "etims-relay-intake.service",
    "migrate": SYSTEMD / "etims-relay-migrate.service",
}
LONG_RUNNING = ("worker", "beat", "intake")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    (value,) = unit["Service"][key]
    return value


def _env_example() -> dict[str, str]:
    env = {}
    for line in (SYSTEMD / "etims-relay.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


@pytest.mark.parametrize("role", SERVICES)
def test_exec_start_is_a_real_cli_command(role: str) -> None:
    argv = shlex.split(_one(parse_unit(SERVICES[role]), "ExecStart").replace("%i", "9101"))
    assert argv[0] == INSTALLED_CLI
    check_cli_argv(argv[1:])


@pytest.mark.parametrize("role", LONG_RUNNING)
def test_long_running_units_restart_and_stop_gracefully(role: str) -> None:
    unit = parse_unit(SERVICES[role])
    assert _one(unit, "Restart") == "always"
    assert _one(unit, "KillSignal") == "SIGTERM"
    assert _one(unit, "EnvironmentFile") == "/etc/etims-relay/etims-relay.env"
    assert _one(unit, "User") == "etims"
    env = {**_env_example(), "ETIMS_SECRET_KEY": Fernet.generate_key().decode()}
    stop_s = float(_one(unit, "TimeoutStopSec"))
    if role in ("worker", "beat"):
        assert stop_s > drain_stop_bound_s(load_settings(env)), "a drain must finish on stop"


@pytest.mark.parametrize("role", SERVICES)
def test_units_are_hardened(role: str) -> None:
    service = parse_unit(SERVICES[role])["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "etims-relay",
    }.items():
        assert service.get(key) == [value], (role, key)


def test_exactly_one_unit_runs_beat() -> None:
    beats = [r for r, p in SERVICES.items() if "--beat" in _one(parse_unit(p), "ExecStart")]
    assert beats == ["beat"]


def test_env_example_names_real_settings_with_placeholder_secrets() -> None:
    env = _env_example()
    assert [k for k in env if settings_field(k) is None] == []
    assert "CHANGE-ME" in env["ETIMS_SECRET_KEY"]
    assert "CHANGE-ME" in env["ETIMS_DATABASE_URL"]


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys and bad values are warnings we refuse."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not installed (Debian package systemd)")
    cli = str(Path(sys.executable).with_name("etims-relay"))
    names = []
    for path in [*SERVICES.values(), SYSTEMD / "etims-relay.target"]:
        name = path.name.replace("@.service", "@9101.service")
        (tmp_path / name).write_text(path.read_text(encoding="utf-8").replace(INSTALLED_CLI, cli))
        names.append(f"./{name}")
    done = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    # ... and the same check does flag a broken unit.
    (tmp_path / "broken.service").write_text(
        "[Service]\nExecStart=/bin/true\nTimeoutStopSec=soon\n"
    )
    broken = subprocess.run(
        [analyze, "verify", "--man=no", "./broken.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "TimeoutStopSec" in broken.stdout + broken.stderr or "soon" in broken.stderr
