"""Optimizer parameter groups from a plan: one group per distinct (LR, ε, λ) factor (depth-mup spec §4 note 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from deeplimit.scaling import table
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.names import canonical_name

if TYPE_CHECKING:
    from deeplimit.scaling.plan import Plan


def check_base_values(lr: float | None, eps: float, weight_decay: float) -> None:
    """Refuse a NaN/inf/non-positive base LR, a NaN/inf/negative ε or λ (issue #11)."""
    if lr is not None:
        check_number("lr", lr, positive=True, fix="pass the base learning rate tuned at the base shape, e.g. 1e-3")
    check_number("eps", eps, nonnegative=True, fix="pass the base Adam epsilon, e.g. 1e-8")
    check_number("weight_decay", weight_decay, nonnegative=True, fix="pass the base weight decay, e.g. 0.1 (0: none)")


def param_groups(plan: Plan, model: nn.Module, lr: float, *, weight_decay: float = 0.0,
                 eps: float = 1e-8) -> list[dict]:
    """Parameter groups for ``torch.optim`` (SGD/Adam/AdamW), one per distinct (LR, ε, λ) factor.

    Each group stores ``lr_scale``; ``group["lr"] = lr · lr_scale``, ``group["eps"] = eps · eps_scale`` and
    ``group["weight_decay"]`` from :func:`deeplimit.scaling.table.group_weight_decay`. Schedulers that multiply
    group LRs (LambdaLR, cosine, …) therefore keep the per-group factors; for the others use
    :func:`deeplimit.scheduler`, and to set a new base LR use :func:`deeplimit.set_base_lr` (decision D12).
    Frozen parameters (``requires_grad=False``) are left out. The plan must match the model (names, shapes,
    ties, width and depth): a plan of another model is an error, never silently wrong LRs.
    """
    check_base_values(lr, eps, weight_decay)
    plan.check(model)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pp = plan[name]
        wd = table.group_weight_decay(plan.rule, weight_decay, pp.wd_scale, lr, pp.lr_scale)
        # One group per distinct (LR, ε, λ): fewer groups, fewer fused-kernel launches per optimizer step.
        key = (round(pp.lr_scale, 12), round(pp.eps_scale, 12), round(wd, 15))
        if key not in groups:
            g = {"params": [], "lr": lr * pp.lr_scale, "lr_scale": pp.lr_scale, "weight_decay": wd,
                 "dl_group": pp.role_label, "param_names": []}
            if plan.optimizer != "sgd":
                g["eps"] = eps * pp.eps_scale
            groups[key] = g
        elif pp.role_label not in groups[key]["dl_group"].split("+"):
            groups[key]["dl_group"] += "+" + pp.role_label
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(canonical_name(name))
    return list(groups.values())
