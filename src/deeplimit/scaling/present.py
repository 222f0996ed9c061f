"""The printed plan: "which table does it use?" answered per tensor, with the attention scale and ties stated."""

from __future__ import annotations

import re

from deeplimit.nn.layers import FORWARD_ATTRS
from deeplimit.scaling import table as formulas
from deeplimit.scaling.groups import (
    check_base_values,
    muon_fallbacks,
    resolve_decay,
    tensor_optimizer,
    tensor_weight_decay,
)
from deeplimit.scaling.names import parent
from deeplimit.scaling.record import PlanRecord


def forward_mults(plan: PlanRecord) -> dict[str, float]:
    """Forward multiplier acting on each tensor's output: the product over the modules that contain it
    (branch, input or readout multiplier; logit scales are not forward multipliers)."""
    own: dict[str, float] = {}
    for mod, attrs in plan.multipliers.items():
        mult = 1.0
        for attr, value in attrs.items():
            if attr in FORWARD_ATTRS:
                mult *= value
        own[mod] = mult
    # each tensor walks its own ancestors (linear in depth, not modules × tensors)
    res: dict[str, float] = {}
    for name in plan.params:
        mult, mod = own.get("", 1.0), name.rpartition(".")[0]
        while mod:
            mult *= own.get(mod, 1.0)
            mod = mod.rpartition(".")[0]
        res[name] = mult
    return res


def rows(plan: PlanRecord, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
         **decay: float | None) -> list[dict]:
    """One dict per tensor with the resolved numbers (absolute when ``lr`` is given).

    ``optimizer`` names the torch optimizer that updates the tensor. ``lr`` is the group LR torch is given;
    ``lr_effective`` = ``lr`` × ``torch_factor``, the factor the optimizer applies itself (torch Muon's
    ``adjust_lr_fn``; 1 elsewhere), i.e. the step size actually applied. ``decay`` takes the weight-decay
    timescale options of :func:`deeplimit.scaling.groups.resolve_decay`; λ is then 1/(η_g·τ) per tensor.
    """
    spec = resolve_decay(plan.optimizer, weight_decay, **decay)
    check_base_values(lr, eps, spec.weight_decay)
    mults = forward_mults(plan)
    out = []
    for pp in plan.params.values():
        opt = tensor_optimizer(plan, pp)
        adam = opt in ("adam", "adamw")
        torch_factor = formulas.muon_torch_factor(pp.shape) if opt == "muon" else 1.0
        row = {
            "name": pp.name, "role": pp.role_label, "shape": "x".join(map(str, pp.shape)) or "scalar",
            "optimizer": opt, "m_N": pp.width_mult,
            "init": pp.init if pp.init != "normal" else f"N(0,{pp.init_std:.4g}^2)",
            "init_std": pp.init_std, "forward_mult": mults.get(pp.name, 1.0),
            "lr_scale": pp.lr_scale, "torch_factor": torch_factor, "eps_scale": pp.eps_scale if adam else None,
            "wd_scale": pp.wd_scale, "tied_to": list(pp.aliases), "init_source": pp.init_source,
        }
        if lr is not None:
            row["lr"] = lr * pp.lr_scale
            row["lr_effective"] = row["lr"] * torch_factor
            row["eps"] = eps * pp.eps_scale if adam else None
            row["weight_decay"] = tensor_weight_decay(plan, pp, lr, spec)
            wd_rate = row["lr"] * row["weight_decay"]
            row["wd_timescale"] = 1.0 / wd_rate if wd_rate > 0 else None
        out.append(row)
    return out


def _pattern(name: str) -> str:
    return re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "*", name)


def attention_lines(plan: PlanRecord) -> list[str]:
    """One line per distinct attention setting: heads, which dim grows with width, the logit scale law and value."""
    groups: dict[tuple, list[str]] = {}
    for module, a in plan.attention.items():
        key = tuple(sorted((k, v) for k, v in a.items()))
        groups.setdefault(key, []).append(module)
    out = []
    for key, modules in groups.items():
        a = dict(key)
        names = sorted({_pattern(m) for m in modules})
        grows = ("head_dim grows with width (heads fixed)" if a["head_growth"] == "head_dim"
                 else "heads grow with width (head_dim fixed)")
        kv = f", H_kv={a['n_kv_heads']} (GQA)" if a["n_kv_heads"] != a["n_heads"] else ""
        if a["set_by"] == "model config":
            law = f"logit_scale={a['law']!r} from the model's config"
        elif a["law"] == "mup":
            law = "muP attn_mult*sqrt(d0)/d"
        else:
            law = "attn_mult/sqrt(d)"
        out.append(f"attention {', '.join(names)} ({len(modules)} module{'s' if len(modules) > 1 else ''}): "
                   f"H={a['n_heads']}{kv}, d_head={a['head_dim']} (base {a['base_head_dim']:g}; {grows}); "
                   f"logit scale {law} = {a['scale']:.6g}, set on {a['set_by']}")
    return out


