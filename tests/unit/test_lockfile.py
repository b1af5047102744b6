"""The lock files are what gets installed (make venv, CI, the image), so they must cover
pyproject.toml: every declared dependency pinned, within its specifier, with hashes, and the
image's lock the same versions as the test venv's. A dependency added to pyproject.toml
without `make lock` fails here, not in production."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"runtime": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes), for the pins that apply to this interpreter."""
    found: dict[str, tuple[str, int]] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        match = re.match(r"([A-Za-z0-9_.\[\]-]+)==([^\s;\\]+)(?:\s*;\s*([^\\\n]+))?", entry)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and not Requirement(f"x; {marker.strip()}").marker.evaluate():  # type: ignore[union-attr]
            continue
        found[canonicalize_name(name)] = (version, entry.count("--hash=sha256:"))
    return found


def declared(extra: str | None) -> list[Requirement]:
    names = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in names]


@pytest.mark.parametrize(("lock", "extras"), [("runtime", [None]), ("dev", [None, "dev"])])
def test_every_declared_dependency_is_pinned_within_its_specifier_with_hashes(
    lock: str, extras: list[str | None]
) -> None:
    locked = pins(LOCKS[lock])
    environment = default_environment()
    problems = []
    for extra in extras:
        for requirement in declared(extra):
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name not in locked:
                problems.append(f"{requirement} is not in {LOCKS[lock].name}: run make lock")
                continue
            version, hashes = locked[name]
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{name}=={version} in {LOCKS[lock].name} outside {requirement}")
            if hashes == 0:
                problems.append(f"{name} has no hash in {LOCKS[lock].name}")
    assert not problems, "\n".join(problems)


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    runtime, dev = pins(LOCKS["runtime"]), pins(LOCKS["dev"])
    differ = {n: (v, dev[n][0]) for n, (v, _) in runtime.items() if dev.get(n, (v,))[0] != v}
    assert runtime and not differ
    assert set(runtime) <= set(dev)


def test_installs_go_through_the_lock_hash_checked() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r $(DEV_LOCK)" in makefile
    assert "--no-deps" in makefile and "DEV_LOCK = requirements-dev.lock" in makefile
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text())
    assert re.search(r"pip wheel --require-hashes .*-r /src/requirements\.lock", dockerfile)
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()
    assert "make min-versions" in (ROOT / ".ci" / "run").read_text()
