"""deploy/docker-compose.yml: valid per the compose specification, and true to the code.

No container engine here: the file is checked against the compose-spec JSON schema that
check-jsonschema vendors, then against what it drives (real CLI commands, real Settings
fields, the one-beat rule, the Redis persistence rules, secrets never written down).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.deploy_support import (
    DEPLOY,
    SECRET_ENV,
    check_cli_argv,
    load_settings,
    settings_field,
)

COMPOSE = DEPLOY / "docker-compose.yml"
RELAY_SERVICES = ("migrate", "intake", "worker", "beat")
EXPECTED_SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "intake",
    "worker",
    "beat",
    "prometheus",
    "grafana",
    "simulator",
    "flower",
}
#: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    return dict(json.loads((vendored / "compose-spec.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, enough for this file (no nesting)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env:
            return env[name]
        if op in (":-", "-"):
            return str(arg)
        raise AssertionError(f"${{{name}}} is required and unset ({arg})")

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


# --------------------------------------------------------------------------- schema


def test_compose_file_is_valid_per_the_compose_spec(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_check_catches_a_broken_file(compose: dict[str, Any]) -> None:
    """The schema really constrains services: a typo'd key and a bad type are refused."""
    schema = compose_schema()
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["restart_policy"] = "always"  # not a service key
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["ports"] = {"6379": "6379"}  # must be a list
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


# --------------------------------------------------------------------------- shape


def test_every_component_is_a_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES


def test_exactly_one_beat_and_workers_without_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    beats = [name for name, svc in services.items() if "--beat" in svc.get("command", [])]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat["deploy"]["replicas"] == 1
    command = beat["command"]
    assert command[0] == "worker"
    assert command[command.index("--concurrency") + 1] == "1"
    worker = services["worker"]
    assert worker["command"][0] == "worker" and "--beat" not in worker["command"]
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker, "a fixed container_name prevents --scale"


