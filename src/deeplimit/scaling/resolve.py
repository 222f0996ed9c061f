"""Resolving a rule for one model (the role of ``mup``'s ``_extract_shapes``): sizes, width multipliers, the
table's numbers per tensor and per multiplier site, attention scales and the rule's warnings.

Pure steps over a :class:`~deeplimit.scaling.classify.Layout`: :func:`deeplimit.scaling.plan.make_plan` runs them
in order and returns the :class:`~deeplimit.scaling.plan.Plan`. The formulas themselves live in :mod:`.table` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling import table
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.classify import AttentionSite, Layout, suggest_roles
from deeplimit.scaling.declared import declared_attr, model_size
from deeplimit.scaling.hparams import HParams
from deeplimit.scaling.record import ParamPlan, PlanRecord
from deeplimit.scaling.rules import OPTIMIZERS, Rule
from deeplimit.scaling.shapes import base_shapes, role_width_mults
from deeplimit.scaling.sigmas import SIGMA_OF, Sigmas, model_stds, resolve_init


def check_optimizer(optimizer: str) -> str:
    """The optimizer's key (``"sgd"``, ``"adam"``, ``"adamw"``, ``"muon"``), or a DeeplimitError naming them."""
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise DeeplimitError(f"optimizer {optimizer!r} is unknown; choose one of {OPTIMIZERS}")
    return key


def factors(rule: Rule, hp: HParams, optimizer: str, tensor: Any, *, m_L: float,
            global_m_N: float) -> tuple[float, float, float]:
    """(lr_scale, eps_scale, wd_scale) of one tensor: the LR, ε and λ columns of spec §4 for the torch optimizer
    that updates it (under ``"muon"``: Muon for hidden matrices, AdamW for the rest; optimizers spec §1–§3).

    ``tensor``: anything with the tensor's ``role``, ``in_block``, ``fan_in_mult``, ``fan_out_mult``, ``fan_in``,
    ``fan_out`` and ``shape`` (a :class:`ParamPlan` or a layout entry)."""
    role, in_block, shape = tensor.role, tensor.in_block, tuple(tensor.shape)
    fi, fo, fan_in, fan_out = tensor.fan_in_mult, tensor.fan_out_mult, tensor.fan_in, tensor.fan_out
    optimizer = table.param_optimizer(optimizer, role, len(shape))
    width_lr = table.width_lr(rule, optimizer, role, fi, fo)
    if optimizer == "muon":  # Muon's own eps only normalises Newton–Schulz: never scaled (ε factor 1)
        return (table.muon_lr_scale(rule, hp, in_block, fan_in, fan_out, shape, m_L), 1.0,
                table.wd_scale(rule, hp, role, width_lr))
    return (table.lr_scale(rule, optimizer, role, in_block, fi, fo, m_L),
            table.eps_scale(rule, in_block, table.tensor_width_mult(fi, fo), global_m_N, m_L),
            table.wd_scale(rule, hp, role, width_lr))


def reoptimized(plan: PlanRecord, optimizer: str) -> dict[str, ParamPlan]:
    """The plan's tensors with the LR, ε and λ factors of another optimizer (the columns that differ)."""
    params = {}
    for n, p in plan.params.items():
        lr, eps, wd = factors(plan.rule, plan.hparams, optimizer, p, m_L=plan.depth_mult, global_m_N=plan.width_mult)
        params[n] = replace(p, lr_scale=lr, eps_scale=eps, wd_scale=wd)
    return params


def given_sizes(model: nn.Module, width: float | None, depth: int | None) -> tuple[float | None, int | None]:
    """Width n and depth L: the ones given, else the model's declared ones; a contradiction is an error."""
    declared_width, declared_depth = model_size(model)
    for name, given, declared in (("width", width, declared_width), ("depth", depth, declared_depth)):
        if given is not None and declared is not None and float(given) != float(declared):
            raise DeeplimitError(f"{name}={given} contradicts the model's declared {name} {declared}; drop the "
                                 f"{name}= argument (or fix the model's {name} attribute / Structure)")
    return (width if width is not None else declared_width), (depth if depth is not None else declared_depth)


