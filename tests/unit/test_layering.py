"""The layout's dependency arrows, enforced: schemas is pure, worker never imports producers,
producers never import Celery task bodies (they send by task name through worker.wake), and the
OSCU simulator (KRA's side, top-level ``simulator/``) and the relay never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> module prefixes it must never import
FORBIDDEN = {
    "schemas": ("worker", "producers", "etims_relay", "simulator", "sqlalchemy", "httpx", "celery"),
    "worker": ("producers", "simulator", "etims_relay"),
    "producers": (
        "worker.tasks",
        "worker.celery_app",
        "worker.drain",
        "worker.effects",
        "simulator",
        "etims_relay",
    ),
    # KRA's side: a second reading of the spec that shares nothing with the relay.
    "simulator": ("worker", "producers", "schemas", "etims_relay"),
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


#: What the simulator may take from ``schemas``: nothing. Its field and VAT checks are a second
#: reading of the spec (simulator/fields.py, amounts.py), so a misreading in the relay's
#: models (``schemas.requests``, ``schemas.sales``, ``schemas.vat``...) fails a test instead of
#: agreeing by construction. No module of ``schemas`` is allowed, not even the code lists: the
#: simulator keeps its own (fields.py), since a wrong code in ``schemas.codes`` is exactly the
#: kind of misreading it must catch.
SIMULATOR_ALLOWED_FROM_SCHEMAS: frozenset[str] = frozenset()


def simulator_schema_imports(root: Path) -> list[str]:
    """Every import of ``schemas`` under ``root`` not named in the allowed list."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in sorted(imports_of(path)):
            if name != "schemas" and not name.startswith("schemas."):
                continue
            if any(
                name == ok or name.startswith(ok + ".") for ok in SIMULATOR_ALLOWED_FROM_SCHEMAS
            ):
                continue
            found.append(f"{path.name} imports {name}")
    return found


def test_the_simulator_reads_the_spec_without_schemas() -> None:
    assert (ROOT / "simulator" / "__init__.py").is_file()
    offenders = simulator_schema_imports(ROOT / "simulator")
    assert not offenders, "\n".join(offenders)


def test_the_simulator_check_sees_a_schemas_import(tmp_path: Path) -> None:
    package = tmp_path / "simulator"
    package.mkdir(parents=True)
    (package / "validate.py").write_text(
        "from schemas.vat import check_sale_amounts\nimport schemas.requests\n"
    )
    (package / "fine.py").write_text("from simulator.fields import TABLES\n")
    offenders = simulator_schema_imports(package)
    assert any("schemas.vat" in line for line in offenders)
    assert any("schemas.requests" in line for line in offenders)
    assert not any("fine.py" in line for line in offenders)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from worker.tasks import drain_task\nimport producers.enqueue\n")
    assert {"worker.tasks", "worker.tasks.drain_task", "producers.enqueue"} <= imports_of(bad)


@pytest.mark.parametrize("package", ["schemas", "producers", "worker.oscu"])
def test_public_names_are_exported(package: str) -> None:
    module = __import__(package, fromlist=["__all__"])
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert module.__all__ and not missing, missing


#: The outbox's table modules declare tables and nothing else: they import the shared
#: ``MetaData`` (``worker.outbox.base``) and the core tables they point at, never a query
#: module or another area's tables, so every area can import its tables without a cycle.
TABLE_MODULES = ("base", "models", "catalog_models", "intake_models", "ops_models")
TABLE_MODULES_MAY_IMPORT = ("worker.outbox.base", "worker.outbox.models")


def relay_imports_beyond(path: Path, allowed: tuple[str, ...]) -> list[str]:
    """Imports of ``worker``/``producers``/``simulator``/``etims_relay`` not in ``allowed``."""
    return sorted(
        name
        for name in imports_of(path)
        if name.split(".")[0] in ("worker", "producers", "simulator", "etims_relay")
        and not any(name == ok or name.startswith(ok + ".") for ok in allowed)
    )


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_table_modules_import_only_the_metadata_and_core_tables(module: str) -> None:
    path = ROOT / "worker" / "outbox" / f"{module}.py"
    assert not relay_imports_beyond(path, TABLE_MODULES_MAY_IMPORT)


def declared_tables(path: Path) -> set[str]:
    """Names of the ``Table("name", ...)`` a module declares."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Table"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_every_table_is_in_the_metadata_alembic_sees() -> None:
    """A table declared in any ``*models.py`` is one Alembic compares and ``create_all`` makes
    (checked in a fresh interpreter that imports ``worker.outbox.tables`` alone)."""
    areas = sorted((ROOT / "worker" / "outbox").glob("*models.py"))
    assert sorted(p.stem for p in areas) == sorted(m for m in TABLE_MODULES if m != "base")
    declared = set().union(*(declared_tables(p) for p in areas))
    assert {"jobs", "branches", "notices", "api_keys", "item_catalog"} <= declared
    seen = subprocess.run(
        [
            sys.executable,
            "-c",
            "from worker.outbox.tables import metadata; print(*sorted(metadata.tables))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(seen) == declared


def test_the_table_check_sees_a_query_import(tmp_path: Path) -> None:
    bad = tmp_path / "ops_models.py"
    bad.write_text(
        "from worker.outbox.base import metadata\nfrom worker.outbox import queries as q\n"
    )
    assert relay_imports_beyond(bad, TABLE_MODULES_MAY_IMPORT) == [
        "worker.outbox",
        "worker.outbox.queries",
    ]


#: SQLAlchemy's statement builders: a module that imports one writes SQL.
STATEMENT_BUILDERS = frozenset(
    f"sqlalchemy.{name}" for name in ("select", "insert", "update", "delete", "text")
)
#: The core's SQL lives in worker/outbox/ (one module per area); these two keep a few
#: statements beside the only logic that uses them (see worker/outbox/__init__.py).
SQL_OUTSIDE_THE_OUTBOX = frozenset({"worker/pull_forward.py", "worker/secret_keys.py"})


def modules_writing_sql(root: Path, packages: tuple[str, ...]) -> set[str]:
    return {
        str(path.relative_to(root))
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if imports_of(path) & STATEMENT_BUILDERS
    }


def test_sql_lives_in_the_outbox_package() -> None:
    writing = modules_writing_sql(ROOT, ("schemas", "producers", "worker"))
    outside = {m for m in writing if not m.startswith("worker/outbox/")}
    assert outside == SQL_OUTSIDE_THE_OUTBOX


def test_the_sql_check_sees_a_statement(tmp_path: Path) -> None:
    (tmp_path / "producers").mkdir()
    (tmp_path / "producers" / "enqueue.py").write_text("from sqlalchemy import select, func\n")
    (tmp_path / "producers" / "fine.py").write_text("from sqlalchemy import Engine\n")
    assert modules_writing_sql(tmp_path, ("producers",)) == {"producers/enqueue.py"}