def test_migrate_runs_once_before_the_relay_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("intake", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


#: Services that start only with their compose profile.
PROFILED = {"simulator": ["dev"], "flower": ["flower"]}


def test_simulator_only_in_the_dev_profile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("profiles", []) == PROFILED.get(name, []), name


@pytest.mark.parametrize("service", [*RELAY_SERVICES, "simulator"])
def test_relay_commands_are_real_cli_commands(compose: dict[str, Any], service: str) -> None:
    check_cli_argv(compose["services"][service]["command"])


def test_worker_stop_grace_outlives_a_drain(compose: dict[str, Any]) -> None:
    settings = load_settings(_relay_env(compose))
    bound = (
        settings.drain.max_seconds + settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s
    )
    for name in ("worker", "beat"):
        service = compose["services"][name]
        assert service["stop_signal"] == "SIGTERM"
        grace = service["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > bound, (name, grace, bound)


# --------------------------------------------------------------------------- config + secrets


def _relay_env(compose: dict[str, Any]) -> dict[str, str]:
    env = compose["services"]["worker"]["environment"]
    fake = {
        "POSTGRES_PASSWORD": "pw",
        "REDIS_PASSWORD": "pw",
        "ETIMS_SECRET_KEY": "k" * 43 + "=",
    }
    return {key: interpolate(str(value), fake) for key, value in env.items()}


def test_relay_environment_names_real_settings_and_loads(compose: dict[str, Any]) -> None:
    for name in RELAY_SERVICES:
        env = compose["services"][name]["environment"]
        unknown = [key for key in env if settings_field(key) is None]
        assert unknown == [], f"{name}: not Settings fields: {unknown}"
    settings = load_settings(_relay_env(compose))
    assert settings.database_url.startswith("postgresql+psycopg://etims:pw@postgres:5432/")
    assert settings.broker_url == "redis://:pw@redis:6379/0"
    assert str(settings.state_dir) == "/var/lib/etims-relay"


def test_secrets_are_required_interpolations_never_literals(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert re.fullmatch(r"\$\{ETIMS_SECRET_KEY:\?[^}]+\}", env["ETIMS_SECRET_KEY"])
    for key in SECRET_ENV:
        names = {m["name"]: m["op"] for m in INTERPOLATION.finditer(env[key])}
        assert names and all(op == ":?" for op in names.values()), (key, env[key])
    with pytest.raises(AssertionError, match="required"):
        interpolate(env["ETIMS_SECRET_KEY"], {})
    text = COMPOSE.read_text(encoding="utf-8")
    # Nothing that looks like a Fernet key or a password literal is written in the file.
    assert not re.search(r"[A-Za-z0-9_-]{43}=", text)
    literal = re.compile(
        r"(?im)^[ \t]*[\w-]*(PASSWORD|SECRET|_KEY|AUTH)\w*[ \t]*:[ \t]*(?!\$\{|/run/secrets/)\S"
    )
    assert not literal.search(text), literal.search(text)


def test_postgres_and_grafana_read_passwords_from_compose_secrets(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = services["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in pg["secrets"]
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    for name in ("postgres_password", "grafana_admin_password"):
        assert set(compose["secrets"][name]) == {"environment"}, "secret files are not committed"


def test_redis_persists_with_aof_everysec_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    conf_mount = next(
        v for v in redis["volumes"] if v.endswith(":/usr/local/etc/redis/redis.conf:ro")
    )
    conf = _redis_conf(DEPLOY / conf_mount.split(":")[0])
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert redis["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert any(v.endswith(":/data") for v in redis["volumes"]), "AOF must live on a volume"
    assert "ports" not in redis and "ports" not in compose["services"]["postgres"]


def _redis_conf(path: Path) -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key.lower()] = value.strip()
    return conf


# --------------------------------------------------------------------------- mounts + monitoring


def _bind_sources(compose: dict[str, Any]) -> dict[str, str]:
    sources = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                sources[source] = name
    return sources


def test_bind_mounted_config_exists(compose: dict[str, Any]) -> None:
    owned = {s: n for s, n in _bind_sources(compose).items() if n not in ("prometheus", "grafana")}
    assert owned, "redis and postgres mount their config"
    for source in owned:
        assert (DEPLOY / source).exists(), source


@pytest.mark.parametrize("service", ["prometheus", "grafana"])
def test_monitoring_mounts_point_at_the_shared_deploy_dirs(
    compose: dict[str, Any], service: str
) -> None:
    sources = [s for s, n in _bind_sources(compose).items() if n == service]
    assert sources and all(s.startswith(f"./{service}") for s in sources)
    missing = [s for s in sources if not (DEPLOY / s).exists()]
    assert not missing, f"compose mounts files that do not exist: {missing}"
    if service == "prometheus":
        rules = sorted((DEPLOY / "prometheus").glob("*.y*ml"))
        assert rules, "deploy/prometheus/ has no rule file"
        for path in rules:
            assert "groups" in yaml.safe_load(path.read_text(encoding="utf-8")), (
                f"{path.name} is loaded as a rule file by rule_files: keep other YAML in subdirs"
            )


def test_prometheus_scrapes_intake_worker_and_beat(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(compose["configs"]["prometheus_config"]["content"])
    mount = next(
        v for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./prometheus")
    )
    rules_dir = mount.split(":")[1]
    assert all(pattern.startswith(rules_dir + "/") for pattern in config["rule_files"])
    targets = {
        (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
    }
    assert targets == {("intake", 8000), ("worker", 9100), ("beat", 9100)}
    # The shared alert rules and dashboard select targets by these job names.
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    used = set()
    for path in [*(DEPLOY / "prometheus").glob("*.y*ml"), *(DEPLOY / "grafana").rglob("*.json")]:
        used |= set(re.findall(r'job=\\?"([^"\\]+)', path.read_text(encoding="utf-8")))
    assert used <= jobs, f"rules/dashboard select jobs we do not scrape: {used - jobs}"
    services = compose["services"]
    assert services["intake"]["command"][-1] == "8000"
    for name in ("worker", "beat"):
        command = services[name]["command"]
        assert command[command.index("--metrics-port") + 1] == "9100"
