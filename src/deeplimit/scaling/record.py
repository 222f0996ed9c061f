"""The plan as a record: one :class:`ParamPlan` row per tensor plus the forward multipliers, checked and serialised.

This is the bottom of the plan pipeline (the role of ``mup``'s ``InfShape``): it knows the numbers and how to
validate, save and load them, and nothing about models or optimizers. :mod:`.resolve` fills it from a model's
:mod:`.classify` layout and the :mod:`.table` formulas; :mod:`.bind` sets it on a model (check, multipliers,
init); :mod:`.groups` and :mod:`.present` read it; :mod:`.plan` ties them together as :class:`Plan`.

Canonical form (decision D1): the readout keeps a width-independent init and Adam LR and its forward pass is
multiplied by ``m_N^{-1}``. At the base shape every factor is 1, so every rule reduces to the base model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write_json, read_json
from deeplimit.scaling import table
from deeplimit.scaling.checks import check_number
from deeplimit.scaling.hparams import HParams
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.rules import OPTIMIZERS, Rule

PLAN_VERSION = 1
HF_PLAN_KEY = "deeplimit_plan"  # a Hugging Face config attribute: the plan rides in config.json

R = TypeVar("R", bound="PlanRecord")


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
class PlanRecord:
    """The fields of a :class:`~deeplimit.scaling.plan.Plan`, checked, with what follows from them alone.

    What a plan *does* (apply, initialize, optimizer groups, the printed table) is done by the modules above
    this one, which read this record; :class:`~deeplimit.scaling.plan.Plan` adds those verbs as one-line methods.

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
    def from_dict(cls: type[R], d: Mapping) -> R:
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
    def load(cls: type[R], path: str | Path) -> R:
        """Read a plan written by :meth:`save`; a missing, empty, truncated or binary file is a DeeplimitError."""
        return cls.from_dict(read_json(path, "plan file"))
