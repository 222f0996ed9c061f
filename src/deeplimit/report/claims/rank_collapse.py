"""Rank collapse: shaped vs softmax attention and the ablations of Fig. 4 (spec §6)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from markupsafe import Markup

from deeplimit.report.claims.sde import flags, sde_study
from deeplimit.report.context import Context
from deeplimit.report.html import Control, Section


def rank_collapse(ctx: Context) -> list[Section]:
    """Rank collapse and the ablations of Fig. 4 (spec §6).

    Rule: "holds" when standard softmax reaches mean |ρ| ≥ 0.99 by layer 30 (the negative control), shaped
    attention stays ≤ 0.5 there, and the log-slope of the median V¹² per layer (layers 10–30) is within 5% of
    log λ² without the identity and of log(λ² + 4γ²) without the centring; "partly" when only the first two
    hold; "does not hold" otherwise. The paper's ρ → 1 for the no-identity variants is *not* tested (it does
    not reproduce, see the section's claim)."""
    from deeplimit.transfer.verdict_rules import rank_collapse_verdict

    t = ctx.settings("rank-collapse")
    out = ctx.out / "sde" / "ablations"
    t0 = time.perf_counter()
    summary = sde_study(ctx, "ablations", out, overrides=t)
    table = pd.DataFrame(summary["table"])
    ell = min(30, int(table["layer"].max()))
    at = table[table["layer"] == ell].set_index("variant")["mean_abs_rho"]
    last = table[table["layer"] == table["layer"].max()].set_index("variant")["mean_abs_rho"]
    slopes, theory = summary["log_median_V12_slope_layers_10_30"], summary["theory_slopes"]
    no_id = slopes.get("center-wide", slopes.get("center", np.nan))
    no_ctr = slopes.get("identity-wide", slopes.get("identity", np.nan))
    v = rank_collapse_verdict(softmax_rho=float(at.get("softmax", np.nan)), shaped_rho=float(at.get("shaped", np.nan)),
                              no_identity_slope=no_id, no_centring_slope=no_ctr, theory=theory, layer=ell)
    preset = summary["preset"]
    dmax = int(table["layer"].max())
    noid = {v: float(last[v]) for v in ("center", "center-wide") if v in last.index}
    noid_rho = ", ".join(f"{v} {r:.3f}" for v, r in noid.items())
    # The paper draws ρ → 1 without the identity; the spec predicts ρ stays put. Either conclusion is printed only
    # when the collapse rule of the softmax control (mean |ρ| ≥ 0.99) decides it for every such variant.
    if noid and all(r < 0.99 for r in noid.values()):
        noid_words = Markup("<b>The paper's ρ → 1 without the identity does not reproduce here</b>: ")
        noid_end = " — below the collapse level 0.99, as the spec predicts."
    elif noid and all(r >= 0.99 for r in noid.values()):
        noid_words, noid_end = "Without the identity the correlation collapses as the paper's Fig. 4 draws: ", "."
    else:
        noid_words, noid_end = "Without the identity: ", " (the variants disagree on the collapse level 0.99)."
    measured = (f"At layer {ell}, mean |ρ| is {at.get('softmax', float('nan')):.3f} for standard softmax attention "
                f"and {at.get('shaped', float('nan')):.3f} for shaped attention. Decay rate of log median V¹² per "
                f"layer (layers 10–30): no identity {no_id:.4f} (theory log λ² = {theory['no identity']:.4f}), no "
                f"centring {no_ctr:.4f} (theory log(λ²+4γ²) = {theory['no centring']:.4f}). ") + noid_words + (
                f"mean |ρ| at layer {dmax} is {noid_rho} (start ρ0 = {preset['rho0']:g})" + noid_end)
    return [Section(
        title="Rank collapse: shaped vs softmax attention and the ablations",
        claim=("Paper (Noci et al. 2023, Figs. 1 left and 4): standard softmax attention drives token correlations "
               "to 1 within tens of layers (rank collapse); shaped attention (identity + centring + √n temperature) "
               "keeps them bounded; every ablation fails, and the paper's Fig. 4 draws the correlation of the "
               "variants without the identity rising to 1 as well. The spec (§6) predicts otherwise: "
               "without the identity the attention branch is Softmax − U, which is O(n^{-1/2}) at the √n "
               "temperature and shrinks with the logits at the standard one, so X_{ℓ+1} ≈ λX_ℓ; a correlation is "
               "invariant under X → λX, so it stays at ρ0 while the whole covariance decays like λ^{2ℓ} (spec §6, "
               "exact float64 simulation). The run tests the decay rate of V for that ablation, the growth rate "
               "(λ²+4γ²)^ℓ without the centring, and where the correlation without the identity ends."),
        measured=measured, verdict=v.verdict, figures=[out / "ablations.png", out / "ablations_cov.png"],
        reason=v.reason,
        tables=[("mean |ρ| and covariance per layer and variant", table)],
        command=f"deeplimit sde --scenario ablations {flags(t)}", wall_s=time.perf_counter() - t0,
        scale_gap=(f"Here n = {preset['n']}, d = {preset['d']}, m = {preset['m']}, γ = {preset['gamma']:.3g}, "
                   f"{preset['paths']} paths, one seed; the paper: n = 300, d = 150, γ = 1/√2, ρ0 = 0.2, 2^13 "
                   "samples, m not stated."),
        controls=[Control.from_check(c) for c in v.checks],
        settings={**t, "preset": preset})]
