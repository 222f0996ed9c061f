"""No import cycles between deeplimit's modules, read from the source with ``ast``.

Every ``import``/``from … import`` counts: at module level, inside functions (a lazy import only hides a cycle)
and under ``if TYPE_CHECKING:`` (a type-only import still means neither module can be read without the other).
``from deeplimit.x import y`` is an edge to the submodule ``deeplimit.x.y`` when ``y`` is one, else to the
package ``deeplimit.x`` itself (its ``__init__``, which imports the package's modules). Parent packages that
Python imports on the way are not edges: every submodule would then be in a cycle with its ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from source_ast import parsed

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "deeplimit"

# Known cycles, each as the one import that closes it (importer, imported) and the lane that owns breaking it.
# The graph is checked with these edges removed. A new cycle is a design error to fix (move the shared piece into a
# lower module), not an entry to add here.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The deeplimit module an import of ``name`` runs (the longest known prefix), or None if not ours."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every deeplimit module ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            out |= {t for a in node.names if (t := _target(a.name, modules))}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                where = ".".join(base + ([node.module] if node.module else []))
            else:
                where = node.module or ""
            if _target(where, modules) is None:
                continue
            for alias in node.names:  # a submodule by name, else a name defined in the package's __init__
                out.add(f"{where}.{alias.name}" if f"{where}.{alias.name}" in modules else _target(where, modules))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and (t := _target(arg.value, modules)):
                out.add(t)
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the deeplimit modules it imports."""
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted tuple."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _walk(graph: dict[str, set[str]], component: tuple[str, ...]) -> str:
    """One shortest closed walk through the first module of ``component`` (a -> b -> ... -> a), to show the cycle."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first from start, inside the component, until an edge leads back to start
        following = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    walk = [v]
                    while walk[-1] != start:
                        walk.append(came_from[walk[-1]])
                    return " -> ".join([*reversed(walk), start])
                if w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    return " <-> ".join(component)


def test_the_parser_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    assert sum(map(len, import_graph().values())) > 100  # the parser really sees the imports
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from deeplimit.scaling.table import x\n"
                     "def f():\n    from deeplimit.scaling import names, Plan\n    import deeplimit.io\n"
                     "    from . import rules\n    import torch\n")
    got = _imports("deeplimit.scaling.probe", probe, _modules())
    assert got == {"deeplimit.scaling.table", "deeplimit.scaling.names", "deeplimit.scaling", "deeplimit.io",
                   "deeplimit.scaling.rules"}, got
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [("a", "b", "c")]
    assert _walk({"a": {"b"}, "b": {"c", "a"}, "c": {"a"}}, ("a", "b", "c")) == "a -> b -> a"


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in ALLOWED} for m, targets in graph.items()}


def test_no_import_cycles() -> None:
    graph = _without_allowed(import_graph())
    found = [_walk(graph, c) for c in cycles(graph)]
    assert not found, "import cycles (break them by moving the shared piece into a lower module):\n" + "\n".join(
        f"  {walk}" for walk in found)


def test_allow_list_is_current() -> None:
    graph = import_graph()
    stale = sorted(e for e in ALLOWED if e[1] not in graph.get(e[0], ()) or not any(
        set(e) <= set(c) for c in cycles(graph)))
    assert not stale, f"these allowed imports are gone or close no cycle; remove them from ALLOWED: {stale}"
