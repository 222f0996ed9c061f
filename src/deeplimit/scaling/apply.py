"""Declarative entry points: say which rule you want, get a parametrized model (and back from disk)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from deeplimit.errors import DeeplimitError, warn
from deeplimit.io import atomic_torch_save, safe_torch_load
from deeplimit.nn.layers import STATE_KEY
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.plan import HF_PLAN_KEY, Plan, make_plan

InitMode = Literal["auto", "keep", "redraw"]


def parametrize(model: nn.Module, rule: str = "depth_mup", *, seed: int | None = 0, init: InitMode = "auto",
                **plan_kwargs: Any) -> Plan:
    """Resolve ``rule`` for ``model``, set its forward multipliers and (unless the weights are kept) re-initialise it.

    ``plan_kwargs`` go to :func:`~deeplimit.scaling.plan.make_plan` (``base_width``, ``base_depth``,
    ``optimizer``, ``roles``, ``block_mult``, …). Returns the plan; the model is modified in place::

        plan = dl.parametrize(model, "depth_mup", base_width=64, base_depth=4, optimizer="adam")
        opt = dl.make_optimizer(model, plan, lr=1e-3)

    Calling it twice is safe (hooks are registered once; the second plan's numbers replace the first's).

    ``init`` says whether the weights are drawn from the plan: ``"redraw"`` always (with ``seed``), ``"keep"``
    never (``seed=None`` is the same), ``"auto"`` (default) keeps weights that came from a checkpoint and draws
    the rest. A Hugging Face model loaded with ``from_pretrained`` is recognised (its parameters carry
    transformers' ``_is_hf_initialized`` flag; deeplimit clears it on the tensors it draws); if its config holds
    the plan it was saved with (``config.deeplimit_plan``, written by :meth:`Plan.apply`), the new plan must
    give the same multipliers — same arguments, same model back — or it is an error. Other models cannot tell
    loaded weights from fresh ones: load a plain ``state_dict`` *after* ``parametrize`` (the multipliers are
    checked), use :func:`load_checkpoint`, or pass ``init="keep"``.
    """
    if init not in ("auto", "keep", "redraw"):
        raise DeeplimitError(f"init must be 'auto', 'keep' or 'redraw', got {init!r}")
    plan = make_plan(model, rule, **plan_kwargs)
    _reshard(model)
    keep = seed is None or init == "keep"
    if init == "auto" and not keep and loaded_from_checkpoint(model):
        keep = True
        saved = saved_plan(model)
        if saved is not None:
            _check_same_multipliers(saved, plan)
        else:
            warn("the weights came from a checkpoint with no deeplimit plan (a pretrained model): they are kept and "
                 "the plan's multipliers act on them; pass init='redraw' to draw the plan's init instead")
    plan.apply(model)
    if not keep:
        plan.initialize(model, seed)
    return plan


def _reshard(model: nn.Module) -> None:
    """Put every FSDP2 (``fully_shard``) module of ``model`` back in its sharded state.

    Why: a forward pass leaves the root's parameters unsharded (FSDP2 keeps the root gathered after forward), and
    finding a Hugging Face model's structure runs one. Drawn into those gathered copies, the plan's weights would
    be dropped at the next reshard — the first ``state_dict()`` or step — and an optimizer made then would hold
    the gathered copies instead of the sharded parameters. Sharded, each draw goes to the shards (``DTensor``).
    """
    if "torch.distributed.fsdp" not in sys.modules:  # nothing was sharded; importing FSDP would cost ~1.5 s
        return
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def loaded_from_checkpoint(model: nn.Module) -> bool:
    """True if some parameter holds values loaded by ``transformers``' ``from_pretrained`` (flag
    ``_is_hf_initialized``) and not drawn by deeplimit since; False for every other model."""
    return any(getattr(p, "_is_hf_initialized", False) for p in model.parameters())


def saved_plan(model: nn.Module) -> Plan | None:
    """The plan a Hugging Face checkpoint was saved with (``config.deeplimit_plan``), or None."""
    from deeplimit.scaling.hf import unwrap

    d = getattr(getattr(unwrap(model), "config", None), HF_PLAN_KEY, None)
    return Plan.from_dict(d) if d is not None else None


def _check_same_multipliers(saved: Plan, plan: Plan) -> None:
    diff = []
    for module in sorted(set(saved.multipliers) | set(plan.multipliers)):
        a, b = saved.multipliers.get(module, {}), plan.multipliers.get(module, {})
        for attr in sorted(set(a) | set(b)):
            x, y = a.get(attr, 1.0), b.get(attr, 1.0)
            if not math.isclose(x, y, rel_tol=1e-12):
                diff.append(f"{module or 'the root'}.{attr}: saved {x:.6g}, now {y:.6g}")
    if diff:
        first = saved.summary().splitlines()[0]
        raise DeeplimitError(
            f"the checkpoint was saved with other multipliers ({'; '.join(diff[:4])}{' …' if len(diff) > 4 else ''}); "
            f"it was saved with: {first}. Pass the rule, base shape and multipliers it was saved with (or "
            "dl.Plan.from_dict(model.config.deeplimit_plan).apply(model)), or init='redraw' to start from a fresh "
            "init")


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
