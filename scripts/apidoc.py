"""Build docs/api.md from the public API's docstrings: ``python scripts/apidoc.py`` (``make docs``)."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

MODULES = ["deeplimit", "deeplimit.scaling", "deeplimit.scaling.hf", "deeplimit.nn", "deeplimit.nn.hf_models",
           "deeplimit.sde", "deeplimit.sde.studies", "deeplimit.diagnostics", "deeplimit.diagnostics.coordinates",
           "deeplimit.data", "deeplimit.train", "deeplimit.training_studies", "deeplimit.sweep", "deeplimit.transfer",
           "deeplimit.transfer.optimizers", "deeplimit.transfer.sweeps", "deeplimit.io", "deeplimit.secrets",
           "deeplimit.report.reproduce", "deeplimit.report.context", "deeplimit.report.html", "deeplimit.report.lock"]


def _public(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", "") ==
                 mod.__name__ and (inspect.isfunction(v) or inspect.isclass(v))]
    return sorted(names)


def _sig(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def build() -> str:
    out = ["# API reference", "", "Generated from docstrings by `scripts/apidoc.py`; do not edit by hand.", ""]
    seen: set[int] = set()
    for name in MODULES:
        mod = importlib.import_module(name)
        out += [f"## `{name}`", "", inspect.cleandoc(mod.__doc__ or "").split("\n\n")[0], ""]
        for attr in _public(mod):
            obj = getattr(mod, attr)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "def"
            doc = inspect.cleandoc(obj.__doc__ or "(no docstring)")
            out += [f"### {kind} `{attr}{_sig(obj)}`", "", f"*defined in `{obj.__module__}`*", "", doc, ""]
    return "\n".join(out)


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "docs" / "api.md"
    text = build()
    if "--check" in sys.argv:
        sys.exit(0 if path.exists() and path.read_text() == text else 1)
    path.write_text(text)
    print(f"wrote {path} ({len(text.splitlines())} lines)")
