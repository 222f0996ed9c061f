"""Parametrization rules: width μP × depth (α, γ), as data.

A :class:`Rule` says *which* scaling law applies; a :class:`~deeplimit.scaling.plan.Plan` resolves it to
numbers for every parameter of a concrete model. The named rules (``RULES``) follow the depth-mup spec §4.1:

=============== ======= ========= ========================================================
rule            width   (α, γ)    source
=============== ======= ========= ========================================================
``sp``          none    (0, 0)    TP6 Fig. 10 bottom (SP as plotted)
``sp_lr_depth`` none    (0, 1)    TP6 §10.2 text, footnote 26 (SP as described)
``mup``         μP      (0, 0)    TP5, ``microsoft/mup``
``depth_mup``   μP      (½, ½)    TP6 Table 1 (Depth-μP)
``completep``   μP      (1, 0)    CompleteP Table 1
``blocks_only`` μP      (½, 0)    TP6 Fig. 10 middle (branch multiplier only)
``ode``         μP      (1, 0)    TP6 Fig. 11 (same rules as ``completep``)
``custom``      either  (α, γ)    ablations; γ defaults to 1 − α (decision D8)
=============== ======= ========= ========================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from deeplimit.errors import DeeplimitError

WidthRule = Literal["mup", "sp"]
EpsScope = Literal["consistent", "blocks", "all", "none"]
WeightDecayMode = Literal["mup", "torch", "independent"]
AttnScale = Literal["mup", "sqrt"]

EPS_SCOPES = ("consistent", "blocks", "all", "none")
WEIGHT_DECAY_MODES = ("mup", "torch", "independent")
ATTN_SCALES = ("mup", "sqrt")
OPTIMIZERS = ("sgd", "adam", "adamw", "muon")  # "muon": hidden matrices on Muon, the rest on AdamW


@dataclass(frozen=True)
class Rule:
    """A width × depth parametrization.

    Attributes:
        name: rule name (``custom`` for hand-made rules).
        width: ``"mup"`` (μP in the readout-multiplier form, decision D1) or ``"sp"`` (no width rule).
        alpha: branch exponent: every residual branch is multiplied by ``a · m_L^{-α}``.
        gamma: learning-rate exponent: in-block Adam LR × ``m_L^{-γ}``, SGD LR × ``m_L^{α-γ}``.
        eps_scope: which Adam ε are scaled (decision D2).
        weight_decay_mode: how λ scales (decision D3); ``None`` picks ``mup`` for μP and ``torch`` for SP.
        attn_scale: attention logit scale (depth-mup spec §5.1): ``"mup"`` (attn_mult·√d₀/d, the 1/d law written
            so that it equals the model's own 1/√d₀ at the base shape) or ``"sqrt"`` (attn_mult/√d, standard;
            nanoGPT-mup's ``mup_disable_attention_scaling``); ``None`` picks ``mup`` for μP and ``sqrt`` for SP.
    """

    name: str
    width: WidthRule
    alpha: float
    gamma: float
    eps_scope: EpsScope = "consistent"
    weight_decay_mode: WeightDecayMode | None = None
    attn_scale: AttnScale | None = None

    def __post_init__(self) -> None:
        if self.width not in ("mup", "sp"):
            raise DeeplimitError(f"width rule must be 'mup' or 'sp', got {self.width!r}")
        if not 0.0 <= self.alpha <= 2.0:
            raise DeeplimitError(
                f"alpha={self.alpha} is outside [0, 2]; the theory covers alpha in [1/2, 1] "
                "(alpha < 1/2 is unstable at init, TP6 Claim 7.1) — pick a value in [0, 2]")
        if not -1.0 <= self.gamma <= 2.0:
            raise DeeplimitError(f"gamma={self.gamma} is outside [-1, 2]; the principled choice is gamma = 1 - alpha")
        if self.eps_scope not in EPS_SCOPES:
            raise DeeplimitError(f"eps_scope {self.eps_scope!r} is unknown; choose one of {EPS_SCOPES}")
        if self.weight_decay_mode is not None and self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise DeeplimitError(
                f"weight_decay_mode {self.weight_decay_mode!r} is unknown; choose one of {WEIGHT_DECAY_MODES}")
        if self.attn_scale is not None and self.attn_scale not in ATTN_SCALES:
            raise DeeplimitError(f"attn_scale {self.attn_scale!r} is unknown; choose one of {ATTN_SCALES}")

    @property
    def is_mup(self) -> bool:
        return self.width == "mup"

    @property
    def wd_mode(self) -> WeightDecayMode:
        if self.weight_decay_mode is not None:
            return self.weight_decay_mode
        return "mup" if self.is_mup else "torch"

    @property
    def attention(self) -> AttnScale:
        """The attention logit scale law in force (``attn_scale``, or the width rule's default)."""
        if self.attn_scale is not None:
            return self.attn_scale
        return "mup" if self.is_mup else "sqrt"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weight_decay_mode"] = self.wd_mode
        d["attn_scale"] = self.attention
        return d


RULES: dict[str, Rule] = {
    "sp": Rule("sp", "sp", 0.0, 0.0),
    "sp_lr_depth": Rule("sp_lr_depth", "sp", 0.0, 1.0),
    "mup": Rule("mup", "mup", 0.0, 0.0),
    "depth_mup": Rule("depth_mup", "mup", 0.5, 0.5),
    "completep": Rule("completep", "mup", 1.0, 0.0),
    "blocks_only": Rule("blocks_only", "mup", 0.5, 0.0),
    "ode": Rule("ode", "mup", 1.0, 0.0),
}

# Names users bring from other codebases or type with dashes.
ALIASES = {"standard": "sp", "mu_p": "mup", "depthmup": "depth_mup", "depth_mu_p": "depth_mup",
           "complete_p": "completep", "tp6_ode": "ode"}


def _normalise(name: str) -> str:
    key = name.strip().lower().replace("-", "_").replace("μ", "mu")
    return ALIASES.get(key, key)


def get_rule(rule: str | Rule, *, alpha: float | None = None, gamma: float | None = None,
             width: WidthRule | None = None, eps_scope: EpsScope | None = None,
             weight_decay_mode: WeightDecayMode | None = None, attn_scale: AttnScale | None = None) -> Rule:
    """Return a :class:`Rule` from a rule name in ``RULES`` (or a Rule), with optional overrides.

    ``get_rule("custom", alpha=0.75)`` gives the μP rule with (α, γ) = (0.75, 0.25) (γ = 1 − α by
    default, decision D8). Overriding α or γ of a named rule turns it into ``custom``.
    """
    if isinstance(rule, Rule):
        base = rule
    else:
        key = _normalise(rule)
        if key == "custom":
            if alpha is None:
                raise DeeplimitError("the 'custom' rule needs alpha (e.g. --alpha 0.75); gamma defaults to 1 - alpha")
            base = Rule("custom", width or "mup", alpha, 1.0 - alpha if gamma is None else gamma)
        elif key in RULES:
            base = RULES[key]
        else:
            raise DeeplimitError(
                f"unknown rule {rule!r}; choose one of {rule_names()} (dashes allowed, e.g. depth-mup)")
    changes: dict = {}
    if alpha is not None and alpha != base.alpha:
        changes["alpha"] = alpha
        if gamma is None:
            changes["gamma"] = 1.0 - alpha
    if gamma is not None and gamma != base.gamma:
        changes["gamma"] = gamma
    if width is not None and width != base.width:
        changes["width"] = width
    if changes:
        changes["name"] = "custom"
    if eps_scope is not None:
        changes["eps_scope"] = eps_scope
    if weight_decay_mode is not None:
        changes["weight_decay_mode"] = weight_decay_mode
    if attn_scale is not None:
        changes["attn_scale"] = attn_scale
    return replace(base, **changes) if changes else base


def rule_names() -> list[str]:
    """Names accepted by :func:`get_rule`: the entries of ``RULES`` and ``custom``."""
    return sorted(RULES) + ["custom"]
