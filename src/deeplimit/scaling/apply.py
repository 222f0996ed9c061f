"""Declarative entry points: say which rule you want, get a parametrized model (and back from disk)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.plan import Plan, canonical_name, make_plan


def parametrize(model: nn.Module, rule: str = "depth_mup", *, seed: int | None = 0, **plan_kwargs) -> Plan:
    """Resolve ``rule`` for ``model``, set its forward multipliers and (unless ``seed is None``) re-initialise it.

    ``plan_kwargs`` go to :func:`~deeplimit.scaling.plan.make_plan` (``base_width``, ``base_depth``,
    ``optimizer``, ``roles``, ``block_mult``, …). Returns the plan; the model is modified in place::

        plan = dl.parametrize(model, "depth_mup", base_width=64, base_depth=4, optimizer="adam")
        opt = dl.make_optimizer(model, plan, lr=1e-3)
    """
    plan = make_plan(model, rule, **plan_kwargs)
    plan.apply(model)
    if seed is not None:
        plan.initialize(model, seed)
    return plan


def _plan_path(path: Path) -> Path:
    return path.with_name(path.name + ".plan.json")


def save_checkpoint(path: str | Path, model: nn.Module, plan: Plan, optimizer: torch.optim.Optimizer | None = None,
                    **extra) -> Path:
    """Save ``state_dict`` (canonical names) + optimizer state to ``path`` and the plan as JSON beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {canonical_name(k): v for k, v in model.state_dict().items()}
    blob = {"model": state, "extra": extra}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    plan.save(_plan_path(path))
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> tuple[Plan, dict]:
    """Load weights into ``model`` (any wrapper prefixes), re-apply the saved plan, return (plan, extra)."""
    path = Path(path)
    if not path.exists():
        raise DeeplimitError(f"checkpoint {path} does not exist")
    plan = Plan.load(_plan_path(path))
    plan.check(model)
    blob = torch.load(path, map_location="cpu", weights_only=False)
    own = {canonical_name(k): k for k in model.state_dict()}
    state = {own[k]: v for k, v in blob["model"].items() if k in own}
    missing = sorted(set(own) - set(blob["model"]))
    if missing:
        raise DeeplimitError(f"checkpoint {path} lacks {missing[:8]}; it was saved from a different model")
    model.load_state_dict(state)
    plan.apply(model)
    if optimizer is not None and "optimizer" in blob:
        optimizer.load_state_dict(blob["optimizer"])
    return plan, blob.get("extra", {})
