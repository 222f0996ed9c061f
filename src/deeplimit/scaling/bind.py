"""Binding a plan to a model (the role of ``mup``'s ``apply_infshapes``): check that they match, set the forward
multipliers, draw the init.

Each function takes the plan record (:class:`~deeplimit.scaling.record.PlanRecord`) and the model; the plan is
never stored on ``nn.Parameter``. :class:`~deeplimit.scaling.plan.Plan` offers them as ``plan.check(model)``,
``plan.apply(model)`` and ``plan.initialize(model, seed)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn.layers import STATE_KEY, carry_multipliers
from deeplimit.scaling import hf
from deeplimit.scaling.declared import model_size
from deeplimit.scaling.names import canonical_name, modules_by_name
from deeplimit.scaling.record import HF_PLAN_KEY, PlanRecord


def check(plan: PlanRecord, model: nn.Module) -> None:
    """Raise a DeeplimitError naming every parameter that does not match (missing, extra, shape, ties),
    and the width/depth the model declares if they differ from the plan's."""
    have = {canonical_name(n): tuple(p.shape) for n, p in model.named_parameters()}
    first_name: dict[int, str] = {}
    model_aliases: dict[str, str] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        n = canonical_name(n)
        if id(p) in first_name and first_name[id(p)] != n:
            model_aliases[n] = first_name[id(p)]
        first_name.setdefault(id(p), n)
    plan_aliases = {a: n for n, p in plan.params.items() for a in p.aliases}
    missing = sorted(set(plan.params) - set(have))
    extra = sorted(set(have) - set(plan.params))
    shapes = sorted(n for n in set(have) & set(plan.params) if have[n] != tuple(plan.params[n].shape))
    ties = sorted(set(model_aliases.items()) ^ set(plan_aliases.items()))
    parts = []
    tied_missing = [n for n in missing if n in model_aliases]
    if tied_missing:
        parts.append("tied in the model but separate in the plan: " + ", ".join(
            f"{n} = {model_aliases[n]}" for n in tied_missing[:8]))
        missing = [n for n in missing if n not in model_aliases]
        ties = [t for t in ties if t[0] not in tied_missing]
    if missing:
        parts.append(f"in the plan but not the model: {missing[:8]}{' …' if len(missing) > 8 else ''}")
    if extra:
        parts.append(f"in the model but not the plan: {extra[:8]}{' …' if len(extra) > 8 else ''}")
    if shapes:
        parts.append("shape differs: " + ", ".join(
            f"{n} model {have[n]} vs plan {tuple(plan.params[n].shape)}" for n in shapes[:8]))
    if ties and not (missing or extra):
        parts.append("tied weights differ: " + ", ".join(f"{a} = {b}" for a, b in ties[:8]))
    width, depth = model_size(model)
    if width is not None and not math.isclose(float(width), plan.width, rel_tol=1e-12):
        parts.append(f"the model's width is {width:g}, the plan's {plan.width:g}")
    if depth is not None and int(depth) != plan.depth:
        parts.append(f"the model's depth is {depth}, the plan's {plan.depth}")
    if parts:
        raise DeeplimitError(
            "plan does not match the model (" + "; ".join(parts) + "). Fix: build the model with the same "
            "config as when the plan was saved, or make a new plan with deeplimit.make_plan(model, ...)")


def apply(plan: PlanRecord, model: nn.Module) -> nn.Module:
    """Set the forward multipliers on the model's modules (and hooks where a module's forward cannot read
    them; see :func:`deeplimit.nn.layers.carry_multipliers`). Idempotent. Returns the model."""
    plan.validate()
    check(plan, model)
    modules = modules_by_name(model)
    unknown = sorted(set(plan.multipliers) - set(modules))
    if unknown:
        raise DeeplimitError(f"module(s) {unknown[:4]} of the plan are missing from the model; rebuild the plan")
    for name, module in modules.items():
        attrs = plan.multipliers.get(name, {})
        if not attrs and not getattr(module, "dl_multiplier_attrs", ()):
            continue
        if plan.attention.get(name, {}).get("own_scale") is not None and not hasattr(module, "dl_own_scale"):
            module.dl_own_scale = plan.attention[name]["own_scale"]  # the model's own logit scale, kept once
        carry_multipliers(module, attrs)
    _record_in_hf_config(model, plan)
    return model


@torch.no_grad()
def initialize(plan: PlanRecord, model: nn.Module, seed: int | torch.Generator = 0) -> nn.Module:
    """Re-initialise every tensor with the plan's init, in ``named_parameters`` order.

    One CPU generator drives all draws in a fixed order, so at the base shape every rule gives
    bit-identical weights for the same seed (spec §8.3, base-shape identity). A tied tensor is drawn once.
    Sharded parameters (FSDP2 ``DTensor``) get the same full draw, distributed to their shards.
    """
    check(plan, model)
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    for name, p in model.named_parameters():
        pp = plan[name]
        if getattr(p, "_is_hf_initialized", False):
            del p._is_hf_initialized  # transformers' "loaded from a checkpoint" mark: the model is drawn now
        if pp.init == "keep":
            continue
        if pp.init == "zeros" or (pp.init == "normal" and pp.init_std == 0.0):
            p.zero_()
        elif pp.init == "ones":
            p.fill_(1.0)
        else:
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            draw = torch.randn(tuple(p.shape), generator=gen, dtype=dtype).mul_(pp.init_std)
            p.copy_(_like(draw, p))
    return model


def _record_in_hf_config(model: nn.Module, plan: PlanRecord) -> None:
    """A Hugging Face model carries its plan in ``config.deeplimit_plan`` (saved in config.json by
    ``save_pretrained``, restored by ``from_pretrained``), and its multipliers stay out of the weights file
    (``_keys_to_ignore_on_save``): ``from_pretrained`` then loads with no unexpected keys, and ``parametrize``
    restores the multipliers from the same arguments (checked against this record)."""
    if not hf.is_hf_model(model):
        return
    inner = hf.unwrap(model)
    setattr(inner.config, HF_PLAN_KEY, plan.to_dict())
    ours = {k for k in inner.state_dict(keep_vars=True) if STATE_KEY in k}
    inner._keys_to_ignore_on_save = set(getattr(inner, "_keys_to_ignore_on_save", None) or ()) | ours


def _like(draw: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``draw`` (a full tensor) placed like ``p``: same device and dtype, sharded like ``p`` if it is a DTensor."""
    draw = draw.to(device=p.device, dtype=p.dtype)
    if hasattr(p, "device_mesh") and hasattr(p, "placements"):
        try:
            from torch.distributed.tensor import distribute_tensor
        except ImportError:  # pragma: no cover - torch < 2.5
            raise DeeplimitError("parametrizing a sharded model needs torch >= 2.5 (torch.distributed.tensor); "
                                 "parametrize before fully_shard instead") from None
        return distribute_tensor(draw, p.device_mesh, p.placements)
    return draw
