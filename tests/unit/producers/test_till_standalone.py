"""The till client runs on a shop's PC with its own dependencies only (the etims-relay-till
distribution: httpx, pydantic, filelock), none of the server stack.

A subprocess installs an import hook that refuses every module outside the standard library
and the till distribution's dependency closure (computed from packaging/till/pyproject.toml
and the installed metadata), then spools a sale, flushes it and reads the spool back.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
TILL_PYPROJECT = ROOT / "packaging" / "till" / "pyproject.toml"
SERVER_STACK = ("sqlalchemy", "celery", "fastapi", "alembic", "psycopg", "redis", "uvicorn")

CHILD = r"""
import importlib.abc, json, sys

ALLOWED = set(json.loads(sys.argv[1]))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        # (_sysconfigdata_*: the standard library's platform-named build variables)
        if top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_sysconfigdata"):
            return None
        raise ModuleNotFoundError(f"blocked: {name} is not a till dependency", name=name)

sys.meta_path.insert(0, Block())

from datetime import UTC, datetime
from decimal import Decimal
import httpx
from producers.till import SaleLine, Till

def intake(request):
    if request.method == "GET":
        return httpx.Response(200, json={"id": 100, "state": "pending", "kra": {}})
    records = json.loads(request.content)["jobs"]
    jobs = [
        {"index": i, "id": 100 + i, "idempotency_key": r["idempotency_key"],
         "state": "pending", "created": True}
        for i, r in enumerate(records)
    ]
    return httpx.Response(202, json={"request_id": "r1", "jobs": jobs})

till = Till(sys.argv[2], "http://intake.invalid/", "key-1", tin="P051234567A", bhf_id="00",
            start=False, transport=httpx.MockTransport(intake))
till.enqueue_sale("till-03:000001", [SaleLine("KE2NTNO0000001", "Soap", Decimal(1), Decimal(116))],
                  trd_invc_no="000001", at=datetime(2026, 11, 22, 9, tzinfo=UTC))
report = till.flush()
counts = till.status()
till.close()
for server in ("sqlalchemy", "celery", "fastapi", "worker", "etims_relay"):
    try:
        __import__(server)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{server} was importable: the hook is not working")
print(json.dumps({"forwarded": report.forwarded, "error": report.error, "counts": counts,
                  "loaded": sorted({m.partition(".")[0] for m in sys.modules})}))
"""


def dependency_closure(roots: list[str]) -> set[str]:
    """Distributions the till needs: its declared ones and, recursively, theirs (no extras,
    environment markers evaluated for this interpreter)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def allowed_modules(distributions: set[str]) -> set[str]:
    by_module = metadata.packages_distributions()
    modules = {
        module
        for module, dists in by_module.items()
        if any(canonicalize_name(d) in distributions for d in dists)
    }
    return modules | {"producers", "schemas"}


def test_the_till_distribution_declares_no_server_dependency() -> None:
    declared = tomllib.loads(TILL_PYPROJECT.read_text())["project"]["dependencies"]
    assert {Requirement(r).name for r in declared} == {"httpx", "pydantic", "filelock"}
    assert not dependency_closure(declared) & set(SERVER_STACK)


def test_the_till_client_works_with_only_its_own_dependencies(tmp_path: Path) -> None:
    declared = tomllib.loads(TILL_PYPROJECT.read_text())["project"]["dependencies"]
    allowed = allowed_modules(dependency_closure(declared))
    assert not allowed & set(SERVER_STACK)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(sorted(allowed)), str(tmp_path / "spool.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    # The sale and its two stock jobs went to the intake, and were kept on disk meanwhile
    assert (result["forwarded"], result["error"]) == (3, None)
    assert result["counts"].get("forwarded") == 3
    assert not set(result["loaded"]) & {*SERVER_STACK, "worker", "etims_relay"}


def test_the_till_client_uses_no_posix_only_module() -> None:
    """Windows tills: the flush lock is filelock's (msvcrt there), never fcntl directly."""
    for path in sorted((ROOT / "producers" / "till").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not names & {"fcntl", "termios", "pwd", "grp", "resource"}, path
