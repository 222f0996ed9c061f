"""The verdict rows of the report's Muon / weight-decay section, on the slope statistic (issue 14's experiments).

Each row is one (experiment, rule) of :mod:`deeplimit.transfer.optimizers`: the slope of log2 η̂* (or of the
optimal / threshold weight decay) per doubling of the size, as the mean of per-seed slopes with its Student-t 95 %
interval (:func:`deeplimit.transfer.analysis.slope_table`, :func:`deeplimit.transfer.optimizers.threshold_verdict`),
judged against the protocol's margin. A row is one of three roles:

* **evidence** — a row with a prediction ("transfers" or "shifts") whose runs could contradict it;
* **calibration** — a row whose runs are an exact relabelling of another row's (the Muon ``blocks_only`` rule with
  U, V frozen is Depth-μP with its LR × m_L^−½, so its slope is Depth-μP's −½ per doubling by construction). It
  shows the estimator's power — it must come out "shifts" — and is never counted for or against the claim.
  LR rows are detected from the losses (:func:`deeplimit.transfer.statistics.relabelling`); the hidden-only
  constant-λ row is one by construction (see :data:`STRUCTURAL_RELABELLINGS`);
* **no prediction** — shown, never counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from deeplimit.transfer.analysis import SLOPE_MARGIN, TransferAnalysis, _one_run_per_point, slope_table
from deeplimit.transfer.optimizers import AXES, EXPECTED, SIZES, DecayThreshold, analyses, thresholds
from deeplimit.transfer.statistics import relabelling

__all__ = ["muon_transfer_section", "PREDICTED_SLOPE", "RELABELLING_CANDIDATES", "STRUCTURAL_RELABELLINGS",
           "section_rows", "agreement", "section_verdict", "section_lines", "slope_words"]

# The slope per doubling a predicted shift must be consistent with (optimizers spec §3-§4), where theory gives one.
PREDICTED_SLOPE = {("muon_depth_transfer", "blocks_only"): -0.5,
                   ("weight_decay_hidden_constant", "mup"): 1.0}
# Rows that may be a relabelling of another row: (experiment, rule) → (experiment, rule, reflect). ``reflect``:
# the other row's axis is τ, and λ = 1/(η_g·τ·T) maps log2 τ to −log2 λ plus a per-size constant, so its axis is
# negated before the shift is looked for.
RELABELLING_CANDIDATES = {("muon_depth_transfer", "blocks_only"): ("muon_depth_transfer", "depth_mup", False),
                          ("weight_decay_width_constant", "mup"): ("weight_decay_width_timescale", "mup", True)}
# Rows that are a relabelling by construction, where the losses cannot show it (the two grids share no point at
# the true shift). Hidden-only decay with input and readout frozen: every decayed tensor is a μP hidden matrix
# with one LR η_g (vectors never decay, decision D4), so the run at a constant λ IS the run at τ = 1/(η_g·λ·T):
# the λ threshold is −(the τ threshold) + log2(1/(η_g·T)), and with η_g ∝ 1/n its slope is 1 − the τ slope.
STRUCTURAL_RELABELLINGS = {
    ("weight_decay_hidden_constant", "mup"): ("weight_decay_hidden_timescale", "mup",
                                              "λ = 1/(η_g·τ·T) with one η_g ∝ 1/n for every decayed tensor: its "
                                              "slope is 1 − the τ row's by construction"),
}


def _runs(result: TransferAnalysis, rule: str, reflect: bool = False) -> pd.DataFrame:
    sub = result.runs[result.runs["rule"].astype(str) == str(rule)]
    sub = _one_run_per_point(sub, result.size, "seed")
    return sub.assign(log2_lr=-sub["log2_lr"]) if reflect else sub


def _relabelled(results: Mapping[str, TransferAnalysis], name: str, rule: str) -> str | None:
    """Why row (name, rule) is a relabelling of another row, or None (not one, or not checkable here)."""
    cand = RELABELLING_CANDIDATES.get((name, rule))
    if cand is not None and cand[0] in results and name in results:
        other, other_rule, reflect = cand
        if str(other_rule) in set(results[other].runs["rule"].astype(str)):
            rel = relabelling(_runs(results[other], other_rule, reflect), _runs(results[name], rule),
                              size=SIZES[name])
            if rel is not None and rel.linear:
                return f"a relabelling of {other} / {other_rule}: {rel.text()}"
    return None


def _outcome(verdict: str, lo: float, hi: float, margin: float, expected: str | None) -> str:
    """A "shifts" against a "transfers" prediction counts only when its interval lies wholly beyond the margin (a
    minimum-effect test: a slope that is non-zero but inside the margin refutes nothing)."""
    if expected == "transfers" and verdict == "shifts" and not (lo > margin or hi < -margin):
        return "inconclusive"
    return verdict


def _row(name: str, rule: str, size: str, axis: str, stats: Mapping, role: str, why: str) -> dict:
    expected = EXPECTED.get((name, rule))
    lo, hi = stats["slope_ci_low"], stats["slope_ci_high"]
    outcome = _outcome(stats["verdict"], lo, hi, stats["margin"], expected)
    decided = outcome in ("transfers", "shifts") and expected is not None
    if role != "evidence":
        agrees = None
    else:
        agrees = (outcome == expected) if decided else None
    return {"experiment": name, "rule": rule, "size": size, "axis": axis, "role": role, "why": why,
            "slope": stats["slope"], "slope_ci_low": lo, "slope_ci_high": hi, "margin": stats["margin"],
            "predicted_slope": PREDICTED_SLOPE.get((name, rule), math.nan), "regret": stats["regret"],
            "regret_ci_high": stats["regret_ci_high"], "verdict": stats["verdict"], "expected": expected,
            "agrees": agrees, "calibration_passed": (stats["verdict"] == "shifts") if role == "calibration" else None,
            "n_seeds": stats["n_seeds"], "drift": stats["drift"], "text": stats["text"]}


def section_rows(results: Mapping[str, TransferAnalysis],
                 decay_thresholds: Mapping[str, DecayThreshold] | None = None, *,
                 margin: float = SLOPE_MARGIN) -> pd.DataFrame:
    """Verdict rows from :func:`deeplimit.transfer.optimizers.analyses` and ``thresholds``. One row per
    (experiment, rule): the slope per doubling with its 95 % interval, the margin, the regret (LR and τ/λ optima;
    none for a threshold), the verdict, what theory expects, the row's ``role`` (evidence, calibration, no
    prediction) and ``agrees`` — True / False for a decided evidence row, None otherwise (an undecided,
    degraded, calibration or unpredicted row is never counted). ``calibration_passed``: a calibration row came out
    "shifts", as its known relabelling says it must."""
    rows = []
    for name, result in results.items():
        for rule in sorted(result.runs["rule"].astype(str).unique()):
            predicted = PREDICTED_SLOPE.get((name, rule))
            t = slope_table(result.runs[result.runs["rule"].astype(str) == rule], result.group, result.size,
                            margin=margin, predicted=None if predicted is None else {(rule,): predicted}).iloc[0]
            d = result.drift[result.drift["rule"].astype(str) == rule]
            why = _relabelled(results, name, rule)
            role = "calibration" if why else "evidence" if EXPECTED.get((name, rule)) else "no prediction"
            stats = {"slope": t["seed_slope"], "slope_ci_low": t["seed_slope_ci_low"],
                     "slope_ci_high": t["seed_slope_ci_high"], "margin": t["margin"], "regret": t["regret"],
                     "regret_ci_high": t["regret_ci_high"], "verdict": t["verdict"], "n_seeds": t["n_seeds_slope"],
                     "drift": float(d["drift"].iloc[0]) if len(d) else math.nan, "text": t["verdict_text"]}
            rows.append(_row(name, rule, SIZES[name], AXES.get(name, "log2_lr"), stats, role, why or ""))
    for name, th in (decay_thresholds or {}).items():
        structural = STRUCTURAL_RELABELLINGS.get((name, "mup"))
        role = "calibration" if structural else "evidence" if EXPECTED.get((name, "mup")) else "no prediction"
        why = ""
        if structural:
            other = (decay_thresholds or {}).get(structural[0])
            why = f"a relabelling of {structural[0]} / {structural[1]}: {structural[2]}"
            if other is not None and math.isfinite(th.slope) and math.isfinite(other.slope):
                why += f" (measured: {th.slope:+.2f} + {other.slope:+.2f} = {th.slope + other.slope:+.2f})"
        lo, hi = th.slope_ci
        stats = {"slope": th.slope, "slope_ci_low": lo, "slope_ci_high": hi, "margin": th.margin,
                 "regret": math.nan, "regret_ci_high": math.nan, "verdict": th.verdict, "n_seeds": th.n_slopes,
                 "drift": th.drift,
                 "text": (f"{th.verdict}: the decay threshold (loss +{th.delta:g} nat over no decay) moves "
                          f"{th.slope:+.2f} [{lo:+.2f}, {hi:+.2f}] per doubling of {th.size} (margin ±{th.margin:g}, "
                          f"{th.n_slopes} seeds)")}
        rows.append(_row(name, "mup", th.size, th.axis, stats, role, why))
    return pd.DataFrame.from_records(rows)


def muon_transfer_section(tables: Mapping[str, pd.DataFrame], *, n_boot: int = 1000) -> pd.DataFrame:
    """Verdict rows of the "Muon transfer" section from the long tables of the sweeps of
    :mod:`deeplimit.transfer.optimizers`: ``tables`` maps an experiment name (a key of ``optimizers.SIZES``, e.g.
    ``"muon_width_transfer"``) to its long table (``deeplimit.transfer.table.transfer_results``). One row per
    (experiment, rule): see :func:`section_rows`."""
    return section_rows(analyses(tables, n_boot=n_boot), thresholds(tables))


def agreement(value: object) -> bool | None:
    """A row's ``agrees`` as read back from a table: True, False, or None (undecided; pandas may store NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def section_verdict(section: pd.DataFrame) -> str:
    """The report's word for the rows of :func:`section_rows`, counting evidence rows only: ``does not hold`` (an
    evidence row decided against its prediction), ``holds`` (every evidence row as predicted and every
    calibration came out "shifts"), ``partly`` (the decided rows as predicted, the rest undecided or a
    calibration without power) or ``inconclusive`` (nothing decided at this budget). A table without a ``role``
    column counts every row."""
    evidence = section[section["role"] == "evidence"] if "role" in section.columns else section
    agrees = [a for a in map(agreement, evidence["agrees"]) if a is not None]
    if not agrees:
        return "inconclusive"
    if not all(agrees):
        return "does not hold"
    calibrated = True
    if "role" in section.columns:
        calibrated = all(agreement(v) is True for v in section.loc[section["role"] == "calibration",
                                                                    "calibration_passed"])
    return "holds" if len(agrees) == len(evidence) and calibrated else "partly"


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) and np.isfinite(hi) else "no interval"


