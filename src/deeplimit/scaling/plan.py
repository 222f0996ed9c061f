"""The resolved plan: one row per parameter (role, fans, multipliers, init std, LR/ε/λ factors).

``make_plan(model, rule, base_width=…, base_depth=…)`` walks the model once and resolves the
implementation table of the depth-mup spec §4 for every parameter, keyed by its fully-qualified name.
The plan lives *beside* the model (JSON next to a checkpoint), never on ``nn.Parameter``; names are
canonicalised so DDP (``module.``), ``torch.compile`` (``_orig_mod.``) and FSDP prefixes do not matter.

Canonical form (decision D1, ``readout_mult``): the readout keeps a width-independent init and Adam LR and
its forward pass is multiplied by ``m_N^{-1}``. At the base shape every factor is 1, so every rule reduces
to the base model.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from deeplimit.errors import DeeplimitError, check_positive, warn
from deeplimit.nn.layers import ROLES
from deeplimit.scaling.rules import OPTIMIZERS, Rule, get_rule

PLAN_VERSION = 1
_WRAPPER_PARTS = {"module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_forward_module"}
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.RMSNorm)


def canonical_name(name: str) -> str:
    """Drop wrapper components (DDP ``module.``, compile ``_orig_mod.``, FSDP, checkpoint wrappers)."""
    return ".".join(p for p in name.split(".") if p not in _WRAPPER_PARTS)


@dataclass(frozen=True)
class HParams:
    """Base-shape hyperparameters (tuned at (n₀, L₀), transferred by the rule)."""

    block_mult: float = 1.0  # a: every residual branch × a·m_L^{-α}
    input_mult: float = 1.0
    output_mult: float = 1.0
    sigma_in: float = 1.0  # input std σ_in/√d_in
    sigma_hidden: float = 1.0  # hidden std σ_W/√fan_in (TP6: σ_W = 1)
    sigma_out: float = 1.0  # readout std σ_out/√n₀
    sigma_emb: float = 1.0  # embedding tables: std σ_emb
    readout_zero_init: bool = False  # decision D10
    decay_vectors: bool = False  # decision D4: vectors never decay by default


@dataclass(frozen=True)
class ParamPlan:
    """Everything the rule says about one parameter (factors are relative to the base η, ε, λ)."""

    name: str
    role: str
    in_block: bool
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    fan_in_mult: float
    fan_out_mult: float
    init: str  # "normal" | "zeros" | "ones" | "keep"
    init_std: float
    lr_scale: float
    eps_scale: float
    wd_scale: float  # multiplies λ (0: not decayed); for mode "independent" also ÷ base LR at group build

    @property
    def width_mult(self) -> float:
        """m_N of this tensor: its fan-in multiplier if fan-in scales, else its fan-out multiplier (as mup)."""
        return self.fan_in_mult if self.fan_in_mult != 1.0 else self.fan_out_mult

    @property
    def role_label(self) -> str:
        if self.role == "vector":
            return "block-vector" if self.in_block else "outer-vector"
        if self.role == "hidden" and not self.in_block:
            return "hidden (outside blocks)"
        return self.role


@dataclass
class Plan:
    """A resolved parametrization of one model. Build it with :func:`make_plan`."""

    rule: Rule
    optimizer: str
    width: float
    base_width: float
    depth: int
    base_depth: int
    hparams: HParams
    params: dict[str, ParamPlan]
    multipliers: dict[str, dict[str, float]]
    block_depth: int = 1
    notes: list[str] = field(default_factory=list)

    # --- derived scalars -------------------------------------------------------------------------
    @property
    def width_mult(self) -> float:
        return self.width / self.base_width

    @property
    def depth_mult(self) -> float:
        return self.depth / self.base_depth

    @property
    def branch_mult(self) -> float:
        """a · m_L^{-α} (spec §3 (b))."""
        return self.hparams.block_mult * self.depth_mult ** (-self.rule.alpha)

    def __getitem__(self, name: str) -> ParamPlan:
        key = canonical_name(name)
        if key not in self.params:
            raise DeeplimitError(
                f"parameter {name!r} is not in the plan (plan has {len(self.params)} parameters); the plan was made "
                "for "
                "another model — rebuild it with make_plan(model, ...) or load the plan saved with this checkpoint")
        return self.params[key]

    # --- applying the plan -------------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Raise a DeeplimitError naming every parameter that does not match (missing, extra, shape)."""
        have = {canonical_name(n): tuple(p.shape) for n, p in model.named_parameters()}
        missing = sorted(set(self.params) - set(have))
        extra = sorted(set(have) - set(self.params))
        shapes = sorted(n for n in set(have) & set(self.params) if have[n] != tuple(self.params[n].shape))
        if missing or extra or shapes:
            parts = []
            if missing:
                parts.append(f"in the plan but not the model: {missing[:8]}{' …' if len(missing) > 8 else ''}")
            if extra:
                parts.append(f"in the model but not the plan: {extra[:8]}{' …' if len(extra) > 8 else ''}")
            if shapes:
                parts.append("shape differs: " + ", ".join(
                    f"{n} model {have[n]} vs plan {tuple(self.params[n].shape)}" for n in shapes[:8]))
            raise DeeplimitError(
                "plan does not match the model (" + "; ".join(parts) + "). Fix: build the model with the same "
                "config as when the plan was saved, or make a new plan with deeplimit.make_plan(model, ...)")

    def apply(self, model: nn.Module) -> nn.Module:
        """Set the forward multipliers (plain floats) on the model's modules. Returns the model."""
        self.check(model)
        modules = {canonical_name(n): m for n, m in model.named_modules()}
        for name, attrs in self.multipliers.items():
            if name not in modules:
                raise DeeplimitError(f"module {name!r} of the plan is missing from the model; rebuild the plan")
            for attr, value in attrs.items():
                setattr(modules[name], attr, float(value))
        return model

    @torch.no_grad()
    def initialize(self, model: nn.Module, seed: int | torch.Generator = 0) -> nn.Module:
        """Re-initialise every parameter with the plan's init, in ``named_parameters`` order.

        One CPU generator drives all draws in a fixed order, so at the base shape every rule gives
        bit-identical weights for the same seed (spec §8.3, base-shape identity).
        """
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        for name, p in model.named_parameters():
            pp = self[name]
            if pp.init == "keep":
                continue
            if pp.init == "zeros" or (pp.init == "normal" and pp.init_std == 0.0):
                p.zero_()
            elif pp.init == "ones":
                p.fill_(1.0)
            else:
                draw = torch.randn(p.shape, generator=gen, dtype=torch.float64 if p.dtype == torch.float64 else
                                   torch.float32)
                p.copy_(draw.mul_(pp.init_std).to(device=p.device, dtype=p.dtype))
        return model

    # --- optimizer groups ----------------------------------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, *, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict]:
        """Parameter groups for ``torch.optim`` (SGD/Adam/AdamW), one per distinct (LR, ε, λ) factor.

        Each group stores ``lr_scale``; ``group["lr"] = lr · lr_scale``. Schedulers that multiply group LRs
        (LambdaLR, cosine, …) therefore keep the per-group factors; code that sets a new base LR should call
        :func:`set_base_lr` (decision D12). Frozen parameters (``requires_grad=False``) are left out.
        """
        check_positive("lr", lr)
        if weight_decay < 0:
            raise DeeplimitError(f"weight_decay must be >= 0, got {weight_decay}")
        groups: dict[tuple, dict] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            pp = self[name]
            wd = weight_decay * pp.wd_scale
            if self.rule.wd_mode == "independent" and pp.wd_scale:
                # u-μP independent decay: λ / lr_g(0), so the per-step decay λ·s(t) ignores η and scaling.
                wd = weight_decay / (lr * pp.lr_scale)
            # One group per distinct (LR, ε, λ): fewer groups, fewer fused-kernel launches per optimizer step.
            key = (round(pp.lr_scale, 12), round(pp.eps_scale, 12), round(wd, 15))
            if key not in groups:
                g = {"params": [], "lr": lr * pp.lr_scale, "lr_scale": pp.lr_scale, "weight_decay": wd,
                     "dl_group": pp.role_label, "param_names": []}
                if self.optimizer != "sgd":
                    g["eps"] = eps * pp.eps_scale
                groups[key] = g
            elif pp.role_label not in groups[key]["dl_group"].split("+"):
                groups[key]["dl_group"] += "+" + pp.role_label
            groups[key]["params"].append(p)
            groups[key]["param_names"].append(canonical_name(name))
        return list(groups.values())

    # --- presentation --------------------------------------------------------------------------------
    def rows(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float = 0.0) -> list[dict]:
        """One dict per parameter with the resolved numbers (absolute when ``lr`` is given)."""
        modules_mult = self._param_forward_mults()
        out = []
        for pp in self.params.values():
            wd = weight_decay * pp.wd_scale
            if self.rule.wd_mode == "independent" and pp.wd_scale and lr:
                wd = weight_decay / (lr * pp.lr_scale)
            row = {
                "name": pp.name, "role": pp.role_label, "shape": "x".join(map(str, pp.shape)) or "scalar",
                "m_N": pp.width_mult, "init": pp.init if pp.init != "normal" else f"N(0,{pp.init_std:.4g}^2)",
                "init_std": pp.init_std, "forward_mult": modules_mult.get(pp.name, 1.0),
                "lr_scale": pp.lr_scale, "eps_scale": pp.eps_scale if self.optimizer != "sgd" else None,
                "wd_scale": pp.wd_scale,
            }
            if lr is not None:
                row["lr"] = lr * pp.lr_scale
                row["eps"] = eps * pp.eps_scale if self.optimizer != "sgd" else None
                row["weight_decay"] = wd
            out.append(row)
        return out

    def _param_forward_mults(self) -> dict[str, float]:
        """Forward multiplier that acts on each parameter's output (block branch, input or readout)."""
        res: dict[str, float] = {}
        for mod, attrs in self.multipliers.items():
            mult = math.prod(attrs.values())
            prefix = mod + "." if mod else ""
            for name in self.params:
                if name.startswith(prefix):
                    res[name] = res.get(name, 1.0) * mult
        return res

    def summary(self) -> str:
        r = self.rule
        return (f"rule {r.name} (width {r.width}, alpha={r.alpha:g}, gamma={r.gamma:g}, "
                f"eps scope {r.eps_scope}, "
                f"weight decay {r.wd_mode}); optimizer {self.optimizer}; "
                f"width {self.width:g} / base {self.base_width:g}"
                f" (m_N={self.width_mult:g}); depth {self.depth} / base {self.base_depth} (m_L={self.depth_mult:g}, "
                f"L counts residual blocks); block depth {self.block_depth}; branch multiplier a*m_L^-alpha = "
                f"{self.branch_mult:.6g}")

    def table(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float = 0.0) -> str:
        """Human-readable table: the answer to "which table does it use?"."""
        rows = self.rows(lr, eps, weight_decay)
        cols = ["name", "role", "shape", "m_N", "init", "forward_mult"]
        cols += (["lr", "eps", "weight_decay"] if lr is not None else ["lr_scale", "eps_scale", "wd_scale"])
        if self.optimizer == "sgd":
            cols = [c for c in cols if not c.startswith("eps")]

        def fmt(v: object) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            return "-" if v is None else str(v)

        cells = [[fmt(r[c]) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
        out = [self.summary(), line(cols), line(["-" * w for w in widths])] + [line(c) for c in cells]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    # --- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "rule": self.rule.to_dict(),
            "optimizer": self.optimizer,
            "width": self.width, "base_width": self.base_width,
            "depth": self.depth, "base_depth": self.base_depth,
            "block_depth": self.block_depth,
            "hparams": asdict(self.hparams),
            "multipliers": self.multipliers,
            "params": [{**asdict(p), "shape": list(p.shape)} for p in self.params.values()],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Plan:
        if d.get("version") != PLAN_VERSION:
            raise DeeplimitError(f"plan version {d.get('version')!r} is not supported (expected {PLAN_VERSION})")
        params = {p["name"]: ParamPlan(**{**p, "shape": tuple(p["shape"])}) for p in d["params"]}
        return cls(rule=Rule(**d["rule"]), optimizer=d["optimizer"], width=d["width"], base_width=d["base_width"],
                   depth=d["depth"], base_depth=d["base_depth"], hparams=HParams(**d["hparams"]), params=params,
                   multipliers={k: dict(v) for k, v in d["multipliers"].items()}, block_depth=d["block_depth"],
                   notes=list(d.get("notes", [])))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        if not path.exists():
            raise DeeplimitError(f"plan file {path} does not exist; save one with plan.save(path)")
        return cls.from_dict(json.loads(path.read_text()))

    def with_optimizer(self, optimizer: str) -> Plan:
        """The same plan for another optimizer (the LR and ε columns differ between SGD and Adam)."""
        optimizer = optimizer.lower()
        if optimizer not in OPTIMIZERS:
            raise DeeplimitError(f"optimizer {optimizer!r} is unknown; choose one of {OPTIMIZERS}")
        params = {}
        for n, p in self.params.items():
            lr, eps, wd = _factors(self.rule, optimizer, p.role, p.in_block, p.fan_in_mult, p.fan_out_mult,
                                   self.depth_mult, self.width_mult, self.hparams)
            params[n] = replace(p, lr_scale=lr, eps_scale=eps, wd_scale=wd)
        return replace(self, optimizer=optimizer, params=params, multipliers=dict(self.multipliers),
                       notes=list(self.notes))

# --------------------------------------------------------------------------------------------------------
# Building a plan
# --------------------------------------------------------------------------------------------------------
@dataclass
class _Layout:
    """Structural facts about a parameter, before any rule is applied."""

    name: str
    role: str
    in_block: bool
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    fan_in_mult: float
    fan_out_mult: float
    init: str
    init_mult: float  # extra std factor declared by the module (e.g. zero queries: 0)
    module_kind: str | None  # "embedding", "norm", "readout_module", … for init decisions


def _fans(module: nn.Module, pname: str, p: torch.Tensor) -> tuple[int, int]:
    if p.ndim == 0:
        return 1, 1
    if p.ndim == 1:
        return 1, p.shape[0]
    if isinstance(module, nn.Embedding) and pname == "weight":
        return p.shape[0], p.shape[1]  # (num_embeddings, dim): the table's "output" is the embedding dim
    return math.prod(p.shape[1:]), p.shape[0]


def _block_prefixes(model: nn.Module) -> dict[str, int]:
    return {canonical_name(n): int(m.dl_block_depth) for n, m in model.named_modules()
            if getattr(m, "dl_block_depth", None) is not None}


def _in_block(module_name: str, blocks: dict[str, int]) -> bool:
    return any(module_name == b or module_name.startswith(b + ".") for b in blocks if b != "")


def _base_lookup(base: nn.Module) -> dict[str, tuple[int, ...]]:
    return {canonical_name(n): tuple(p.shape) for n, p in base.named_parameters()}


def _base_shape(name: str, base_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    if name in base_shapes:
        return base_shapes[name]
    # A shallower base has fewer blocks: match ``blocks.31.w`` to ``blocks.0.w`` (same layer type, same fans).
    generic = re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "0", name)
    return base_shapes.get(generic)


def _classify(model: nn.Module, overrides: Mapping[str, str],
              base_shapes: dict | None) -> tuple[list[_Layout], list[str]]:
    blocks = _block_prefixes(model)
    layout: list[_Layout] = []
    unresolved: list[str] = []
    for mname, module in model.named_modules():
        cm = canonical_name(mname)
        declared = getattr(module, "dl_roles", {}) or {}
        init_mults = getattr(module, "dl_init_mult", {}) or {}
        for pname, p in module.named_parameters(recurse=False):
            name = f"{cm}.{pname}" if cm else pname
            in_block = _in_block(cm, blocks)
            fan_in, fan_out = _fans(module, pname, p)
            role = None
            for pattern, r in overrides.items():
                if fnmatch.fnmatchcase(name, pattern):
                    role = r
                    break
            if role is None:
                role = declared.get(pname)
            if role is None:
                if isinstance(module, _NORMS) or p.ndim <= 1:
                    role = "vector"
                elif isinstance(module, nn.Embedding):
                    role = "input"
                elif in_block:
                    role = "hidden"
                elif base_shapes is not None:
                    bs = _base_shape(name, base_shapes)
                    if bs is not None and len(bs) == p.ndim:
                        out_inf, in_inf = bs[0] != p.shape[0], math.prod(bs[1:]) != fan_in
                        role = {(True, True): "hidden", (True, False): "input", (False, True): "readout"}.get(
                            (out_inf, in_inf))
            if role is None:
                unresolved.append(name)
                continue
            if role not in ROLES:
                raise DeeplimitError(f"role {role!r} for {name} is unknown; roles are {ROLES}")
            if isinstance(module, _NORMS):
                kind, init = "norm", ("ones" if pname == "weight" else "zeros")
            elif role == "vector":
                kind, init = "vector", ("zeros" if pname == "bias" else "keep")
            else:
                kind = "embedding" if isinstance(module, nn.Embedding) else None
                init = "normal"
            if declared.get("weight") == "readout" and role == "vector":
                kind = "readout_module"  # e.g. the readout's bias: d_out entries, a finite dim
            layout.append(_Layout(name, role, in_block, tuple(p.shape), fan_in, fan_out, 1.0, 1.0, init,
                                  float(init_mults.get(pname, 1.0)), kind))
    return layout, unresolved


def _set_width_mults(layout: list[_Layout], m_N: float, base_shapes: dict | None, readout_bias: set[str]) -> None:
    for lay in layout:
        if base_shapes is not None:
            bs = _base_shape(lay.name, base_shapes)
            if bs is None:
                raise DeeplimitError(
                    f"parameter {lay.name!r} has no counterpart in the base model; the base must have the same "
                    "architecture (fewer blocks is fine) — build it from the same config with the base width")
            if lay.shape and bs:
                if lay.role == "input" and lay.module_kind == "embedding":
                    base_fan_in, base_fan_out = bs[0], bs[1]
                elif len(bs) >= 2:
                    base_fan_in, base_fan_out = math.prod(bs[1:]), bs[0]
                else:
                    base_fan_in, base_fan_out = 1, bs[0]
                lay.fan_in_mult = lay.fan_in / base_fan_in
                lay.fan_out_mult = lay.fan_out / base_fan_out
            continue
        role = lay.role
        if role == "hidden":
            lay.fan_in_mult = lay.fan_out_mult = m_N
        elif role == "input":
            lay.fan_out_mult = m_N
        elif role == "readout":
            lay.fan_in_mult = m_N
        elif role == "vector" and lay.shape and lay.name not in readout_bias:
            lay.fan_out_mult = m_N


def _resolve(rule: Rule, optimizer: str, width: float, base_width: float, depth: int, base_depth: int,
             hp: HParams, layout: list[_Layout], block_depth: int, notes: list[str],
             module_roles: dict[str, list[str]]) -> Plan:
    """Apply the implementation table (depth-mup spec §4) to every parameter."""
    mup = rule.is_mup
    m_L = depth / base_depth
    params: dict[str, ParamPlan] = {}
    for lay in layout:
        role, fi, fo = lay.role, lay.fan_in_mult, lay.fan_out_mult
        # --- init std -----------------------------------------------------------------------------
        init, std = lay.init, 0.0
        if init == "normal":
            if lay.module_kind == "embedding":
                std = hp.sigma_emb
            elif role == "input":
                std = hp.sigma_in / math.sqrt(lay.fan_in)
            elif role == "hidden":
                std = hp.sigma_hidden / math.sqrt(lay.fan_in)
            elif role == "readout":
                if hp.readout_zero_init:
                    std = 0.0
                else:  # μP: σ_out/√n₀ (constant in n); SP: σ_out/√(actual fan_in). Equal at the base shape.
                    std = hp.sigma_out / math.sqrt(lay.fan_in / fi if mup else lay.fan_in)
            else:
                std = hp.sigma_hidden / math.sqrt(lay.fan_in)
            std *= lay.init_mult
        lr_scale, eps_scale, wd_scale = _factors(rule, optimizer, role, lay.in_block, fi, fo, m_L,
                                                 width / base_width, hp)
        params[lay.name] = ParamPlan(lay.name, role, lay.in_block, lay.shape, lay.fan_in, lay.fan_out, fi, fo,
                                     init, std, lr_scale, eps_scale, wd_scale)
    plan = Plan(rule, optimizer, float(width), float(base_width), int(depth), int(base_depth), hp, params, {},
                block_depth, list(notes))
    plan.multipliers = _multipliers(plan, module_roles)
    return plan


def _factors(rule: Rule, optimizer: str, role: str, in_block: bool, fi: float, fo: float, m_L: float,
             global_m_N: float, hp: HParams) -> tuple[float, float, float]:
    """(lr_scale, eps_scale, wd_scale) of one parameter: the LR, ε and λ columns of spec §4."""
    mup = rule.is_mup
    a, g = rule.alpha, rule.gamma
    m_N = fi if fi != 1.0 else fo
    if optimizer == "sgd":
        if not mup:
            width_lr = 1.0
        elif role == "hidden":
            width_lr = fo / fi  # MuSGD: ÷ (fan_in_mult / fan_out_mult); 1 when all dims scale together
        else:
            width_lr = m_N  # input, readout and vectors: η·m_N
        depth_lr = m_L ** (a - g) if in_block else 1.0
    else:
        width_lr = (1.0 / fi if role == "hidden" else 1.0) if mup else 1.0
        depth_lr = m_L ** (-g) if in_block else 1.0
    # Adam ε follows the group's gradient scale (decision D2).
    depth_eps = m_L ** (-a)
    width_eps = (1.0 / m_N) if mup else 1.0
    if rule.eps_scope == "consistent":
        eps_scale = width_eps * (depth_eps if in_block else 1.0)
    elif rule.eps_scope == "blocks":
        eps_scale = width_eps * depth_eps if in_block else 1.0
    elif rule.eps_scope == "all":
        eps_scale = ((1.0 / global_m_N) if mup else 1.0) * depth_eps
    else:
        eps_scale = 1.0
    # Weight decay (decisions D3, D4): matrices only unless decay_vectors.
    if role == "vector" and not hp.decay_vectors:
        wd_scale = 0.0
    elif rule.wd_mode == "mup":
        wd_scale = 1.0 / width_lr  # coupled decay lr·λ stays width-invariant (MuAdam/MuSGD)
    else:
        wd_scale = 1.0
    return width_lr * depth_lr, eps_scale, wd_scale


def _multipliers(plan: Plan, module_roles: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    hp, mup = plan.hparams, plan.rule.is_mup
    out: dict[str, dict[str, float]] = {}
    for mname, kinds in module_roles.items():
        attrs: dict[str, float] = {}
        if "block" in kinds:
            attrs["branch_mult"] = plan.branch_mult
        if "input" in kinds:
            attrs["input_mult"] = hp.input_mult
        if "readout" in kinds:
            w = plan.params.get(f"{mname}.weight" if mname else "weight")
            m_N = w.fan_in_mult if w is not None else plan.width_mult
            attrs["output_mult"] = hp.output_mult / m_N if mup else hp.output_mult
        if attrs:
            out[mname] = attrs
    return out


def _module_roles(model: nn.Module, layout: list[_Layout], rule: Rule) -> dict[str, list[str]]:
    """Which multiplier each module carries; error if a role needs a multiplier the module cannot apply."""
    by_module: dict[str, list[str]] = {}
    modules = {canonical_name(n): m for n, m in model.named_modules()}
    for name, m in modules.items():
        kinds = []
        if getattr(m, "dl_block_depth", None) is not None:
            if not hasattr(m, "branch_mult"):
                raise DeeplimitError(
                    f"residual block {name!r} declares dl_block_depth but has no float attribute 'branch_mult' "
                    "used in its forward; wrap the branch in deeplimit.nn.Residual(branch, block_depth=k)")
            kinds.append("block")
        if hasattr(m, "input_mult"):
            kinds.append("input")
        if hasattr(m, "output_mult"):
            kinds.append("readout")
        if kinds:
            by_module[name] = kinds
    for lay in layout:
        mod = lay.name.rsplit(".", 1)[0] if "." in lay.name else ""
        if lay.role == "readout" and rule.is_mup and "readout" not in by_module.get(mod, []) \
                and lay.fan_in_mult != 1.0:
            raise DeeplimitError(
                f"{lay.name} is a readout under muP with m_N={lay.fan_in_mult:g}, but its module cannot apply the "
                "1/m_N output multiplier; use deeplimit.nn.Readout (a drop-in nn.Linear) for the output layer")
    return by_module


def _count_blocks(model: nn.Module) -> int:
    return len(_block_prefixes(model))


def make_plan(
    model: nn.Module,
    rule: str | Rule = "depth_mup",
    *,
    optimizer: str = "adam",
    base_width: float | None = None,
    base_depth: int | None = None,
    width: float | None = None,
    depth: int | None = None,
    base: nn.Module | None = None,
    roles: Mapping[str, str] | None = None,
    alpha: float | None = None,
    gamma: float | None = None,
    eps_scope: str | None = None,
    weight_decay_mode: str | None = None,
    hparams: HParams | None = None,
    **hp_overrides: float,
) -> Plan:
    """Resolve ``rule`` for every parameter of ``model``.

    Args:
        model: any ``nn.Module``. Roles come from ``roles`` (fnmatch patterns on parameter names), from
            modules' ``dl_roles``, from norms/biases (vectors), embeddings (input), parameters inside residual
            blocks (hidden), or from shape differences with ``base`` (as ``mup.set_base_shapes``).
        rule: preset name or :class:`Rule` (see :mod:`deeplimit.scaling.rules`).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (the LR and ε columns differ).
        base_width, base_depth: the tuned base shape (n₀, L₀). If omitted, base = target (all factors 1) and a
            warning is issued for non-SP rules (decision D7).
        width, depth: the model's width n and number of residual blocks L; default to ``model.width`` /
            ``model.depth`` or, for depth, the number of residual blocks found.
        base: alternatively, a base-width instance of the same architecture (per-tensor multipliers).
        hparams / hp_overrides: base hyperparameters (``block_mult``, ``input_mult``, ``output_mult``, σ's, …).
    """
    rule = get_rule(rule, alpha=alpha, gamma=gamma, eps_scope=eps_scope, weight_decay_mode=weight_decay_mode)
    optimizer = optimizer.lower()
    if optimizer not in OPTIMIZERS:
        raise DeeplimitError(f"optimizer {optimizer!r} is unknown; choose one of {OPTIMIZERS}")
    hp = replace(hparams or HParams(), **hp_overrides)
    notes: list[str] = []

    width = width if width is not None else getattr(model, "width", None)
    if base is not None:
        base_shapes = _base_lookup(base)
        bw = getattr(base, "width", None)
        if width is None or bw is None:
            width, bw = 1.0, 1.0
        base_width = bw
    else:
        base_shapes = None
        if base_width is not None and width is None:
            raise DeeplimitError("base_width given but the model's width is unknown: pass width=n or give the model "
                                 "a 'width' attribute")
        if base_width is None:
            if width is None:
                width = 1.0
            base_width = width
            if rule.is_mup:
                notes.append("no base width given: base = target, so every width factor is 1 (decision D7)")
    check_positive("width", width)
    check_positive("base_width", base_width)

    depth = depth if depth is not None else getattr(model, "depth", None)
    if depth is None:
        depth = _count_blocks(model) or 1
    if base_depth is None:
        base_depth = getattr(base, "depth", None) if base is not None else None
    if base_depth is None:
        base_depth = depth
        if rule.alpha != 0 or rule.gamma != 0:
            notes.append("no base depth given: base = target, so every depth factor is 1 (decision D7)")
    check_positive("depth", depth, integer=True)
    check_positive("base_depth", base_depth, integer=True)

    layout, unresolved = _classify(model, roles or {}, base_shapes)
    if unresolved:
        raise DeeplimitError(
            f"cannot tell the role of {len(unresolved)} parameter(s): {unresolved[:10]}. Declare them: pass "
            "roles={'pattern': 'input'|'hidden'|'readout'|'vector'} (fnmatch on names), use deeplimit.nn.Input/"
            "Readout/Residual, call deeplimit.nn.declare_roles(module, weight=...), or pass base=<base-width model>")
    readout_bias = {lay.name for lay in layout if lay.role == "vector" and lay.module_kind == "readout_module"}
    _set_width_mults(layout, width / base_width, base_shapes, readout_bias)
    module_roles = _module_roles(model, layout, rule)
    blocks = _block_prefixes(model)
    block_depth = max(blocks.values(), default=1)

    notes += _rule_warnings(model, rule, block_depth, bool(blocks))
    for n in notes:
        warn(n, stacklevel=2)
    return _resolve(rule, optimizer, width, base_width, depth, base_depth, hp, layout, block_depth, notes,
                    module_roles)


def _rule_warnings(model: nn.Module, rule: Rule, k: int, has_blocks: bool) -> list[str]:
    """Warnings of the depth-mup spec §9 (the model may add its own via ``dl_rule_warnings(rule)``)."""
    if not has_blocks:
        return []
    family = getattr(model, "dl_family", "resnet")
    out = []
    if k >= 2 and rule.alpha < 1:
        out.append(f"block depth {k} with alpha={rule.alpha:g}: TP6 §9: no LR/multiplier transfer guarantee for "
                   "block depth >= 2; use 'completep' or measure eta* drift")
    if k >= 2 and rule.alpha == 1 and family != "transformer":
        out.append("alpha=1 with block depth >= 2 on a non-transformer: CompleteP evidence is for pre-LN transformers")
    if k == 1 and rule.alpha == 1 and family == "resnet":
        out.append("alpha=1 on a block-depth-1 resnet: TP6 Fig. 11: eta* increases with depth in this family")
    extra = getattr(model, "dl_rule_warnings", None)
    if callable(extra):
        out += list(extra(rule))
    return out
