"""DESIGN.md's dependency arrows, enforced: schemas is pure, worker never imports producers,
producers never import Celery task bodies (they send by task name through worker.wake)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> module prefixes it must never import
FORBIDDEN = {
    "schemas": ("worker", "producers", "etims_relay", "sqlalchemy", "httpx", "celery"),
    "worker": ("producers",),
    "producers": ("worker.tasks", "worker.celery_app", "worker.drain", "worker.effects"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from worker.tasks import drain_task\nimport producers.enqueue\n")
    assert {"worker.tasks", "worker.tasks.drain_task", "producers.enqueue"} <= imports_of(bad)


@pytest.mark.parametrize("package", ["schemas", "producers", "worker.oscu"])
def test_public_names_are_exported(package: str) -> None:
    module = __import__(package, fromlist=["__all__"])
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert module.__all__ and not missing, missing
