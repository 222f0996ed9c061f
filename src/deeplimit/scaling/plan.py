"""The resolved plan: one row per tensor (role, fans, init std, LR/ε/λ factors) plus the forward multipliers.

``make_plan(model, rule, base_width=…, base_depth=…)`` walks the model once (:mod:`.classify`), sets each tensor's
width multipliers (:mod:`.shapes`) and evaluates the implementation table of the depth-mup spec §4
(:mod:`.table`) for it. The plan lives *beside* the model (JSON next to a checkpoint), never on
``nn.Parameter``; names are canonical (:mod:`.names`), so DDP, ``torch.compile`` and FSDP prefixes do not matter.

Canonical form (decision D1): the readout keeps a width-independent init and Adam LR and its forward pass is
multiplied by ``m_N^{-1}``. At the base shape every factor is 1, so every rule reduces to the base model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from deeplimit.errors import DeeplimitError, warn
from deeplimit.io import atomic_write_json, read_json
from deeplimit.nn.layers import STATE_KEY, carry_multipliers
from deeplimit.scaling import present, table
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.classify import AttentionSite, Layout, classify, declared_attr, suggest_roles
from deeplimit.scaling.groups import param_groups
from deeplimit.scaling.hparams import HParams, hparams_with
from deeplimit.scaling.names import canonical_name, modules_by_name
from deeplimit.scaling.rules import OPTIMIZERS, Rule, get_rule
from deeplimit.scaling.shapes import base_shapes, role_width_mults, width_from_base
from deeplimit.scaling.sigmas import SIGMA_OF, Sigmas, model_stds, resolve_init
from deeplimit.scaling.structure import get_structure

PLAN_VERSION = 1
HF_PLAN_KEY = "deeplimit_plan"  # a Hugging Face config attribute: the plan rides in config.json

__all__ = ["HParams", "ParamPlan", "Plan", "canonical_name", "make_plan"]


@dataclass(frozen=True)
class ParamPlan:
    """Everything the rule says about one tensor (factors are relative to the base η, ε, λ)."""

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
    aliases: tuple[str, ...] = ()  # other names of this tensor (a tied embedding's readout)
    init_source: str = ""  # where the base-shape σ came from: "config.initializer_range", "sigma_hidden=1", …

    @property
    def width_mult(self) -> float:
        """m_N of this tensor: its fan-in multiplier if fan-in scales, else its fan-out multiplier (as mup)."""
        return table.tensor_width_mult(self.fan_in_mult, self.fan_out_mult)

    @property
    def role_label(self) -> str:
        if self.role == "vector":
            return "block-vector" if self.in_block else "outer-vector"
        if self.role == "hidden" and not self.in_block:
            return "hidden (outside blocks)"
        if self.aliases and self.role == "input":
            return "input (tied readout)"
        return self.role

    def validate(self) -> None:
        where = f"plan entry {self.name}"
        for attr in ("fan_in_mult", "fan_out_mult", "lr_scale", "eps_scale"):
            check_number(f"{where}: {attr}", getattr(self, attr), positive=True, fix="rebuild the plan")
        for attr in ("init_std", "wd_scale"):
            check_number(f"{where}: {attr}", getattr(self, attr), nonnegative=True, fix="rebuild the plan")


@dataclass
class Plan:
    """A resolved parametrization of one model. Build it with :func:`make_plan`.

    ``multipliers`` maps a module (canonical name) to the float attributes the plan sets on it: ``branch_mult``,
    ``input_mult``, ``output_mult`` (read by deeplimit's layers), ``dl_branch_mult``, ``dl_input_mult``,
    ``dl_output_mult`` (applied by forward hooks on other modules), or an attention module's logit-scale
    attribute. ``attention`` records, per attention module, heads, head dims and the logit scale in force.
    """

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
    attention: dict[str, dict] = field(default_factory=dict)
    family: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # --- derived scalars -------------------------------------------------------------------------------------
    @property
    def width_mult(self) -> float:
        """m_N = n / n₀."""
        return self.width / self.base_width

    @property
    def depth_mult(self) -> float:
        """m_L = L / L₀ (L counts residual blocks, decision D6)."""
        return self.depth / self.base_depth

    @property
    def branch_mult(self) -> float:
        """a · m_L^{-α} (spec §3 (b))."""
        return table.branch_mult(self.rule, self.hparams, self.depth_mult)

    def __getitem__(self, name: str) -> ParamPlan:
        key = canonical_name(name)
        if key not in self.params:
            raise DeeplimitError(
                f"parameter {name!r} is not in the plan (plan has {len(self.params)} parameters); the plan was made "
                "for another model — rebuild it with make_plan(model, ...) or load the plan saved with this checkpoint")
        return self.params[key]

    def validate(self) -> None:
        """Refuse NaN, ±inf and negative numbers anywhere in the plan (issue #11: they fail steps later as NaN)."""
        if self.optimizer not in OPTIMIZERS:
            raise DeeplimitError(f"optimizer {self.optimizer!r} is unknown; choose one of {OPTIMIZERS}")
        for name in ("width", "base_width"):
            check_number(name, getattr(self, name), positive=True)
        for name in ("depth", "base_depth", "block_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DeeplimitError(f"{name} must be a positive integer, got {value!r}")
        HParams.__post_init__(self.hparams)
        for p in self.params.values():
            p.validate()
        for module, attrs in self.multipliers.items():
            for attr, value in attrs.items():
                check_number(f"multiplier {attr} of {module or 'the root module'}", value, positive=True,
                             fix="check block_mult / input_mult / output_mult / attn_mult and rebuild the plan")

    # --- applying the plan -----------------------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
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
        plan_aliases = {a: n for n, p in self.params.items() for a in p.aliases}
        missing = sorted(set(self.params) - set(have))
        extra = sorted(set(have) - set(self.params))
        shapes = sorted(n for n in set(have) & set(self.params) if have[n] != tuple(self.params[n].shape))
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
                f"{n} model {have[n]} vs plan {tuple(self.params[n].shape)}" for n in shapes[:8]))
        if ties and not (missing or extra):
            parts.append("tied weights differ: " + ", ".join(f"{a} = {b}" for a, b in ties[:8]))
        width, depth = model_size(model)
        if width is not None and not math.isclose(float(width), self.width, rel_tol=1e-12):
            parts.append(f"the model's width is {width:g}, the plan's {self.width:g}")
        if depth is not None and int(depth) != self.depth:
            parts.append(f"the model's depth is {depth}, the plan's {self.depth}")
        if parts:
            raise DeeplimitError(
                "plan does not match the model (" + "; ".join(parts) + "). Fix: build the model with the same "
                "config as when the plan was saved, or make a new plan with deeplimit.make_plan(model, ...)")

    def apply(self, model: nn.Module) -> nn.Module:
        """Set the forward multipliers on the model's modules (and hooks where a module's forward cannot read
        them; see :func:`deeplimit.nn.layers.carry_multipliers`). Idempotent. Returns the model."""
        self.validate()
        self.check(model)
        modules = modules_by_name(model)
        unknown = sorted(set(self.multipliers) - set(modules))
        if unknown:
            raise DeeplimitError(f"module(s) {unknown[:4]} of the plan are missing from the model; rebuild the plan")
        for name, module in modules.items():
            attrs = self.multipliers.get(name, {})
            if not attrs and not getattr(module, "dl_multiplier_attrs", ()):
                continue
            if self.attention.get(name, {}).get("own_scale") is not None and not hasattr(module, "dl_own_scale"):
                module.dl_own_scale = self.attention[name]["own_scale"]  # the model's own logit scale, kept once
            carry_multipliers(module, attrs)
        _record_in_hf_config(model, self)
        return model

    @torch.no_grad()
    def initialize(self, model: nn.Module, seed: int | torch.Generator = 0) -> nn.Module:
        """Re-initialise every tensor with the plan's init, in ``named_parameters`` order.

        One CPU generator drives all draws in a fixed order, so at the base shape every rule gives
        bit-identical weights for the same seed (spec §8.3, base-shape identity). A tied tensor is drawn once.
        Sharded parameters (FSDP2 ``DTensor``) get the same full draw, distributed to their shards.
        """
        self.check(model)
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        for name, p in model.named_parameters():
            pp = self[name]
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

    # --- optimizer groups and presentation (one module each) ---------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, *, weight_decay: float | None = None, eps: float = 1e-8,
                     **decay: float | None) -> list[dict]:
        """Parameter groups for ``torch.optim``; see :func:`deeplimit.scaling.groups.param_groups` (``decay``:
        ``wd_timescale``, ``wd_timescale_fraction``, ``total_steps``)."""
        return param_groups(self, model, lr, weight_decay=weight_decay, eps=eps, **decay)

    def rows(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
             **decay: float | None) -> list[dict]:
        """One dict per tensor with the resolved numbers; see :func:`deeplimit.scaling.present.rows`."""
        return present.rows(self, lr, eps, weight_decay, **decay)

    def summary(self) -> str:
        """Rule, shapes and multipliers in a few lines; see :func:`deeplimit.scaling.present.summary`."""
        return present.summary(self)

    def table(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
              **decay: float | None) -> str:
        """Human-readable table; see :func:`deeplimit.scaling.present.table`."""
        return present.table(self, lr, eps, weight_decay, **decay)

    # --- serialisation ---------------------------------------------------------------------------------------
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
            "params": [{**asdict(p), "shape": list(p.shape), "aliases": list(p.aliases)} for p in self.params.values()],
            "notes": list(self.notes),
            "attention": self.attention,
            "family": self.family,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Plan:
        """Inverse of :meth:`to_dict`; a malformed or non-finite plan is a DeeplimitError."""
        if not isinstance(d, Mapping):
            raise DeeplimitError(f"a plan is a JSON object, got {type(d).__name__}; this is not a deeplimit plan")
        if d.get("version") != PLAN_VERSION:
            raise DeeplimitError(f"plan version {d.get('version')!r} is not supported (expected {PLAN_VERSION})")
        try:
            known = {f.name for f in fields(ParamPlan)}
            params = {}
            for p in d["params"]:
                entry = ParamPlan(**{k: v for k, v in p.items() if k in known})
                params[entry.name] = replace(entry, shape=tuple(entry.shape), aliases=tuple(entry.aliases))
            return cls(rule=Rule(**d["rule"]), optimizer=d["optimizer"], width=d["width"], base_width=d["base_width"],
                       depth=d["depth"], base_depth=d["base_depth"], hparams=HParams(**d["hparams"]), params=params,
                       multipliers={k: dict(v) for k, v in d["multipliers"].items()}, block_depth=d["block_depth"],
                       notes=list(d.get("notes", [])), attention=dict(d.get("attention", {})),
                       family=d.get("family"), source=d.get("source"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DeeplimitError(f"not a valid deeplimit plan ({exc.__class__.__name__}: {exc}); rebuild it with "
                                 "make_plan(model, ...) and save it with plan.save(path)") from None

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON, atomically (a crash never leaves a torn plan under ``path``)."""
        return atomic_write_json(path, self.to_dict(), allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save`; a missing, empty, truncated or binary file is a DeeplimitError."""
        return cls.from_dict(read_json(path, "plan file"))

    def with_optimizer(self, optimizer: str) -> Plan:
        """The same plan for another optimizer (the LR and ε columns differ between SGD and Adam)."""
        optimizer = _optimizer(optimizer)
        params = {}
        for n, p in self.params.items():
            lr, eps, wd = _factors(self.rule, self.hparams, optimizer, p.role, p.in_block, p.fan_in_mult,
                                   p.fan_out_mult, self.depth_mult, self.width_mult, p.fan_in, p.fan_out, p.shape)
            params[n] = replace(p, lr_scale=lr, eps_scale=eps, wd_scale=wd)
        return replace(self, optimizer=optimizer, params=params, multipliers=dict(self.multipliers),
                       notes=list(self.notes))


def _record_in_hf_config(model: nn.Module, plan: Plan) -> None:
    """A Hugging Face model carries its plan in ``config.deeplimit_plan`` (saved in config.json by
    ``save_pretrained``, restored by ``from_pretrained``), and its multipliers stay out of the weights file
    (``_keys_to_ignore_on_save``): ``from_pretrained`` then loads with no unexpected keys, and ``parametrize``
    restores the multipliers from the same arguments (checked against this record)."""
    from deeplimit.scaling import hf

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


def _optimizer(optimizer: str) -> str:
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise DeeplimitError(f"optimizer {optimizer!r} is unknown; choose one of {OPTIMIZERS}")
    return key


def _factors(rule: Rule, hp: HParams, optimizer: str, role: str, in_block: bool, fi: float, fo: float, m_L: float,
             global_m_N: float, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(lr_scale, eps_scale, wd_scale) of one tensor: the LR, ε and λ columns of spec §4 for the torch optimizer
    that updates it (under ``"muon"``: Muon for hidden matrices, AdamW for the rest; optimizers spec §1–§3)."""
    optimizer = table.param_optimizer(optimizer, role, len(shape))
    width_lr = table.width_lr(rule, optimizer, role, fi, fo)
    if optimizer == "muon":  # Muon's own eps only normalises Newton–Schulz: never scaled (ε factor 1)
        return (table.muon_lr_scale(rule, hp, in_block, fan_in, fan_out, shape, m_L), 1.0,
                table.wd_scale(rule, hp, role, width_lr))
    return (table.lr_scale(rule, optimizer, role, in_block, fi, fo, m_L),
            table.eps_scale(rule, in_block, table.tensor_width_mult(fi, fo), global_m_N, m_L),
            table.wd_scale(rule, hp, role, width_lr))


def model_size(model: nn.Module) -> tuple[float | None, int | None]:
    """The width and depth a model declares: its Structure's, else ``model.width`` / ``model.depth``."""
    structure = get_structure(model)
    width = structure.width if structure is not None and structure.width is not None else None
    depth = structure.depth if structure is not None and structure.depth is not None else None
    if width is None:
        width = declared_attr(model, "width")
    if depth is None:
        depth = declared_attr(model, "depth")
    ok = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    return (width if ok(width) else None), (int(depth) if ok(depth) else None)


# --------------------------------------------------------------------------------------------------------------
# Building a plan


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
    attn_scale: str | None = None,
    hparams: HParams | None = None,
    sigma_from: Literal["model", "hparams"] = "model",
    **hp_overrides: float,
) -> Plan:
    """Resolve ``rule`` for every parameter of ``model`` (depth-mup spec §4).

    Args:
        model: any ``nn.Module``. Roles come from ``roles`` (fnmatch patterns on parameter names), the model's
            :class:`~deeplimit.scaling.structure.Structure` (``dl.declare_structure``), modules' ``dl_roles``,
            norms/biases (vectors), embeddings (input), parameters inside residual blocks (hidden), or shape
            differences with ``base`` (as ``mup.set_base_shapes``); see :mod:`deeplimit.scaling.classify`.
        rule: a name in ``RULES`` or a :class:`Rule` (see :mod:`deeplimit.scaling.rules`).
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` (the LR and ε columns differ) or ``"muon"`` (hidden
            matrices on ``torch.optim.Muon`` with the spectral LR, everything else on AdamW; docs/optimizers.md).
        base_width, base_depth: the tuned base shape (n₀, L₀). If omitted, base = target (all factors 1) and a
            warning is issued for non-SP rules (decision D7).
        width, depth: the model's width n and number of residual blocks L; default to the Structure's, to
            ``model.width`` / ``model.depth`` or, for depth, the number of residual blocks found.
        base: alternatively, a base-width instance of the same architecture (per-tensor multipliers).
        attn_scale: attention logit scale law, ``"mup"`` or ``"sqrt"`` (spec §5.1; default by width rule).
        hparams / hp_overrides: base hyperparameters (``block_mult``, ``input_mult``, ``output_mult``,
            ``attn_mult``, σ's, …; see :class:`HParams`). NaN, inf and non-positive multipliers are refused.
        sigma_from: where the base-shape init stds come from when not given. ``"model"`` (default): a Hugging Face
            model's own init at the base shape (``config.initializer_range``, GPT-2's residual scaling, …;
            :func:`deeplimit.scaling.hf_init.model_init_stds`), so at the base shape the plan draws every tensor as
            the model itself does, and the rule's width law carries it to other widths; other models and tensors
            the model does not draw from a fixed-std law use the :class:`HParams` σ's. ``"hparams"``: the
            :class:`HParams` σ's everywhere. A σ given in ``hp_overrides`` (or any ``hparams=``) always wins for
            its role. Each tensor's ``init_source`` says which applied.
    """
    rule = get_rule(rule, alpha=alpha, gamma=gamma, eps_scope=eps_scope, weight_decay_mode=weight_decay_mode,
                    attn_scale=attn_scale)
    optimizer = _optimizer(optimizer)
    hp = hparams_with(hparams, hp_overrides)
    notes: list[str] = []
    declared_width, declared_depth = model_size(model)
    for name, given, declared in (("width", width, declared_width), ("depth", depth, declared_depth)):
        if given is not None and declared is not None and float(given) != float(declared):
            raise DeeplimitError(f"{name}={given} contradicts the model's declared {name} {declared}; drop the "
                                 f"{name}= argument (or fix the model's {name} attribute / Structure)")
    width = width if width is not None else declared_width
    depth = depth if depth is not None else declared_depth

    shapes = None
    infer_width = False
    if base is not None:
        shapes = base_shapes(base)
        bw = model_size(base)[0]
        if width is None or bw is None:  # a mup-style pair of plain models: m_N is read off their shapes below
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

    layout = classify(model, roles, shapes)
    if layout.unresolved:
        n = len(layout.unresolved)
        fix = suggest_roles(model, layout.unresolved, width)
        raise DeeplimitError(
            f"cannot tell the role of {n} parameter(s): {layout.unresolved[:10]}{' …' if n > 10 else ''}. Declare "
            f"them, e.g. roles={fix!r} (guessed from the shapes: check it; roles are input, hidden, readout, "
            "vector; fnmatch patterns allowed), or "
            "describe the model with dl.declare_structure(model, dl.Structure(blocks=..., branches=..., inputs=..., "
            "readouts=...)), use deeplimit.nn.Input/Readout/Residual, or pass base=<base-width model>")
    if infer_width:
        width, base_width = width_from_base(layout.params, width, base_width)
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

    if sigma_from not in ("model", "hparams"):
        raise DeeplimitError(f"sigma_from must be 'model' or 'hparams', got {sigma_from!r}")
    given = set(SIGMA_OF.values()) if hparams is not None else set(hp_overrides) & set(SIGMA_OF.values())
    read_own = sigma_from == "model" and given != set(SIGMA_OF.values())
    own = model_stds(model, base_width, base_depth) if read_own else {}
    m_N = float(width) / float(base_width)
    if shapes is None:
        for site in layout.params:
            site.fan_in_mult, site.fan_out_mult = role_width_mults(site.role, m_N, site.kind == "readout_bias")
    block_depth = max(layout.blocks.values(), default=1)
    notes += _rule_warnings(model, rule, block_depth, bool(layout.blocks), layout.family)
    plan = _resolve(rule, optimizer, float(width), float(base_width), depth, base_depth, hp, layout, block_depth,
                    notes, Sigmas(own, given))
    for n in notes:
        warn(n, stacklevel=2)
    return plan


def _resolve(rule: Rule, optimizer: str, width: float, base_width: float, depth: int, base_depth: int,
             hp: HParams, layout: Layout, block_depth: int, notes: list[str], sigmas: Sigmas) -> Plan:
    """Evaluate the implementation table (depth-mup spec §4) for every tensor and every multiplier site."""
    m_N, m_L = width / base_width, depth / base_depth
    params: dict[str, ParamPlan] = {}
    for s in layout.params:
        fi, fo = s.fan_in_mult, s.fan_out_mult
        std, source = resolve_init(rule, hp, s, sigmas)
        lr, eps, wd = _factors(rule, hp, optimizer, s.role, s.in_block, fi, fo, m_L, m_N, s.fan_in, s.fan_out,
                               s.shape)
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
    source = layout.structure.source if layout.structure is not None else None
    return Plan(rule, optimizer, width, base_width, depth, base_depth, hp, params, multipliers, block_depth,
                list(notes), attention, layout.family, source)


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


def _rule_warnings(model: nn.Module, rule: Rule, k: int, has_blocks: bool, family: str | None) -> list[str]:
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
