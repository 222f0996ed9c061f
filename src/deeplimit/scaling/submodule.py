"""The module a plan was made for, found inside a module that holds it (a LightningModule, any wrapper attribute).

A plan is keyed by the parametrized model's own parameter names. Training frameworks hand the optimizer factory
the *holder* — ``LightningModule.configure_optimizers`` has ``self``, whose parameters are ``net.<plan name>`` —
so :func:`deeplimit.make_optimizer` looks the planned submodule up instead of reporting every name as missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.names import canonical_name

if TYPE_CHECKING:  # pragma: no cover
    from deeplimit.scaling.plan import Plan


def planned_module(model: nn.Module, plan: Plan) -> nn.Module:
    """``model`` itself if the plan's names are its parameter names, else the submodule whose names they are.

    A submodule is returned only if every trainable parameter of ``model`` lies inside it; otherwise the parameters
    outside would silently get no LR from the plan, which is an error naming them and the two fixes. When no
    submodule fits, ``model`` is returned and the plan's own check reports the mismatch.
    """
    planned = set(plan.params)
    names = {canonical_name(n) for n, _ in model.named_parameters()}
    if not planned or planned & names:
        return model
    first = min(planned)
    modules = {canonical_name(n): m for n, m in model.named_modules() if n}
    for prefix in sorted({n[: -len(first) - 1] for n in names if n.endswith("." + first)}, key=len):
        sub = modules.get(prefix)
        if sub is None or {canonical_name(n) for n, _ in sub.named_parameters()} != planned:
            continue
        inside = {id(p) for p in sub.parameters()}
        outside = sorted(canonical_name(n) for n, p in model.named_parameters()
                         if p.requires_grad and id(p) not in inside)
        if outside:
            raise DeeplimitError(
                f"the plan is for the submodule {prefix!r} of the {type(model).__name__} given, but its parameters "
                f"{outside[:4]}{' …' if len(outside) > 4 else ''} lie outside it and would get no LR from the plan: "
                f"parametrize the module that holds them all, or pass the planned one "
                f"(dl.make_optimizer(<module>.{prefix}, plan, lr)) and give the others a group of your own")
        return sub
    return model
