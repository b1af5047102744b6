"""No import cycles among the product's modules (schemas, producers, worker, simulator).

A cycle makes a module's names depend on which of the two was imported first: a newcomer who
adds an import at the top of one file gets an ``ImportError`` (or a half-initialised module)
somewhere else. Only imports that run when the module is imported count: an import inside a
function runs later, and one under ``if TYPE_CHECKING:`` never runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "producers", "worker", "simulator")

#: Known cycles, as (importer, imported) edges left out of the graph.
ALLOWED_EDGES: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run when the module is imported (not function bodies, not
    ``if TYPE_CHECKING:`` blocks)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
            continue
        if isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time_statements(block)
            for handler in node.handlers:
                yield from _import_time_statements(handler.body)
            continue
        if isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time_statements(node.body)
            continue
        yield node


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The known modules ``path`` (module ``name``) imports at import time.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module, else ``pkg``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_time_statements(tree.body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    found.add(target)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    paths = {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    known = set(paths)
    return {
        name: {t for t in imported_modules(path, name, known) if (name, t) not in ALLOWED_EDGES}
        for name, path in paths.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, component) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path start -> ... -> start inside ``component`` (breadth first: a shortest one)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in component {sorted(component)}")


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(ROOT, PACKAGES))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_names_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "worker"
    (package / "outbox").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "outbox" / "__init__.py").write_text("")
    # models imports ops_models at its bottom; ops_models imports models: a cycle.
    (package / "outbox" / "models.py").write_text(
        "jobs = 1\nfrom worker.outbox import ops_models  # noqa\n"
    )
    (package / "outbox" / "ops_models.py").write_text("from .models import jobs\n")
    # Deferred and type-only imports do not count.
    (package / "drain.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from worker.effects import accept\n"
    )
    (package / "effects.py").write_text(
        "def later():\n    from worker import drain\n\nimport worker.outbox.models\n"
    )
    cycles = find_cycles(import_graph(tmp_path, ("worker",)))
    assert cycles == [["worker.outbox.models", "worker.outbox.ops_models", "worker.outbox.models"]]
