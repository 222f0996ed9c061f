"""Stopping times over (γ, τ0): the paper's trends, and the network and SDE maps cell by cell."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.io import atomic_write_json, ensure_dir
from deeplimit.report.claims.sde import sde_study
from deeplimit.report.context import Context, cached
from deeplimit.report.html import Control, Section


def _stopping_width(ctx: Context, t: dict, out: Path) -> pd.DataFrame:
    """Network median t* at growing width (d = n, same start scale) beside the SDE's (cached)."""
    from deeplimit.sde.evidence import stopping_width_check

    settings = {"check": "stopping-width", "version": 2, "ns": t["width_ns"], "gammas": t["width_gammas"],
                "tau0s": t["width_tau0s"], "paths": t["width_paths"]}

    def compute() -> dict:
        df = stopping_width_check(t["width_gammas"], t["width_tau0s"], t["width_ns"], paths=t["width_paths"])
        res = {"table": df.to_dict(orient="records"), "settings": settings}
        atomic_write_json(ensure_dir(out, "output folder") / "stopping_width.json", res, default=float)
        return res

    res = cached(out / "stopping_width.json", settings, compute, code=ctx.code.get("sde", ""), fresh=ctx.fresh)
    return pd.DataFrame(res["table"])


def _monotone_share(g: pd.DataFrame, T: float, tol: float = 0.05) -> float:
    """:func:`deeplimit.transfer.verdict_rules.monotone_share` (imported on use: the rules module loads scipy)."""
    from deeplimit.transfer.verdict_rules import monotone_share

    return monotone_share(g, T, tol)


def _shuffled_shares(g: pd.DataFrame, T: float, n: int = 1000, seed: int = 0) -> np.ndarray:
    """:func:`deeplimit.transfer.verdict_rules.shuffled_shares` (imported on use)."""
    from deeplimit.transfer.verdict_rules import shuffled_shares

    return shuffled_shares(g, T, n, seed)


