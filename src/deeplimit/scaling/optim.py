"""Optimizers from a plan: ``torch.optim`` SGD / Adam / AdamW with one group per (LR, ε, λ) factor."""

from __future__ import annotations

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.plan import Plan


def make_optimizer(model: nn.Module, plan: Plan, lr: float, *, weight_decay: float = 0.0, eps: float = 1e-8,
                   betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.0,
                   **kwargs) -> torch.optim.Optimizer:
    """Build the optimizer named in the plan with per-group LR, ε and λ (spec §4, notes 4–5).

    ``lr``, ``eps`` and ``weight_decay`` are the *base* values tuned at (n₀, L₀). Any extra keyword goes to
    the torch optimizer (e.g. ``fused=True``, ``foreach=False``).
    """
    groups = plan.param_groups(model, lr, weight_decay=weight_decay, eps=eps)
    if not groups:
        raise DeeplimitError("the model has no trainable parameters (all requires_grad=False)")
    if plan.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **kwargs)
    if plan.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the base LR: every group gets ``lr · lr_scale`` (so a schedule never erases the plan's factors)."""
    for g in optimizer.param_groups:
        if "lr_scale" not in g:
            raise DeeplimitError(
                "optimizer group without 'lr_scale': build the optimizer with deeplimit.make_optimizer")
        g["lr"] = lr * g["lr_scale"]
