"""deeplimit: neural networks in the infinite depth-and-width limit.

    import deeplimit as dl
    model = dl.MLPResNet(width=256, depth=32)
    plan = dl.parametrize(model, "depth_mup", base_width=64, base_depth=4, optimizer="adam")
    opt = dl.make_optimizer(model, plan, lr=2**-8)
    print(plan.table(lr=2**-8))

The names below are imported on first use (PEP 562), so ``import deeplimit`` — and ``deeplimit --help`` —
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from deeplimit.errors import DeeplimitError, DeeplimitWarning

__version__ = "0.1.0"

_LAZY = {
    "Embedding": "deeplimit.nn", "Input": "deeplimit.nn", "MLPResNet": "deeplimit.nn",
    "MLPResNetConfig": "deeplimit.nn", "Readout": "deeplimit.nn", "Residual": "deeplimit.nn",
    "TiedReadout": "deeplimit.nn", "TransformerConfig": "deeplimit.nn", "TransformerLM": "deeplimit.nn",
    "declare_roles": "deeplimit.nn",
    "AttentionSpec": "deeplimit.scaling", "Structure": "deeplimit.scaling", "declare_structure": "deeplimit.scaling",
    "scheduler": "deeplimit.scaling",
    "HParams": "deeplimit.scaling", "Plan": "deeplimit.scaling", "Rule": "deeplimit.scaling",
    "get_rule": "deeplimit.scaling", "load_checkpoint": "deeplimit.scaling", "make_optimizer": "deeplimit.scaling",
    "make_plan": "deeplimit.scaling", "parametrize": "deeplimit.scaling", "rule_names": "deeplimit.scaling",
    "save_checkpoint": "deeplimit.scaling", "set_base_lr": "deeplimit.scaling",
}

_SUBMODULES = {"nn", "scaling", "data", "diagnostics", "sde", "train", "sweep", "report", "io", "secrets"}

__all__ = ["DeeplimitError", "DeeplimitWarning", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:  # ``dl.nn.…`` works without an explicit ``import deeplimit.nn``
        return importlib.import_module(f"deeplimit.{name}")
    raise AttributeError(f"module 'deeplimit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