def stopping(ctx: Context) -> list[Section]:
    """Two sections: the paper's trends in each stopping map, and the network and SDE maps compared cell by
    cell.

    Trend rule: "holds" when, for each source, ≥ 90% of adjacent grid pairs are ordered as claimed (t* falls
    with γ, rises with τ0, within 0.05·T); "does not hold" otherwise. Agreement rule: "holds" when ≥ 80% of the
    cells agree (the 95% bootstrap interval of the difference of median t* meets ±0.05·T); else "does not
    hold", with the width check (the gap at growing n) giving the reason."""
    from deeplimit.transfer.verdict_rules import stopping_agreement_verdict, stopping_trend_verdict

    t = ctx.settings("stopping")
    out = ctx.out / "sde" / "stopping-map"
    t0 = time.perf_counter()
    summary = sde_study(ctx, "stopping-map", out, overrides={"paths": t["paths"]}, gammas=t["gammas"],
                        tau0s=t["tau0s"], source=t["source"])
    table = pd.DataFrame(summary["table"])
    preset = summary["preset"]
    T = preset["d"] / preset["n"]
    shares, parts = {}, []
    for src, g in table.groupby("source"):
        shares[src] = _monotone_share(g, T)
        rho_g = g[["gamma", "median_t"]].corr(method="spearman").iloc[0, 1] if g["median_t"].nunique() > 1 else np.nan
        rho_t = g[["tau0", "median_t"]].corr(method="spearman").iloc[0, 1] if g["median_t"].nunique() > 1 else np.nan
        parts.append(f"{src}: {shares[src]:.0%} of adjacent cell pairs ordered as claimed; Spearman correlation "
                     f"of median t* with γ {rho_g:+.2f}, with τ0 {rho_t:+.2f}")
    # Negative control: the same values shuffled over the cells. If shuffled maps also clear 90%, the rule has no
    # power on this map (plateaus of t* = T or of immediate exits make most pairs "ordered" by ties).
    null = {src: _shuffled_shares(g, T) for src, g in table.groupby("source")}
    tv = stopping_trend_verdict(shares, null)
    control = Control.from_check(tv.checks[0])
    grid = ""
    if t["gammas"]:
        grid = " --gammas " + " ".join(f"{g:g}" for g in t["gammas"]) + " --tau0s " + " ".join(
            f"{x:g}" for x in t["tau0s"])
    command = f"deeplimit sde --scenario stopping-map --paths {t['paths']} --source {t['source']}{grid}"
    scale_gap = (f"Here n = {preset['n']}, d = {preset['d']}, m = {preset['m']}, {t['paths']} paths per cell, "
                 f"{table.groupby('source').size().max()} cells, one seed; the paper: n = d = 200, 100 samples, "
                 "γ ∈ {0, 2^-3, 2^-2.8, …, 1} × τ0 ∈ 2^-10 … 2^6 (17 × 17 cells), m not stated.")
    # the figures the study writes (never a glob: only what the run drew is embedded)
    maps = [out / f"stopping-map_{src}.png" for src in sorted(table["source"].unique())]
    trend = Section(
        title="Stopping time over (γ, τ0): the paper's trends",
        claim=("The attention covariance can blow up; the median exit time t* from the band [1e-4, 1e4] (start "
               "token norms ≈ 10√n) shrinks as γ grows and grows with τ0: t* = 1 for small γ, no exit in the "
               "large-τ0 region, worst at γ = 1 with small τ0 (Noci et al. 2023, Figs. 5 right, 8, computed on "
               "networks with n = d = 200)."),
        measured=("; ".join(parts) + f" (start X₀ iid N(0, {preset['init_std']:g}²))."),
        verdict=tv.verdict, reason=tv.reason,
        controls=[control],
        figures=maps, tables=[("median and 10% stopping times", table)],
        command=command, wall_s=time.perf_counter() - t0, scale_gap=scale_gap, settings=t)
    if "cells" not in summary:
        return [trend]
    cells = pd.DataFrame(summary["cells"])
    agr = summary["agreement"]
    width = _stopping_width(ctx, t, out)
    ns = sorted(width["n"].unique())
    gap_first = width[width["n"] == ns[0]]["gap"].abs()
    gap_last = width[width["n"] == ns[-1]]["gap"].abs()
    shrinks = bool((gap_last.to_numpy() <= gap_first.to_numpy() + 0.05 * T).all()
                   and gap_last.mean() < gap_first.mean())
    bad = cells[~cells["agree"]]
    av = stopping_agreement_verdict(agr["agree_share"])
    step_shift = float((width["median_sde_fine"] - width["median_sde"]).abs().max())
    step_ok = step_shift < 0.5 * float(gap_first.mean())
    sat = (bad["logit_scale"] > 0.25).mean() if len(bad) else float("nan")
    measured = (
        f"{agr['agree']} of {agr['cells']} cells agree ({agr['agree_share']:.0%}); {agr['big_gaps']} cells differ "
        f"by more than 0.25 in median t*, the largest by {agr['max_abs_diff']:.2f}; Spearman correlation of the two "
        f"maps over the cells {agr['spearman']:+.2f}. ")
    trend_words = " (shrinks in every checked cell)" if shrinks else " (does not shrink in every cell)"
    width_words = (
        f"Width check (same start scale, d = n): mean |gap| {gap_first.mean():.2f} at n = {ns[0]}, "
        f"{gap_last.mean():.2f} at n = {ns[-1]}{trend_words}; "
        f"at dt = {(preset['dt'] or 0.01) / 10:g} the SDE's median t* moves by at most {step_shift:.3f}.")
    if len(bad) and shrinks and step_ok and sat >= 0.9:
        # the measured cause: each piece of it is checked above, the sentence is only printed when all hold
        measured += (
            f"In {int((bad['diff'] > 0).sum())} of the {len(bad)} disagreeing cells the network exits later than "
            f"the SDE. Cause, measured: the start V₀ ≈ {preset['init_std']**2:g}·I makes the logits Y/τ of order "
            f"eigmax(V₀)/(τ0√n) (column logit_scale; {sat:.0%} of the disagreeing cells have it > 0.25), outside "
            f"the small-logit expansion the SDE is built on (spec §2.2–2.3): the softmax saturates, its output is "
            f"bounded, and the network's covariance grows far slower than the SDE's cubic drift. {width_words} So "
            f"the gap is a finite-width effect, not the SDE's step: the SDE is the n → ∞ limit of these maps, and "
            f"at n = {preset['n']} it does not describe the saturated cells.")
    elif len(bad):
        measured += f"The cause of the {len(bad)} disagreeing cells is not established by this run. {width_words}"
    else:
        measured += width_words
    agree = Section(
        title="Stopping time: network and SDE maps compared cell by cell (extra check)",
        claim=("Not a claim the paper makes: the paper shows the maps' trends (Figs. 5, 8 are network maps; its "
               "explanation of them is the SDE's cubic drift). Since the SDE is the limit of the shaped network, "
               "this extra check asks whether at the paper's n = d = 200 the two maps also agree cell by cell; its "
               "verdict is shown but not counted among the papers' results."),
        counted=False,
        measured=measured, verdict=av.verdict, reason=av.reason,
        figures=[out / "stopping-map_diff.png"],
        tables=[("per cell: median t* of each source, difference and its 95% bootstrap interval", cells),
                ("width check: network median t* at growing n (d = n) vs the SDE", width)],
        command=command, wall_s=time.perf_counter() - t0, scale_gap=scale_gap,
        settings={**t, "agreement_rule": "95% bootstrap interval of the median difference meets ±0.05·T; "
                                         "holds when ≥ 80% of cells agree"})
    return [trend, agree]