def multiplier_lines(plan: PlanRecord) -> list[str]:
    """Which modules carry which multiplier, and whether their forward or a deeplimit hook applies it."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for module, attrs in plan.multipliers.items():
        for attr, value in attrs.items():
            if attr.startswith("dl_"):
                kinds.setdefault((attr[3:], f"{value:.6g}, forward hook"), []).append(module)
    out = []
    for (attr, how), modules in sorted(kinds.items()):
        names = sorted({_pattern(m) for m in modules})
        out.append(f"{attr} = {how} on {', '.join(names)} ({len(modules)} module{'s' if len(modules) > 1 else ''})")
    for pp in plan.params.values():
        for alias in pp.aliases:
            mult = plan.multipliers.get(parent(alias), {})
            value = mult.get("output_mult", mult.get("dl_output_mult"))
            how = f"; readout multiplier {value:.6g} in {parent(alias) or 'the root'}'s forward" if value else ""
            out.append(f"tied: {alias} is {pp.name} (one tensor: {pp.role} init and LR, never rescaled{how})")
    return out


def init_source_lines(plan: PlanRecord) -> list[str]:
    """Where each normal-initialised tensor's base-shape σ came from (the model's own init, a given σ, a default),
    one line per source with the tensors as patterns."""
    by_source: dict[str, list[str]] = {}
    for pp in plan.params.values():
        if pp.init == "normal" and pp.init_source:
            by_source.setdefault(pp.init_source, []).append(pp.name)
    out = []
    for source, names in by_source.items():
        patterns = sorted({_pattern(n) for n in names})
        shown = ", ".join(patterns[:6]) + (" …" if len(patterns) > 6 else "")
        out.append(f"init std at the base shape from {source}: {shown} ({len(names)} tensor"
                   f"{'s' if len(names) > 1 else ''}; other widths by the rule's law)")
    return out


def summary(plan: PlanRecord) -> str:
    """The rule, shapes and multipliers in a few lines (plus the attention scale when the model has attention)."""
    r = plan.rule
    head = (f"rule {r.name} (width {r.width}, alpha={r.alpha:g}, gamma={r.gamma:g}, eps scope {r.eps_scope}, "
            f"weight decay {r.wd_mode}, attention {r.attention}); optimizer {plan.optimizer}; "
            f"width {plan.width:g} / base {plan.base_width:g} (m_N={plan.width_mult:g}); depth {plan.depth} / base "
            f"{plan.base_depth} (m_L={plan.depth_mult:g}, L counts residual blocks); block depth {plan.block_depth}; "
            f"branch multiplier a*m_L^-alpha = {plan.branch_mult:.6g}")
    if plan.source:
        head += f"; structure from {plan.source}"
    return "\n".join([head, *attention_lines(plan), *multiplier_lines(plan)])


def table(plan: PlanRecord, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
          **decay: float | None) -> str:
    """Human-readable table: the answer to "which table does it use?".

    A Muon plan adds the optimizer of each tensor, torch's own LR factor (``x_torch``) and the effective LR;
    a weight-decay timescale adds τ per tensor (``tau_steps``) beside the λ it gives.
    """
    data = rows(plan, lr, eps, weight_decay, **decay)
    muon = plan.optimizer == "muon"
    timed = decay.get("wd_timescale") is not None or decay.get("wd_timescale_fraction") is not None
    cols = ["name", "role", "shape"] + (["optimizer"] if muon else []) + ["m_N", "init", "forward_mult"]
    if lr is not None:
        cols += ["lr"] + (["torch_factor", "lr_effective"] if muon else []) + ["eps", "weight_decay"]
        cols += ["wd_timescale"] if timed else []
    else:
        cols += ["lr_scale"] + (["torch_factor"] if muon else []) + ["eps_scale", "wd_scale"]
    if plan.optimizer == "sgd":
        cols = [c for c in cols if not c.startswith("eps")]
    header = {"torch_factor": "x_torch", "lr_effective": "lr_effective", "wd_timescale": "tau_steps"}

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r[c]) for c in cols] for r in data]
    names = [header.get(c, c) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(names)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    out = [summary(plan), line(names), line(["-" * w for w in widths])] + [line(c) for c in cells]
    if muon:
        out.append("note: Muon tensors: torch.optim.Muon(adjust_lr_fn='original') multiplies the group lr by "
                   "x_torch = sqrt(max(1, A/B)); the plan divides it out, so lr_effective = lr * x_torch is the "
                   "rule's step (muP: base lr * sqrt(fan_out/fan_in) * depth factor), applied once")
        fallback = muon_fallbacks(plan)
        if fallback:
            out.append(f"note: hidden tensor(s) {fallback[:6]} are not 2-D: torch.optim.Muon cannot take them, "
                       "so they are on AdamW with the muP Adam rule (make_optimizer(muon_fallback=False) refuses)")
    out += [f"note: {n}" for n in init_source_lines(plan)]
    out += [f"note: {n}" for n in plan.notes]
    return "\n".join(out)
