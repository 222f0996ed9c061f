"""Architecture checks that read the source: one-way layers, and Optuna's public API only.

Layers, low to high (docs/architecture.md): errors, io, plotting, secrets, protocol, runtime, _lazy → data, nn →
scaling, sde, sweep (the generic runner) → diagnostics → train → training_studies (studies of trained models) →
transfer (LR-transfer science) → report → cli. A module may import its own layer or lower ones, never a higher one,
including imports inside functions. Every ``import`` and ``from … import`` in ``src/deeplimit`` is parsed with
``ast``; cycles inside a layer are tests/test_import_cycles.py's.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from source_ast import parsed

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "deeplimit"

LAYERS = {
    "errors": 0, "io": 0, "plotting": 0, "secrets": 0, "protocol": 0, "runtime": 0, "_lazy": 0,
    "data": 1, "nn": 1,
    "scaling": 2, "sde": 2, "sweep": 2,
    "diagnostics": 3,
    "train": 4,
    "training_studies": 5,
    "transfer": 6,
    "report": 7,
    "cli": 8, "__main__": 8,
}
# The flat public API (``import deeplimit as dl``) re-exports nn, scaling and train's TrainConfig: importing the
# package root counts as importing the highest of those.
ROOT_LAYER = LAYERS["train"]

# Known violations: none. A new one is a design error to fix, not an entry to add here.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["deeplimit"]:
        return ROOT_LAYER
    return LAYERS[parts[1]]


def _imports(path: Path) -> list[str]:
    """Every deeplimit module imported anywhere in ``path`` (module level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "deeplimit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "deeplimit":
                continue
            if target == "deeplimit":
                # ``from deeplimit import io`` names a submodule; ``from deeplimit import MLPResNet`` the root.
                subs = [a.name for a in node.names if (PKG / a.name).is_dir() or (PKG / f"{a.name}.py").exists()]
                out += [f"deeplimit.{s}" for s in subs] or ["deeplimit"]
            else:
                out.append(target)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("deeplimit."):
                out.append(arg.value)
    return out


def _edges() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        src = _module_name(path)
        for target in _imports(path):
            edges.append((src, target))
    return edges


def test_every_module_has_a_layer() -> None:
    tops = {p.stem if p.suffix else p.name for p in PKG.iterdir() if p.name != "__pycache__" and p.name != "__init__.py"
            and (p.suffix == ".py" or p.is_dir())}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS (and to docs/architecture.md)"


def test_no_module_imports_a_higher_layer() -> None:
    edges = _edges()
    assert len(edges) > 100  # the parser really sees the imports
    bad = sorted({(s, t) for s, t in edges if _layer(t) > _layer(s)} - ALLOWED)
    assert not bad, "imports of a higher layer:\n" + "\n".join(f"  {s} -> {t}" for s, t in bad)


def test_allow_list_is_current_and_outside_the_runner() -> None:
    edges = set(_edges())
    stale = sorted(ALLOWED - edges)
    assert not stale, f"these allowed violations are gone; remove them from ALLOWED: {stale}"
    mine = sorted(s for s, _ in ALLOWED if s.split(".")[1] in ("sweep", "transfer"))
    assert not mine, f"sweep/ and transfer/ must not need exceptions: {mine}"


def test_the_runner_has_no_experiment_vocabulary() -> None:
    # The generic runner gives axis names no meaning: what a learning rate, a depth or a rule is belongs above it.
    words = re.compile(r"\b(log2_lr|lr|alpha|gamma|width|depth|LONG_COLUMNS|preset|rule)\b")
    hits = []
    for path in sorted((PKG / "sweep").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if words.search(code) and not code.strip().startswith(("'", '"')):
                hits.append(f"{path.relative_to(SRC)}:{i}: {line.strip()}")
    assert not hits, "experiment vocabulary in deeplimit/sweep:\n" + "\n".join(hits)


def test_optuna_private_api_is_not_used() -> None:
    # The issue's own check: grep -rE "optuna\.[a-z_.]*\._|\._storage|_trial_id|_backend" src
    pattern = re.compile(r"optuna\.[a-z_.]*\._|\._storage|_trial_id|_backend")
    hits = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in sorted(SRC.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "private Optuna API:\n" + "\n".join(hits)


def _unsafe_torch_loads(tree: ast.AST) -> list[int]:
    """Lines of calls to ``torch.load`` (through any alias) without a literal ``weights_only=True``."""
    torch_names, load_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                   and f.value.id in torch_names) or (isinstance(f, ast.Name) and f.id in load_names)
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if is_load and not safe:
            hits.append(node.lineno)
    return hits


def test_single_torch_load() -> None:
    # Every torch.load anywhere in src/ must refuse pickled code (weights_only=True); deeplimit.io.safe_torch_load
    # is the one place that does it, so any other call is a finding too unless it passes weights_only=True.
    hits = [f"{p.relative_to(SRC)}:{line}" for p in sorted(SRC.rglob("*.py"))
            for line in _unsafe_torch_loads(parsed(p))]
    assert not hits, f"torch.load without weights_only=True (use deeplimit.io.safe_torch_load): {hits}"
    probe = ast.parse("import torch as t\nfrom torch import load as ld\nt.load(p)\nld(p)\n"
                      "t.load(p, weights_only=True)\nt.load(p, weights_only=False)\n")
    assert _unsafe_torch_loads(probe) == [3, 4, 6]  # the scanner itself sees aliases and a False flag


def _diagram() -> list[list[str]]:
    """The layers drawn in docs/architecture.md, top to bottom: the names left of each line's description."""
    text = (SRC.parent / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    rows = []
    for line in block.splitlines():
        names = re.split(r"\s{3,}", line.strip(), maxsplit=1)[0]
        if names and names != "|":
            rows.append(re.findall(r"[a-z_]+", names))
    return rows


def test_the_documented_layers_are_the_checked_ones() -> None:
    rows = _diagram()
    drawn = [n for row in rows for n in row]
    assert sorted(drawn) == sorted(LAYERS), f"docs/architecture.md draws {sorted(drawn)}, LAYERS has {sorted(LAYERS)}"
    levels = [{LAYERS[n] for n in row} for row in rows]
    assert all(len(level) == 1 for level in levels), f"one line of the diagram mixes layers: {rows}"
    order = [level.pop() for level in levels]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order), f"diagram order {rows}"
