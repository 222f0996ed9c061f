"""Declarative entry points: say which rule you want, get a parametrized model (and back from disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_torch_save, safe_torch_load
from deeplimit.nn.layers import STATE_KEY
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.plan import Plan, make_plan


def parametrize(model: nn.Module, rule: str = "depth_mup", *, seed: int | None = 0, **plan_kwargs: Any) -> Plan:
    """Resolve ``rule`` for ``model``, set its forward multipliers and (unless ``seed is None``) re-initialise it.

    ``plan_kwargs`` go to :func:`~deeplimit.scaling.plan.make_plan` (``base_width``, ``base_depth``,
    ``optimizer``, ``roles``, ``block_mult``, …). Returns the plan; the model is modified in place::

        plan = dl.parametrize(model, "depth_mup", base_width=64, base_depth=4, optimizer="adam")
        opt = dl.make_optimizer(model, plan, lr=1e-3)

    Calling it twice is safe (hooks are registered once; the second plan's numbers replace the first's).
    ``seed=None`` keeps the current weights (e.g. weights loaded before parametrizing).
    """
    plan = make_plan(model, rule, **plan_kwargs)
    plan.apply(model)
    if seed is not None:
        plan.initialize(model, seed)
    return plan


def _plan_path(path: Path) -> Path:
    return path.with_name(path.name + ".plan.json")


def save_checkpoint(path: str | Path, model: nn.Module, plan: Plan, optimizer: torch.optim.Optimizer | None = None,
                    **extra: Any) -> Path:
    """Save ``state_dict`` (canonical names, multipliers included) + optimizer state to ``path``, and the plan
    as JSON beside it (``path.plan.json``). Both writes are atomic: a crash never leaves a torn file.

    ``extra`` values must be tensors or plain data (numbers, strings, lists, dicts): checkpoints are loaded with
    ``weights_only=True``.
    """
    path = Path(path)
    state = {canonical_name(k): v for k, v in model.state_dict().items()}
    blob = {"model": state, "extra": extra}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    plan.save(_plan_path(path))
    atomic_torch_save(blob, path)
    return path


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> tuple[Plan, dict]:
    """Load weights into ``model`` (any wrapper prefixes), re-apply the saved plan, return (plan, extra).

    The checkpoint is read with ``weights_only=True`` (a crafted file cannot run code) and the plan with
    :func:`deeplimit.io.read_json` (a torn file is a clear error).
    """
    path = Path(path)
    if not path.exists():
        raise DeeplimitError(f"checkpoint {path} does not exist")
    plan = Plan.load(_plan_path(path))
    plan.apply(model)
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise DeeplimitError(f"checkpoint {path} is not a deeplimit checkpoint (no 'model' state); save it with "
                             "dl.save_checkpoint")
    current = model.state_dict()
    own = {canonical_name(k): k for k in current}
    saved = blob["model"]
    missing = sorted(k for k in set(own) - set(saved) if STATE_KEY not in k)
    if missing:
        raise DeeplimitError(f"checkpoint {path} lacks {missing[:8]}; it was saved from a different model")
    # multipliers saved in the state dict are checked against the plan's on load (an older checkpoint has none)
    model.load_state_dict({own[k]: saved[k] for k in own if k in saved})
    if optimizer is not None and "optimizer" in blob:
        optimizer.load_state_dict(blob["optimizer"])
    return plan, blob.get("extra", {})
