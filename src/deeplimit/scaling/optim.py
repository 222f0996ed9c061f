"""Optimizers from a plan, and learning-rate schedules that keep the plan's per-group factors.

``make_optimizer`` builds ``torch.optim`` SGD / Adam / AdamW with one group per (LR, ε, λ) factor. Every group
carries ``lr_scale`` and ``lr = base_lr · lr_scale`` (depth-mup spec §4 note 5, decision D12).

PyTorch schedulers that *multiply* each group's LR (LambdaLR, MultiplicativeLR, StepLR, LinearLR,
ExponentialLR, CosineAnnealingLR with ``eta_min=0``, SequentialLR of those) keep the factors by themselves.
Schedulers that *set* absolute LRs (OneCycleLR and CyclicLR with a float ``max_lr``, cosine with
``eta_min > 0``, ReduceLROnPlateau's ``min_lr``) would erase them: wrap any scheduler with :func:`scheduler`,
which runs it on the base LR and writes ``base(t) · lr_scale`` into every group.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.plan import Plan


def make_optimizer(model: nn.Module, plan: Plan, lr: float, *, weight_decay: float = 0.0, eps: float = 1e-8,
                   betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.0,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """Build the optimizer named in the plan with per-group LR, ε and λ (spec §4, notes 4–5).

    ``lr``, ``eps`` and ``weight_decay`` are the *base* values tuned at (n₀, L₀); NaN, inf and negative values
    are refused, and so is a plan made for another model. Any extra keyword goes to the torch optimizer (e.g.
    ``fused=True``, ``foreach=False``).
    """
    if not isinstance(plan, Plan):
        raise DeeplimitError(f"make_optimizer(model, plan, lr) needs a deeplimit Plan, got {type(plan).__name__}; "
                             "build one with dl.parametrize(model, rule, ...) or dl.make_plan")
    groups = plan.param_groups(model, lr, weight_decay=weight_decay, eps=eps)
    if not groups:
        raise DeeplimitError("the model has no trainable parameters (all requires_grad=False)")
    if plan.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **kwargs)
    if plan.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


def _scales(optimizer: torch.optim.Optimizer) -> list[float]:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise DeeplimitError(f"expected a torch optimizer, got {type(optimizer).__name__}")
    missing = [i for i, g in enumerate(optimizer.param_groups) if "lr_scale" not in g]
    if missing:
        raise DeeplimitError(f"optimizer group(s) {missing} have no 'lr_scale': build the optimizer with "
                             "deeplimit.make_optimizer(model, plan, lr)")
    return [g["lr_scale"] for g in optimizer.param_groups]


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the base LR: every group gets ``lr · lr_scale`` (so a schedule never erases the plan's factors)."""
    check_number("lr", lr, nonnegative=True, fix="pass the base learning rate of this step")
    for g, s in zip(optimizer.param_groups, _scales(optimizer)):
        g["lr"] = lr * s


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The base LR of an optimizer from :func:`make_optimizer` (every group's ``lr / lr_scale``, checked equal)."""
    values = [g["lr"] / s for g, s in zip(optimizer.param_groups, _scales(optimizer))]
    if any(not math.isclose(v, values[0], rel_tol=1e-9) for v in values):
        raise DeeplimitError("the optimizer's groups disagree on the base LR (lr / lr_scale): something set group "
                             "LRs directly; call deeplimit.set_base_lr(optimizer, lr) first")
    return values[0]


class ScaledScheduler:
    """Any ``torch.optim.lr_scheduler`` run on the *base* LR, written into every group times its ``lr_scale``.

    The scheduler drives a one-group shadow optimizer of the same class (same defaults, so OneCycleLR's momentum
    cycling works too) whose LR starts at the base LR; after each :meth:`step` every real group gets
    ``lr = shadow_lr · lr_scale`` (and the shadow's ``momentum`` / ``betas`` if the scheduler changed them).
    So group LRs equal ``base_schedule(t) · lr_scale`` for every scheduler, including OneCycleLR with a float
    ``max_lr``. Build it with :func:`scheduler`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factory: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> None:
        _scales(optimizer)
        self.optimizer = optimizer
        self._shadow = _shadow_optimizer(optimizer, base_lr(optimizer))
        try:
            self.scheduler = factory(self._shadow, *args, **kwargs)
        except TypeError as exc:
            raise DeeplimitError(f"cannot build the scheduler: {exc}; pass a scheduler class (or a function of the "
                                 "optimizer) and its arguments, e.g. dl.scheduler(opt, OneCycleLR, max_lr=1e-3, "
                                 "total_steps=1000)") from None
        self._sync()

    @property
    def base_lr(self) -> float:
        """The base LR the scheduler set for the current step (before the per-group factors)."""
        return self._shadow.param_groups[0]["lr"]

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Advance the schedule (arguments go to the wrapped scheduler, e.g. a metric for ReduceLROnPlateau)."""
        self._shadow.step()  # no gradients: a no-op that keeps torch's "scheduler before optimizer" check quiet
        self.scheduler.step(*args, **kwargs)
        self._sync()

    def _sync(self) -> None:
        src = self._shadow.param_groups[0]
        for g in self.optimizer.param_groups:
            g["lr"] = src["lr"] * g["lr_scale"]
            for key in ("momentum", "betas"):
                if key in src and key in g:
                    g[key] = src[key]

    def get_last_lr(self) -> list[float]:
        """The LR of every group of the real optimizer."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "shadow": self._shadow.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._shadow.load_state_dict(state["shadow"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._sync()


def _shadow_optimizer(optimizer: torch.optim.Optimizer, lr: float) -> torch.optim.Optimizer:
    dummy = torch.zeros(1, requires_grad=True)
    accepted = set(inspect.signature(type(optimizer).__init__).parameters)
    skip = {"params", "lr", "fused", "foreach", "capturable", "differentiable"}
    kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted and k not in skip}
    first = optimizer.param_groups[0]
    kwargs.update({k: first[k] for k in ("momentum", "betas") if k in first and k in accepted})
    try:
        return type(optimizer)([dummy], lr=lr, **kwargs)
    except (TypeError, ValueError):
        momentum = first.get("momentum", first.get("betas", (0.0,))[0])
        return torch.optim.SGD([dummy], lr=lr, momentum=momentum)


def scheduler(optimizer: torch.optim.Optimizer, factory: Callable[..., Any], *args: Any,
              **kwargs: Any) -> ScaledScheduler:
    """Run any LR scheduler on the base LR while every group keeps its plan factor (decision D12).

    ``factory`` is a scheduler class or any function ``optimizer -> scheduler`` (for compositions)::

        sched = dl.scheduler(opt, OneCycleLR, max_lr=2e-3, total_steps=1000)   # max_lr is the *base* peak
        sched = dl.scheduler(opt, lambda o: SequentialLR(o, [LinearLR(o, 0.1, total_iters=100),
                                                             CosineAnnealingLR(o, 900, eta_min=1e-5)], [100]))

    Call ``sched.step()`` where you would call the scheduler's; group ``g`` then has ``lr = base(t) · lr_scale_g``.
    """
    return ScaledScheduler(optimizer, factory, *args, **kwargs)
