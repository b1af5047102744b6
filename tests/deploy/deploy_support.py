"""Helpers for the static deploy checks: the real CLI, the real Settings, the deploy files.

Nothing here builds or runs a container (there is no container engine in CI): we check the
files against schemas and against the code they drive.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from etims_relay.cli import app as cli_app
from schemas.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ETIMS_RELAY = str(Path(sys.executable).with_name("etims-relay"))

#: CLI commands/options the manifests use that other engineers are adding right now.

#: Names whose values are secrets: they may only come from interpolation or a Secret.
SECRET_ENV = ("ETIMS_SECRET_KEY", "ETIMS_DATABASE_URL", "ETIMS_BROKER_URL")


# --------------------------------------------------------------------------- settings


def settings_field(env_name: str) -> Any | None:
    """The pydantic field an ``ETIMS_*`` variable sets, or None when no field has that name.

    Follows pydantic-settings' rules as configured: prefix ``ETIMS_``, case-insensitive,
    ``__`` descends into a nested group.
    """
    if not env_name.startswith("ETIMS_"):
        return None
    parts = env_name[len("ETIMS_") :].lower().split("__")
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if index == len(parts) - 1:
            return field
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings built from exactly ``env`` (the process's own ETIMS_* are set aside)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ETIMS_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def drain_stop_bound_s(settings: Settings) -> float:
    """Longest a running drain may still take after SIGTERM: its budget plus one call."""
    return (
        settings.drain.max_seconds + settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s
    )


# --------------------------------------------------------------------------- CLI


def _is_group(command: Any) -> bool:
    # Typer vendors its own click, so duck-type instead of isinstance(click.Group).
    return isinstance(getattr(command, "commands", None), dict)


def resolve_cli(argv: Sequence[str]) -> tuple[list[str], Any, list[str]]:
    """Split ``argv`` into the command path, the (click) command and the remaining arguments."""
    command: Any = typer.main.get_command(cli_app)
    path: list[str] = []
    rest = list(argv)
    while rest and _is_group(command) and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    return path, command, rest


def check_cli_argv(argv: Sequence[str]) -> None:
    """Assert that ``etims-relay ARGV`` names a real command with real options."""
    path, command, rest = resolve_cli(argv)
    if _is_group(command) and rest and not rest[0].startswith("-"):
        missing = rest[0]
        raise AssertionError(f"etims-relay has no command {' '.join([*path, missing])!r}")
    if _is_group(command):
        # A group runs by itself only with invoke_without_command (e.g. `simulator`).
        assert command.invoke_without_command, f"{argv}: {path} needs a subcommand"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [t.split("=", 1)[0] for t in rest if t.startswith("-")]
    unknown = [name for name in unknown if name not in options]
    assert not unknown, f"etims-relay {' '.join(path)} has no option {unknown}: {sorted(options)}"
    # And the real console script agrees (it parses this command's --help).
    returncode, stdout, stderr = _console_help(tuple(path))
    assert returncode == 0, stderr
    for token in rest:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in stdout, (path, token)


@functools.cache
def _console_help(path: tuple[str, ...]) -> tuple[int, str, str]:
    """``etims-relay PATH --help`` run once per path (each run imports the whole CLI)."""
    done = subprocess.run(
        [ETIMS_RELAY, *path, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout, done.stderr


# --------------------------------------------------------------------------- files


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]