def base_width_of(rule: Rule, width: float | None, base_width: float | None, base: nn.Module | None,
                  notes: list[str]) -> tuple[float, float, dict | None, bool]:
    """``(width, base_width, base_shapes, infer_width)``: the base width n₀ from ``base_width`` or a ``base`` model
    (whose parameter shapes are returned); ``infer_width`` when only the shapes can tell m_N (a ``mup``-style pair
    of plain models: the caller reads it off the layout). No base width: base = target (decision D7)."""
    shapes, infer_width = None, False
    if base is not None:
        shapes = base_shapes(base)
        bw = model_size(base)[0]
        if width is None or bw is None:
            width, bw, infer_width = 1.0, 1.0, True
        base_width = bw
    else:
        if base_width is not None and width is None:
            raise DeeplimitError("base_width given but the model's width is unknown: pass width=n, give the model "
                                 "a 'width' attribute, or describe it with dl.declare_structure(model, "
                                 "dl.Structure(width=n, ...))")
        if base_width is None:
            if width is None:
                width = 1.0
            base_width = width
            if rule.is_mup:
                notes.append("no base width given: base = target, so every width factor is 1 (decision D7)")
    check_number("width", width, positive=True)
    check_number("base_width", base_width, positive=True)
    return width, base_width, shapes, infer_width


def refuse_unresolved(model: nn.Module, layout: Layout, width: float) -> None:
    """A DeeplimitError naming every parameter whose role is unknown, with a ``roles=`` guess to check."""
    if not layout.unresolved:
        return
    n = len(layout.unresolved)
    fix = suggest_roles(model, layout.unresolved, width)
    raise DeeplimitError(
        f"cannot tell the role of {n} parameter(s): {layout.unresolved[:10]}{' …' if n > 10 else ''}. Declare "
        f"them, e.g. roles={fix!r} (guessed from the shapes: check it; roles are input, hidden, readout, "
        "vector; fnmatch patterns allowed), or "
        "describe the model with dl.declare_structure(model, dl.Structure(blocks=..., branches=..., inputs=..., "
        "readouts=...)), use deeplimit.nn.Input/Readout/Residual, or pass base=<base-width model>")


