"""Where each tensor's base-shape init std comes from: the model's own init (Hugging Face models, read by
:func:`deeplimit.scaling.hf_init.model_init_stds`), a σ the user gave, or the :class:`HParams` default.

The width law is always the rule's (:func:`deeplimit.scaling.table.init_width_factor`); only the base-shape
constant differs. The source is recorded per tensor (``ParamPlan.init_source``) and printed by the plan table.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from deeplimit.scaling import hf, table
from deeplimit.scaling.classify import ParamSite
from deeplimit.scaling.hf_init import model_init_stds
from deeplimit.scaling.hparams import HParams
from deeplimit.scaling.rules import Rule

# the HParams σ that sets each kind of normal-initialised tensor (table.init_std)
SIGMA_OF = {"embedding": "sigma_emb", "input": "sigma_in", "hidden": "sigma_hidden", "readout": "sigma_out",
            "router": "sigma_hidden"}  # a MoE router: a readout's shape, the hidden σ of its block


@dataclass(frozen=True)
class Sigmas:
    """Base-shape stds read off the model (name → (std, source)) and the σ names the user gave explicitly."""

    own: dict[str, tuple[float, str]]
    given: set[str]


def model_stds(model: nn.Module, base_width: float, base_depth: int) -> dict[str, tuple[float, str]]:
    """Parameter name → (the model's own std at the base shape (n₀, L₀), its source); {} for models that are
    not Hugging Face models (they have no init of their own to read)."""
    if not hf.is_hf_model(model):
        return {}
    return model_init_stds(model, base_width, base_depth)


def resolve_init(rule: Rule, hp: HParams, s: ParamSite, sigmas: Sigmas) -> tuple[float, str]:
    """(init std, its source) of one tensor: the model's own base-shape std carried by the rule's width law
    (:func:`table.init_width_factor`) unless its σ was given, else the table's σ formula."""
    if s.init != "normal":
        return 0.0, ""
    sigma = SIGMA_OF.get("embedding" if s.kind == "embedding" else s.role)
    if sigma is None:  # a role with no σ of its own
        return table.init_std(rule, hp, s.role, s.kind, s.fan_in, s.fan_in_mult) * s.init_mult, ""
    if s.role == "readout" and hp.readout_zero_init:
        return 0.0, "readout_zero_init"
    own = next((sigmas.own[n] for n in (s.name, *s.aliases) if n in sigmas.own), None)
    if own is not None and sigma not in sigmas.given:
        return own[0] * table.init_width_factor(rule, s.role, s.kind, s.fan_in_mult) * s.init_mult, own[1]
    how = "given" if sigma in sigmas.given else "default"
    return (table.init_std(rule, hp, s.role, s.kind, s.fan_in, s.fan_in_mult) * s.init_mult,
            f"{sigma}={getattr(hp, sigma):g} ({how})")
