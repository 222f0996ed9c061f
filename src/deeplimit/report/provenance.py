"""Where a report came from: git commit (and whether the tree was dirty), package versions, CPU, threads —
and a fingerprint of the source code a cached result depends on, so a cache is reused only by the same code.

Everything here is read, never guessed: a value that cannot be found is ``None`` (e.g. no git checkout).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/deeplimit
PACKAGES = ("deeplimit", "torch", "numpy", "scipy", "pandas", "optuna", "matplotlib")

# What each kind of cached result is computed by: these modules and every deeplimit module they import, found
# by reading their source (function-level imports included; :func:`code_files`), so a file that computes a
# result can never be left out of its fingerprint. Sweeps: the training code a worker runs (a sweep's name also
# hashes its spec, so transfer/experiments.py, which only builds specs, is not an entry: a grid change in one
# experiment must not re-run every other experiment's sweep). SDE and diagnostics summaries: the report's claim
# modules that compute and cache them, and the library they call.
CODE_ENTRIES: dict[str, tuple[str, ...]] = {
    "sweep": ("transfer/objectives.py",),
    "sde": ("report/claims/sde.py", "report/claims/rank_collapse.py", "report/claims/stopping.py",
            "report/claims/convergence.py"),
    "diagnostics": ("report/claims/coord_check.py", "report/claims/coord_check_width.py",
                    "report/claims/feature_diversity.py"),
}
# Files that only lay out or describe the report (never a number in a cached result): not followed. The driver
# is listed because a claim module reaches it only through a lazy import of the section registry.
NOT_COMPUTING = ("report/reproduce.py", "report/html.py", "report/provenance.py")


def _module_file(module: str, root: Path) -> Path | None:
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(path: Path, root: Path) -> set[Path]:
    """The package's files that ``path`` imports (anywhere in it), with the ``__init__`` of each package on the
    way (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    package = tuple(path.relative_to(root.parent).with_suffix("").parts[:-1])
    files = set()
    for name in _imported_names(path.read_text(encoding="utf-8"), package, str(path)):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            f = _module_file(".".join(parts[:i]), root)
            if f is not None:
                files.add(f)
    return files


@functools.lru_cache(maxsize=1024)
def _imported_names(text: str, package: tuple[str, ...], filename: str) -> frozenset[str]:
    """The module names a file with content ``text`` in ``package`` imports, kept by content: parsing the ~180
    files of the import graph cost every report run ~1 s, and a file whose text changed is parsed again."""
    tree = ast.parse(text, filename=filename)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return frozenset(names)


def code_files(entries: tuple[str, ...] | list[str], root: Path = PACKAGE_ROOT,
               skip: tuple[str, ...] = NOT_COMPUTING) -> list[str]:
    """The ``.py`` files (relative to ``root``) that ``entries`` import, directly or not, themselves included;
    the files in ``skip`` are neither included nor followed."""
    todo = [root / e for e in entries]
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen or str(f.relative_to(root)) in skip:
            continue
        seen.add(f)
        todo.extend(_imports(f, root) - seen)
    return sorted(str(f.relative_to(root)) for f in seen)


def code_fingerprint(parts: tuple[str, ...] | list[str], root: Path = PACKAGE_ROOT) -> str:
    """SHA-256 (first 12 hex digits) over the contents of the ``.py`` files under ``parts`` (relative to the
    package root), in a fixed order. It changes exactly when one of those files changes."""
    h = hashlib.sha256()
    for part in sorted(parts):
        p = root / part
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:12]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    """``{"commit": sha or None, "dirty": bool or None, "branch": name or None}`` of the checkout holding the
    package (``dirty``: tracked files differ from the commit)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None,
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD") if commit else None}


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict:
    """Commit, versions, machine and threads of this process (JSON-ready)."""
    import torch

    return {"git": git_state(), "versions": versions(),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "platform": platform.platform(), "executable": sys.executable},
            "code": {kind: code_fingerprint(code_files(entries)) for kind, entries in CODE_ENTRIES.items()}}
