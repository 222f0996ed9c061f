"""Where a report came from: git commit (and whether the tree was dirty), package versions, CPU, threads —
and a fingerprint of the source code a cached result depends on, so a cache is reused only by the same code.

Everything here is read, never guessed: a value that cannot be found is ``None`` (e.g. no git checkout).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/deeplimit
PACKAGES = ("deeplimit", "torch", "numpy", "scipy", "pandas", "optuna", "matplotlib")

# What each kind of cached result depends on (paths relative to src/deeplimit; folders recurse).
CODE_DEPS: dict[str, tuple[str, ...]] = {
    # transfer/experiments.py only builds specs, and a sweep's name already hashes its spec: listing it here made
    # a grid change in one experiment re-run every other experiment's sweep too
    "sweep": ("train.py", "nn", "scaling", "data", "transfer/objectives.py"),
    "sde": ("sde", "nn", "scaling"),
    "diagnostics": ("diagnostics", "studies.py", "train.py", "nn", "scaling", "data"),
}


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
            "code": {kind: code_fingerprint(parts) for kind, parts in CODE_DEPS.items()}}
