"""Optimizer parameter groups from a plan: one group per distinct (optimizer, LR, ε, λ) (depth-mup spec §4 note 5).

Weight decay is given either as a coefficient λ (scaled by the rule's weight-decay mode, decision D3) or as an
EMA timescale τ = 1/(η_g·λ) in steps or as a fraction of the run (optimizers spec §4, Wang & Aitchison 2024),
from which every tensor gets its own λ = 1/(η_g·τ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling import bind, table
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.record import ParamPlan, PlanRecord

# Optimizers whose decay is decoupled (or plain SGD's p ← p(1 − ηλ)), so the weights are an EMA of the updates
# with timescale 1/(ηλ). Adam's decay is an L2 term inside the adaptive step: no such timescale.
TIMESCALE_OPTIMIZERS = ("sgd", "adamw", "muon")


def check_base_values(lr: float | None, eps: float, weight_decay: float) -> None:
    """Refuse a NaN/inf/non-positive base LR, a NaN/inf/negative ε or λ (issue #11)."""
    if lr is not None:
        check_number("lr", lr, positive=True, fix="pass the base learning rate tuned at the base shape, e.g. 1e-3")
    check_number("eps", eps, nonnegative=True, fix="pass the base Adam epsilon, e.g. 1e-8")
    check_number("weight_decay", weight_decay, nonnegative=True, fix="pass the base weight decay, e.g. 0.1 (0: none)")


@dataclass(frozen=True)
class Decay:
    """The base weight decay of a run: a coefficient ``weight_decay`` (λ), or ``timescale`` τ in steps."""

    weight_decay: float = 0.0
    timescale: float | None = None

    def describe(self) -> str:
        if self.timescale is None:
            return f"weight decay lambda={self.weight_decay:g}"
        return f"weight decay as an EMA timescale tau={self.timescale:g} steps: lambda = 1/(lr_group*tau) per tensor"


def resolve_decay(optimizer: str, weight_decay: float | None = None, *, wd_timescale: float | None = None,
                  wd_timescale_fraction: float | None = None, total_steps: int | None = None) -> Decay:
    """One :class:`Decay` from the ways a user can give it; contradictions are errors naming the fix.

    Args:
        weight_decay: λ, scaled per tensor by the rule's weight-decay mode (decision D3). ``None``: 0.
        wd_timescale: τ in optimizer steps (τ = 1/(η_g·λ), optimizers spec §4).
        wd_timescale_fraction: τ as a fraction of the run; needs ``total_steps`` (τ = fraction·total_steps), so
            the same fraction holds when the step count changes.
    """
    if wd_timescale is not None and wd_timescale_fraction is not None:
        raise DeeplimitError("give the weight-decay timescale once: wd_timescale (steps) or wd_timescale_fraction "
                             "(fraction of the run), not both")
    if total_steps is not None and wd_timescale_fraction is None:
        raise DeeplimitError("total_steps only converts wd_timescale_fraction into steps; drop it, or give the "
                             "timescale as wd_timescale_fraction=...")
    timed = wd_timescale is not None or wd_timescale_fraction is not None
    if not timed:
        return Decay(0.0 if weight_decay is None else weight_decay)
    if weight_decay is not None:
        raise DeeplimitError("give either weight_decay (lambda) or a weight-decay timescale (tau = 1/(lr*lambda)), "
                             "not both: the timescale sets lambda per tensor")
    if optimizer not in TIMESCALE_OPTIMIZERS:
        raise DeeplimitError(f"a weight-decay timescale needs decoupled decay, but optimizer {optimizer!r} adds "
                             "lambda*p to the gradient inside its adaptive step; use optimizer='adamw' (or 'muon')")
    if wd_timescale is not None:
        tau = check_number("wd_timescale", wd_timescale, positive=True,
                           fix="pass the EMA timescale in optimizer steps, e.g. 1000")
        return Decay(timescale=tau)
    frac = check_number("wd_timescale_fraction", wd_timescale_fraction, positive=True,
                        fix="pass the timescale as a fraction of the run, e.g. 0.2")
    if total_steps is None:
        raise DeeplimitError("wd_timescale_fraction needs the length of the run: pass total_steps=N (the number of "
                             "optimizer steps), or give the timescale in steps with wd_timescale=...")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise DeeplimitError(f"total_steps must be a positive integer (optimizer steps of the run), got "
                             f"{total_steps!r}")
    return Decay(timescale=frac * total_steps)


def tensor_weight_decay(plan: PlanRecord, pp: ParamPlan, lr: float | None, decay: Decay) -> float:
    """λ of one tensor: from the timescale (λ = 1/(η_g·τ)) or from the base λ and the rule's mode."""
    if decay.timescale is not None:
        if lr is None:
            raise DeeplimitError("a weight-decay timescale gives lambda = 1/(lr_group*tau) only with a base LR; "
                                 "pass lr=...")
        return table.timescale_weight_decay(decay.timescale, pp.wd_scale, lr, pp.lr_scale)
    return table.group_weight_decay(plan.rule, decay.weight_decay, pp.wd_scale, lr, pp.lr_scale)


def tensor_optimizer(plan: PlanRecord, pp: ParamPlan) -> str:
    """The torch optimizer that updates ``pp`` (``"muon"`` or ``"adamw"`` under a Muon plan)."""
    return table.param_optimizer(plan.optimizer, pp.role, len(pp.shape))


def muon_fallbacks(plan: PlanRecord) -> list[str]:
    """Hidden tensors a Muon plan puts on AdamW because ``torch.optim.Muon`` takes 2-D only (e.g. convolutions)."""
    if plan.optimizer != "muon":
        return []
    return [n for n, pp in plan.params.items() if pp.role == "hidden" and tensor_optimizer(plan, pp) != "muon"]


def param_groups(plan: PlanRecord, model: nn.Module, lr: float, *, weight_decay: float | None = None, eps: float = 1e-8,
                 wd_timescale: float | None = None, wd_timescale_fraction: float | None = None,
                 total_steps: int | None = None) -> list[dict]:
    """Parameter groups for ``torch.optim`` (SGD/Adam/AdamW/Muon), one per distinct (optimizer, LR, ε, λ).

    Each group stores ``lr_scale``; ``group["lr"] = lr · lr_scale``, ``group["eps"] = eps · eps_scale`` (Adam
    groups) and ``group["weight_decay"]`` from :func:`tensor_weight_decay`. Under a Muon plan each group also
    names its optimizer in ``dl_optimizer`` (``"muon"`` or ``"adamw"``); a Muon group's LR has torch's own
    ``adjust_lr_fn`` factor divided out (:func:`deeplimit.scaling.table.muon_lr_scale`). Schedulers that multiply
    group LRs (LambdaLR, cosine, …) therefore keep the per-group factors; for the others use
    :func:`deeplimit.scheduler`, and to set a new base LR use :func:`deeplimit.set_base_lr` (decision D12).
    Frozen parameters (``requires_grad=False``) are left out. The plan must match the model (names, shapes,
    ties, width and depth): a plan of another model is an error, never silently wrong LRs.
    """
    decay = resolve_decay(plan.optimizer, weight_decay, wd_timescale=wd_timescale,
                          wd_timescale_fraction=wd_timescale_fraction, total_steps=total_steps)
    check_base_values(lr, eps, decay.weight_decay)
    bind.check(plan, model)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pp = plan[name]
        opt = tensor_optimizer(plan, pp)
        wd = tensor_weight_decay(plan, pp, lr, decay)
        if not math.isfinite(wd):
            raise DeeplimitError(f"{name}: weight decay {wd!r} is not finite; check lr and the timescale")
        # One group per distinct (optimizer, LR, ε, λ): fewer groups, fewer kernel launches per optimizer step.
        key = (opt, round(pp.lr_scale, 12), round(pp.eps_scale, 12), round(wd, 15))
        if key not in groups:
            g = {"params": [], "lr": lr * pp.lr_scale, "lr_scale": pp.lr_scale, "weight_decay": wd,
                 "dl_group": pp.role_label, "param_names": []}
            if opt in ("adam", "adamw"):
                g["eps"] = eps * pp.eps_scale
            if plan.optimizer == "muon":
                g["dl_optimizer"] = opt
            groups[key] = g
        elif pp.role_label not in groups[key]["dl_group"].split("+"):
            groups[key]["dl_group"] += "+" + pp.role_label
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(canonical_name(name))
    return list(groups.values())
