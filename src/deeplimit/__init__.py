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

from deeplimit._lazy import lazy_names as _lazy_names
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
    "TrainConfig": "deeplimit.train",
}

# ``train`` stays a module (``dl.train.train(cfg)``): importing it binds the name on this package anyway, so a
# function of the same name here would be shadowed by the module after the first import
_SUBMODULES = {"nn", "scaling", "data", "diagnostics", "sde", "sweep", "train", "transfer", "report", "io",
               "secrets", "protocol"}

__all__ = ["DeeplimitError", "DeeplimitWarning", "__version__", *sorted(_LAZY)]


# ``dir(deeplimit)``: the API only, the names in ``__all__`` and the subpackages (no helpers of this module)
__getattr__, __dir__ = _lazy_names("deeplimit", _LAZY, globals(), submodules=_SUBMODULES,
                                   public=[*__all__, *_SUBMODULES])
