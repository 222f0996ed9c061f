"""Optimizers from a plan, and learning-rate schedules that keep the plan's per-group factors.

``make_optimizer`` builds ``torch.optim`` SGD / Adam / AdamW, or Muon + AdamW in one :class:`CombinedOptimizer`,
with one group per (optimizer, LR, ε, λ) factor. Every group carries ``lr_scale`` and ``lr = base_lr · lr_scale``
(depth-mup spec §4 note 5, decision D12).

PyTorch schedulers that *multiply* each group's LR (LambdaLR, MultiplicativeLR, StepLR, LinearLR,
ExponentialLR, CosineAnnealingLR with ``eta_min=0``, SequentialLR of those) keep the factors by themselves.
Schedulers that *set* absolute LRs (OneCycleLR and CyclicLR with a float ``max_lr``, cosine with
``eta_min > 0``, ReduceLROnPlateau's ``min_lr``) would erase them: wrap any scheduler with :func:`scheduler`,
which runs it on the base LR and writes ``base(t) · lr_scale`` into every group.
"""

from __future__ import annotations

import inspect
import math
from collections import ChainMap
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.groups import muon_fallbacks
from deeplimit.scaling.plan import Plan
from deeplimit.scaling.submodule import planned_module


class CombinedOptimizer(torch.optim.Optimizer):
    """Several torch optimizers, each owning some parameter groups, behaving as one ``torch.optim.Optimizer``.

    A Muon plan puts hidden matrices on ``torch.optim.Muon`` and everything else on ``torch.optim.AdamW``;
    torch has no container for that (nanochat, modded-nanogpt and NVIDIA PhysicsNeMo each carry their own), so
    this is ours, kept small. ``param_groups`` is the concatenation of the parts' groups — the *same* dicts — so
    :func:`set_base_lr`, :func:`scheduler` and any ``torch.optim.lr_scheduler`` act on every group; ``step`` runs
    each part, ``zero_grad`` clears every group, ``state_dict`` / ``load_state_dict`` save and restore each part
    (checkpoint and resume). Every group names its part in ``dl_optimizer``; :meth:`add_param_group` routes by it.

    Args:
        parts: name → a torch optimizer built on its own groups (e.g. ``{"muon": Muon(...), "adamw": AdamW(...)}``).
    """

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        if not parts:
            raise DeeplimitError("CombinedOptimizer needs at least one optimizer")
        for name, part in parts.items():
            for g in part.param_groups:
                g["dl_optimizer"] = name
        self.parts = dict(parts)
        super().__init__([g for part in self.parts.values() for g in part.param_groups], {})
        self._join()

    def _join(self) -> None:
        # The parts' own group dicts and states: one source of truth, nothing copied.
        self.param_groups = [g for part in self.parts.values() for g in part.param_groups]
        self.state = ChainMap(*(part.state for part in self.parts.values()))

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "parts": self.parts}  # copy and pickle keep the parts

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._join()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the part named by its ``dl_optimizer`` key (it then appears in ``param_groups``)."""
        name = param_group.get("dl_optimizer")
        if name not in self.parts:
            raise DeeplimitError(f"a parameter group for this optimizer must name its part: dl_optimizer one of "
                                 f"{sorted(self.parts)} (got {name!r})")
        part = self.parts[name]
        if not any(g is param_group for g in part.param_groups):  # a new group (not one of the parts' own)
            params = param_group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            taken = {id(p) for g in self.param_groups for p in g["params"]}
            if any(id(p) in taken for p in params):
                raise DeeplimitError("some parameters of the new group are already in this optimizer; a tensor "
                                     "may belong to one group only")
            bad = [tuple(p.shape) for p in params if p.ndim != 2]
            if isinstance(part, torch.optim.Muon) and bad:
                raise DeeplimitError(f"torch.optim.Muon takes 2-D parameters only, got shapes {bad[:4]}; put them "
                                     "in a group with dl_optimizer='adamw'")
            part.add_param_group(param_group)
        self._join()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step of every part (the closure, if any, is evaluated once)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts.values():
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{part name: that part's state_dict()}``."""
        return {"parts": {name: part.state_dict() for name, part in self.parts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore every part from :meth:`state_dict`; a state of other parts is an error naming them."""
        saved = state_dict.get("parts") if isinstance(state_dict, dict) else None
        if not isinstance(saved, dict) or set(saved) != set(self.parts):
            have = sorted(saved) if isinstance(saved, dict) else "a single optimizer's state"
            raise DeeplimitError(f"optimizer state has parts {have}, this optimizer {sorted(self.parts)}: it was "
                                 "saved from another optimizer; build the same one (same plan and optimizer)")
        for name, part in self.parts.items():
            part.load_state_dict(saved[name])
        self._join()


def make_optimizer(model: nn.Module, plan: Plan, lr: float, *, weight_decay: float | None = None,
                   eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999), momentum: float | None = None,
                   wd_timescale: float | None = None, wd_timescale_fraction: float | None = None,
                   total_steps: int | None = None, muon_fallback: bool = True,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """Build the optimizer named in the plan with per-group LR, ε and λ (spec §4, notes 4–5).

    ``lr``, ``eps`` and ``weight_decay`` are the *base* values tuned at (n₀, L₀); NaN, inf and negative values
    are refused, and so is a plan made for another model. Weight decay is either λ (``weight_decay``, scaled by
    the rule's mode) or an EMA timescale (``wd_timescale`` in steps, or ``wd_timescale_fraction`` of
    ``total_steps``; optimizers spec §4) from which each tensor gets λ = 1/(η_g·τ) — not both.

    ``optimizer="muon"`` plans return a :class:`CombinedOptimizer`: ``torch.optim.Muon`` (``adjust_lr_fn=
    "original"``, its factor divided out of the group LR, decision O2) for hidden matrices and ``torch.optim.
    AdamW`` for the rest. ``momentum`` is SGD's (default 0) or Muon's (default 0.95, torch's); hidden tensors
    Muon cannot take (not 2-D) go on AdamW unless ``muon_fallback=False``, which makes them an error. Any extra
    keyword goes to the torch optimizer that accepts it (e.g. ``fused=True``, ``ns_steps=5``).

    ``model`` may also be a module holding the parametrized model as a submodule (a ``LightningModule``'s
    ``self``): the plan's names are looked up there, provided no trainable parameter lies outside it.
    """
    if not isinstance(plan, Plan):
        raise DeeplimitError(f"make_optimizer(model, plan, lr) needs a deeplimit Plan, got {type(plan).__name__}; "
                             "build one with dl.parametrize(model, rule, ...) or dl.make_plan")
    if momentum is not None:
        check_number("momentum", momentum, nonnegative=True, fix="pass a momentum in [0, 1), e.g. 0.9")
    model = planned_module(model, plan)  # a LightningModule (or any holder) given for the model it holds
    groups = plan.param_groups(model, lr, weight_decay=weight_decay, eps=eps, wd_timescale=wd_timescale,
                               wd_timescale_fraction=wd_timescale_fraction, total_steps=total_steps)
    if not groups:
        raise DeeplimitError("the model has no trainable parameters (all requires_grad=False)")
    if plan.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum or 0.0, **kwargs)
    if plan.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    if plan.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    return _muon_adamw(plan, groups, lr, betas=betas, eps=eps, momentum=momentum, fallback=muon_fallback, **kwargs)


def _muon_adamw(plan: Plan, groups: list[dict], lr: float, *, betas: tuple[float, float], eps: float,
                momentum: float | None, fallback: bool, **kwargs: Any) -> CombinedOptimizer:
    if not fallback:
        names = muon_fallbacks(plan)
        if names:
            raise DeeplimitError(f"torch.optim.Muon takes 2-D matrices only, but hidden tensor(s) {names[:6]} are not "
                                 "2-D; allow the AdamW fallback (muon_fallback=True, the μP Adam rule), or give them "
                                 "another role with roles={'<name>': ...}")
    muon_args = set(inspect.signature(torch.optim.Muon.__init__).parameters) - {"self", "params", "lr"}
    adamw_args = set(inspect.signature(torch.optim.AdamW.__init__).parameters) - {"self", "params", "lr"}
    if "adjust_lr_fn" in kwargs:
        raise DeeplimitError("adjust_lr_fn is set by the plan ('original', its factor divided out of each group's "
                             "LR so the spectral factor is applied once); drop it")
    unknown = sorted(set(kwargs) - muon_args - adamw_args)
    if unknown:
        raise DeeplimitError(f"unknown optimizer option(s) {unknown}; Muon accepts {sorted(muon_args)}, AdamW "
                             f"{sorted(adamw_args)}")
    muon_kw = {k: v for k, v in kwargs.items() if k in muon_args and k not in adamw_args}
    adamw_kw = {k: v for k, v in kwargs.items() if k in adamw_args and k not in muon_args}
    if momentum is not None:
        muon_kw["momentum"] = momentum
    parts: dict[str, torch.optim.Optimizer] = {}
    muon_groups = [g for g in groups if g["dl_optimizer"] == "muon"]
    adamw_groups = [g for g in groups if g["dl_optimizer"] == "adamw"]
    if muon_groups:
        parts["muon"] = torch.optim.Muon(muon_groups, lr=lr, adjust_lr_fn="original", **muon_kw)
    if adamw_groups:
        parts["adamw"] = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps, **adamw_kw)
    return CombinedOptimizer(parts)


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


class ScaledScheduler(torch.optim.lr_scheduler.LRScheduler):
    """Any ``torch.optim.lr_scheduler`` run on the *base* LR, written into every group times its ``lr_scale``.

    The scheduler drives a one-group shadow optimizer of the same class (same defaults, so OneCycleLR's momentum
    cycling works too) whose LR starts at the base LR; after each :meth:`step` every real group gets
    ``lr = shadow_lr · lr_scale`` (and the shadow's ``momentum`` / ``betas`` if the scheduler changed them).
    So group LRs equal ``base_schedule(t) · lr_scale`` for every scheduler, including OneCycleLR with a float
    ``max_lr``. Build it with :func:`scheduler`.

    It is a ``torch.optim.lr_scheduler.LRScheduler`` (Lightning accepts only those from ``configure_optimizers``;
    the Hugging Face ``Trainer`` takes it in ``optimizers=(opt, sched)``), with that class's public surface:
    ``step``, ``get_last_lr``, ``last_epoch``, ``base_lrs``, ``state_dict`` / ``load_state_dict``. Its
    ``__init__`` is not the base class's, which would take a first step of the schedule and set ``initial_lr``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factory: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> None:
        _scales(optimizer)
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self._shadow = _shadow_optimizer(optimizer, base_lr(optimizer))
        try:
            self.scheduler = factory(self._shadow, *args, **kwargs)
        except TypeError as exc:
            raise DeeplimitError(f"cannot build the scheduler: {exc}; pass a scheduler class (or a function of the "
                                 "optimizer) and its arguments, e.g. dl.scheduler(opt, OneCycleLR, max_lr=1e-3, "
                                 "total_steps=1000)") from None
        self._sync()

    @property
    def last_epoch(self) -> int:
        """The wrapped scheduler's step counter (``-1`` before its first step, as torch's)."""
        return getattr(self.scheduler, "last_epoch", -1)

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        if hasattr(self, "scheduler"):
            self.scheduler.last_epoch = value

    def get_lr(self) -> list[float]:
        """The LR of every group for the current step (what :meth:`step` wrote)."""
        return self.get_last_lr()

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