def depths(rule: Rule, layout: Layout, depth: int | None, base_depth: int | None, base: nn.Module | None,
           notes: list[str]) -> tuple[int, int]:
    """``(depth, base_depth)``: L defaults to the residual blocks found, L₀ to the base model's, else to L (D7)."""
    if depth is None:
        depth = len(layout.blocks) or 1
    if base_depth is None:
        base_depth = model_size(base)[1] if base is not None else None
    if base_depth is None:
        base_depth = depth
        if rule.alpha != 0 or rule.gamma != 0:
            notes.append("no base depth given: base = target, so every depth factor is 1 (decision D7)")
    for name, value in (("depth", depth), ("base_depth", base_depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeeplimitError(f"{name} must be a positive integer, got {value!r}")
    return depth, base_depth


def sigmas_of(model: nn.Module, sigma_from: str, hparams: HParams | None, overrides: Mapping[str, float],
              base_width: float, base_depth: int) -> Sigmas:
    """The model's own base-shape stds (unless ``sigma_from="hparams"`` or every σ was given) and the σ's given."""
    if sigma_from not in ("model", "hparams"):
        raise DeeplimitError(f"sigma_from must be 'model' or 'hparams', got {sigma_from!r}")
    given = set(SIGMA_OF.values()) if hparams is not None else set(overrides) & set(SIGMA_OF.values())
    read_own = sigma_from == "model" and given != set(SIGMA_OF.values())
    return Sigmas(model_stds(model, base_width, base_depth) if read_own else {}, given)


def set_width_mults(layout: Layout, m_N: float) -> None:
    """Each tensor's fan-in and fan-out multipliers from its role (when no base model gave them by shape)."""
    for site in layout.params:
        site.fan_in_mult, site.fan_out_mult = role_width_mults(site.role, m_N, site.kind == "readout_bias")


def resolve(rule: Rule, optimizer: str, m_N: float, m_L: float, hp: HParams, layout: Layout,
            sigmas: Sigmas) -> tuple[dict[str, ParamPlan], dict[str, dict[str, float]], dict[str, dict]]:
    """Evaluate the implementation table (depth-mup spec §4) for every tensor and every multiplier site.

    Returns ``(params, multipliers, attention)``: one :class:`ParamPlan` per tensor, the forward multipliers per
    module, and heads and logit scale per attention module (the fields of a plan that depend on the model).
    """
    params: dict[str, ParamPlan] = {}
    for s in layout.params:
        fi, fo = s.fan_in_mult, s.fan_out_mult
        std, source = resolve_init(rule, hp, s, sigmas)
        lr, eps, wd = factors(rule, hp, optimizer, s, m_L=m_L, global_m_N=m_N)
        params[s.name] = ParamPlan(s.name, s.role, s.in_block, s.shape, s.fan_in, s.fan_out, fi, fo, s.init, std,
                                   lr, eps, wd, s.aliases, source)

    multipliers: dict[str, dict[str, float]] = {}
    for site in layout.multipliers:
        if site.kind == "branch":
            value = table.branch_mult(rule, hp, m_L)
        elif site.kind == "input":
            power = layout.structure.input_scales.get(site.module, 0.0) if layout.structure is not None else 0.0
            value = table.input_mult(rule, hp) * table.input_scale_correction(rule, m_N, power)
        elif site.kind == "router":
            value = table.router_mult(rule, params[site.weight].width_mult)
        else:
            w = params.get(site.weight) if site.weight else None
            value = table.readout_mult(rule, hp, w.width_mult if w is not None else m_N)
        multipliers.setdefault(site.module, {})[site.attr] = value

    head_growth = layout.structure.head_growth if layout.structure is not None else "head_dim"
    attention = {}
    for site in layout.attention:
        info = _attention(rule, hp, site, m_N, head_growth)
        attention[site.module] = info
        if site.scale_attr is not None:
            multipliers.setdefault(site.module, {})[site.scale_attr] = info["scale"]
    return params, multipliers, attention


def _attention(rule: Rule, hp: HParams, site: AttentionSite, m_N: float, head_growth: str) -> dict:
    """Heads and logit scale of one attention module (spec §5.1), checked for a base shape that can exist."""
    h0, d0 = table.base_heads(site.n_heads, site.head_dim, m_N, head_growth)
    info = {"n_heads": site.n_heads, "n_kv_heads": site.n_kv_heads, "head_dim": site.head_dim,
            "base_head_dim": d0, "base_n_heads": h0, "head_growth": head_growth, "own_scale": site.own_scale}
    if site.config is not None:  # deeplimit's MultiHeadAttention keeps its config-driven scale
        return {**info, "scale": site.own_scale, "law": site.config, "set_by": "model config"}
    for what, value in (("head_dim", d0), ("n_heads", h0)):
        if abs(value - round(value)) > 1e-9 or round(value) < 1:
            other = "heads" if head_growth == "head_dim" else "head_dim"
            raise DeeplimitError(
                f"attention {site.module}: the base {what} would be {value:g} (width multiplier m_N={m_N:g} with "
                f"{head_growth} growing), which no base model has; choose base_width so that it is a whole number, "
                f"or declare Structure(head_growth={other!r})")
    scale = table.attention_scale(rule, hp, site.head_dim, d0, site.own_scale)
    if site.scale_attr is None and not math.isclose(scale, site.own_scale, rel_tol=1e-12):
        raise DeeplimitError(
            f"attention {site.module} has no settable logit scale (AttentionSpec scale_attr=None), but the rule needs "
            f"{scale:.6g} instead of its own {site.own_scale:.6g}; name the attribute its forward multiplies q·k by "
            "(AttentionSpec(scale_attr=...)), or keep the model's scale with attn_scale='sqrt' and attn_mult=1")
    return {**info, "scale": scale, "law": rule.attention, "set_by": site.scale_attr or "model (unchanged)"}


def rule_warnings(model: nn.Module, rule: Rule, k: int, has_blocks: bool, family: str | None) -> list[str]:
    """Warnings of the depth-mup spec §9 (the model may add its own via ``dl_rule_warnings(rule)``)."""
    if not has_blocks:
        return []
    out = []
    if k >= 2 and rule.alpha < 1:
        out.append(f"block depth {k} with alpha={rule.alpha:g}: TP6 §9: no LR/multiplier transfer guarantee for "
                   "block depth >= 2; use 'completep' or measure eta* drift")
    if k >= 2 and rule.alpha == 1 and family != "transformer":
        what = f"a {family} model" if family else "a model of unknown family"
        out.append(f"alpha=1 with block depth >= 2 on {what}: CompleteP evidence is for pre-LN transformers (if "
                   "this is a transformer, declare it: dl.declare_structure(model, dl.Structure(family="
                   "'transformer', ...)) or set model.dl_family = 'transformer')")
    if k == 1 and rule.alpha == 1 and family in ("resnet", None):  # block depth 1 is the TP6 family's shape
        out.append("alpha=1 on a block-depth-1 resnet: TP6 Fig. 11: eta* increases with depth in this family")
    extra = declared_attr(model, "dl_rule_warnings")
    if callable(extra):
        out += list(extra(rule))
    return out