def slope_words(row: Mapping) -> str:
    """``slope +0.04 per doubling of depth, 95% CI [−0.02, +0.10] (margin ±0.25)`` of one row; "n/a" where no
    seed gave a slope."""
    slope = f"{row['slope']:+.2f}" if np.isfinite(row["slope"]) else "n/a"
    return (f"slope {slope} per doubling of {row['size']}, 95% CI {_ci(row['slope_ci_low'], row['slope_ci_high'])} "
            f"(margin ±{row['margin']:g})")


def section_lines(section: pd.DataFrame) -> list[str]:
    """One plain line per row of :func:`section_rows` (for a report or a terminal)."""
    out = []
    mark = {True: "as predicted", False: "AGAINST the prediction", None: "not decided at this budget"}
    for _, r in section.iterrows():
        expected = r["expected"] if isinstance(r["expected"], str) else None
        role = r.get("role", "evidence")
        if role == "calibration":
            note = ("calibration, not evidence (" + str(r.get("why", "")) + "): "
                    + ("rejects transfer, as it must" if agreement(r.get("calibration_passed")) else
                       "did not reject transfer: the estimator's power is not shown"))
        else:
            note = mark[agreement(r["agrees"])] if expected is not None else "no prediction to compare with"
        out.append(f"{r['experiment']} / {r['rule']}: {r['verdict']} ({slope_words(r)}; expected "
                   f"{expected or 'nothing'}; {note})")
    return out
