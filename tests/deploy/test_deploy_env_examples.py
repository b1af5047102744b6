"""A deploy starts from its docs: every variable a deploy file requires is in the example it
tells you to copy, and every long-running service has a healthcheck.

The compose file's `${VAR:?}` interpolations and the compose secrets read from the environment
are what `docker compose up` refuses to start without; the example it names must list each.
The app's own required secrets (the ETIMS_* values compose builds from those interpolations)
must be in the Kubernetes Secret template and the systemd environment file too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import DEPLOY, load_yaml_documents

COMPOSE = DEPLOY / "docker-compose.yml"
#: `${NAME:?message}` or `${NAME?message}`: compose fails when NAME is unset (or empty).
REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")
#: `cp deploy/X deploy/.env` in the compose file's header.
COPY_HINT = re.compile(r"cp (deploy/\S+) deploy/\.env")


def required_by_compose(text: str, spec: dict[str, Any]) -> set[str]:
    """Variables compose cannot start without: required interpolations and secret sources."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    names = set(REQUIRED.findall(code))
    for secret in spec.get("secrets", {}).values():
        if "environment" in secret:
            names.add(secret["environment"])
    return names


def env_file_names(path: Path) -> set[str]:
    """Names assigned in a KEY=value file (comments and blank lines ignored)."""
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            names.add(stripped.split("=", 1)[0].strip())
    return names


def compose_example() -> Path:
    (hint,) = COPY_HINT.findall(COMPOSE.read_text(encoding="utf-8"))
    return DEPLOY.parent / hint


def app_secrets_required_by_compose() -> set[str]:
    """ETIMS_* variables of the relay services whose value needs a required interpolation."""
    spec = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    env = spec["x-relay-env"]
    return {name for name, value in env.items() if REQUIRED.search(str(value))}


def test_the_example_compose_names_exists() -> None:
    assert compose_example().is_file(), f"compose says to copy {compose_example()}: missing"


def test_every_variable_compose_requires_is_in_the_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    required = required_by_compose(text, yaml.safe_load(text))
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required
    missing = required - env_file_names(compose_example())
    assert not missing, f"{compose_example().name} lacks {sorted(missing)}"


def test_the_check_finds_a_missing_variable(tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8") + "\nx-extra: ${NEW_REQUIRED:?set it}\n"
    assert "NEW_REQUIRED" in required_by_compose(text, yaml.safe_load(text))
    lacking = tmp_path / "example.env"
    lacking.write_text("# NEW_REQUIRED=commented out does not count\nOTHER=1\n")
    assert "NEW_REQUIRED" not in env_file_names(lacking)


def test_k8s_secret_template_holds_every_secret_the_app_requires() -> None:
    required = app_secrets_required_by_compose()
    assert required == {"ETIMS_DATABASE_URL", "ETIMS_BROKER_URL", "ETIMS_SECRET_KEY"}
    (secret,) = load_yaml_documents(DEPLOY / "k8s" / "secret.yaml")
    assert required <= set(secret["stringData"])
    # Every secretKeyRef of the manifests names a key the template has.
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for ref in re.findall(
            r"secretKeyRef:\s*\n\s*name: (\S+)\s*\n\s*key: (\S+)", path.read_text()
        ):
            assert ref[1] in secret["stringData"], (path.name, ref)


def test_systemd_env_file_holds_every_secret_the_app_requires() -> None:
    names = env_file_names(DEPLOY / "systemd" / "etims-relay.env.example")
    assert app_secrets_required_by_compose() <= names
    # Variables the units expand themselves (${VAR} / $VAR in Exec lines) come from that file.
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("Exec"):
                used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", line))
                assert used <= names, (unit.name, used - names)


@pytest.mark.parametrize("service", ["intake", "worker", "beat"])
def test_long_running_relay_services_have_a_healthcheck(service: str) -> None:
    spec = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    check = spec["services"][service].get("healthcheck")
    assert check and check["test"][0] == "CMD", service
    if service != "intake":
        command = spec["services"][service]["command"]
        port = command[command.index("--metrics-port") + 1]
        assert port == "9100" and "9100" in " ".join(check["test"])


def test_flower_runs_only_behind_its_profile_and_events_are_switchable() -> None:
    spec = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert spec["services"]["flower"]["profiles"] == ["flower"]
    assert spec["x-relay-env"]["ETIMS_CELERY__EVENTS"].startswith("${ETIMS_CELERY__EVENTS:-")
    assert "ETIMS_CELERY__EVENTS" in env_file_names(compose_example())
