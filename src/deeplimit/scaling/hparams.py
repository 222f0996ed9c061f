"""Base-shape hyperparameters: tuned once at (n₀, L₀), carried to every shape by the rule (depth-mup spec §0)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.checks import check_number

# Multipliers scale activations: a zero or negative one is never a tuning result, it is a typo.
_POSITIVE = ("block_mult", "input_mult", "output_mult", "attn_mult", "muon_lr_ratio")
_NONNEGATIVE = ("sigma_in", "sigma_hidden", "sigma_out", "sigma_emb")


@dataclass(frozen=True)
class HParams:
    """Base-shape hyperparameters (tuned at (n₀, L₀), transferred by the rule).

    Attributes:
        block_mult: a; every residual branch is multiplied by a·m_L^{-α} (spec §3 (b)).
        input_mult: multiplier on the input layer's / embeddings' output (spec §4 "input" row).
        output_mult: readout multiplier; under μP the readout's input is × output_mult·m_N^{-1} (spec §2.2).
        attn_mult: attention logit multiplier (spec §5.1; μP: attn_mult·√d₀/d, SP: attn_mult/√d).
        sigma_in: input std σ_in/√d_in; sigma_hidden: hidden std σ_W/√fan_in (TP6: σ_W = 1);
        sigma_out: readout std σ_out/√n₀; sigma_emb: embedding tables, std σ_emb.
        readout_zero_init: zero readout (decision D10). decay_vectors: decay vectors too (decision D4).
        muon_lr_ratio: under ``optimizer="muon"``, the Muon matrices' base LR over the base LR η (which the AdamW
            tensors use): Muon's spectral step and Adam's per-entry step are different units, so the two base LRs
            are tuned apart at the base shape (1 = torch's defaults, both 1e-3; docs/optimizers.md, decision O5).
    """

    block_mult: float = 1.0
    input_mult: float = 1.0
    output_mult: float = 1.0
    attn_mult: float = 1.0
    sigma_in: float = 1.0
    sigma_hidden: float = 1.0
    sigma_out: float = 1.0
    sigma_emb: float = 1.0
    readout_zero_init: bool = False
    decay_vectors: bool = False
    muon_lr_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            check_number(name, getattr(self, name), positive=True, fix="pass a positive multiplier (1 = none)")
        for name in _NONNEGATIVE:
            check_number(name, getattr(self, name), nonnegative=True, fix="pass a finite init std constant >= 0")
        for name in ("readout_zero_init", "decay_vectors"):
            if not isinstance(getattr(self, name), bool):
                raise DeeplimitError(f"{name} must be True or False, got {getattr(self, name)!r}")


def hparams_with(base: HParams | None, overrides: dict) -> HParams:
    """``base`` (default :class:`HParams`) with ``overrides``; an unknown name is an error listing the known ones."""
    known = {f.name for f in fields(HParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DeeplimitError(f"unknown plan option(s) {unknown}; hyperparameters are {sorted(known)}")
    return replace(base or HParams(), **overrides)
