"""The package's import graph: strictly downward, no cycle even through TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import poolwatch
from support import in_fresh_thread

PACKAGE = Path(poolwatch.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every poolwatch module ``path`` imports, at run time or for type checking."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = in_fresh_thread(lambda: ast.parse(path.read_text()))  # see in_fresh_thread
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("poolwatch"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("poolwatch"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def test_no_import_cycle_counting_type_checking_imports() -> None:
    graph = _graph()
    # The package's __init__ re-exports everything: it sits on top, outside the layers.
    graph = {m: {d for d in deps if d != "poolwatch"} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_engine_knows_nothing_above_it() -> None:
    graph = _graph()
    above = {"poolwatch.manager", "poolwatch.pool", "poolwatch.executor", "poolwatch.http"}
    for low in ("poolwatch.engine", "poolwatch.future", "poolwatch.work", "poolwatch.views",
                "poolwatch.history", "poolwatch.workers", "poolwatch.backlog"):  # fmt: skip
        reached = _reachable(graph, low)
        assert not reached & above, f"{low} reaches {sorted(reached & above)}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen
