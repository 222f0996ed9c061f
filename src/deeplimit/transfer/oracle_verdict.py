"""The ``oracle`` claim (issue 24): fit the transfer oracle on small groups, score its η* forecast on held-out
larger groups the fit never saw, and decide by the frozen protocol's criteria.

* :func:`heldout_validation` — from a table of runs (one row per run: depth, samples, lr, loss, seed, status)
  and the fitted / held-out groups: the oracle's fit (:func:`~deeplimit.transfer.oracle.fit_oracle`, the
  report's estimator), its forecast at each held-out group with a **per-seed** prediction interval, each
  held-out seed's own η̂*, the regret, the naive forecast (the nearest fitted group's η̂*, reused) and the
  sensitivity control (the same forecast and interval moved by ±``shift`` octaves). Returns a JSON-able dict.
* :func:`oracle_verdict` — a pure function of those numbers and the protocol's entry: "holds", "does not
  hold" or "inconclusive".

The unit of a held-out point is one (group, seed): that seed's η̂*. The law is fitted to group means, so its
Student-t interval is for a group's *seed-mean* η̂* (variance V_mean = s²(1 + h₀)); one seed scatters more, by
the within-group seed variance s_w² (pooled over the fitted groups) less the part of it already in the mean:
V_seed = V_mean + s_w²(1 − 1/k), k the seeds per fitted group, with Welch–Satterthwaite degrees of freedom.
An interval for the mean tested against single seeds would under-cover by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle import fit_oracle, group_optima, prepared
from deeplimit.transfer.oracle_eval import _regret
from deeplimit.transfer.verdicts import Check, ClaimVerdict

__all__ = ["Score", "heldout_validation", "oracle_verdict", "per_seed_interval", "runs_table"]

# Defaults where the protocol entry does not state the number (it does: claims.oracle).
MAX_ABS_LOG2_ERROR = 0.5
MAX_REGRET = 0.005
MIN_COVERAGE = 0.8
SENSITIVITY_OCTAVES = 1.0
MIN_SCORED_SHARE = 0.67


def _get(claim: Mapping[str, Any] | None, key: str, default: float) -> float:
    return float((claim or {}).get(key, default))


def per_seed_interval(pred: float, mean_interval: tuple[float, float], mean_df: int, within_var: float,
                      within_df: int, k: float, level: float) -> tuple[float, float, float]:
    """The ``level`` prediction interval of ONE seed's log2 η̂* at a target, and its degrees of freedom.

    ``mean_interval``: the law's Student-t interval (``mean_df`` df) for a group's seed-mean η̂* there, so
    V_mean = (half-width / t_{mean_df})²; ``within_var``: the pooled within-group variance of the seeds' η̂*
    (``within_df`` df); ``k``: seeds per fitted group. V_seed = V_mean + within_var·(1 − 1/k), df by
    Welch–Satterthwaite. Returns (lo, hi, df)."""
    half_mean = (mean_interval[1] - mean_interval[0]) / 2
    v_mean = (half_mean / float(stats.t.ppf(0.5 + level / 2, mean_df))) ** 2
    v_add = max(within_var, 0.0) * max(1.0 - 1.0 / k, 0.0)
    v = v_mean + v_add
    terms = v_mean ** 2 / mean_df + (v_add ** 2 / within_df if within_df > 0 and v_add > 0 else 0.0)
    df = v * v / terms if terms > 0 else float(mean_df)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(v)
    return pred - half, pred + half, float(df)


def runs_table(tables: Sequence[tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """Sweeps' long tables, each with the metric to score, → the table :func:`heldout_validation` reads: one row
    per run, ``loss`` = the metric at the run's last step (+∞ for a diverged run), ``lr`` = 2^``log2_lr``."""
    from deeplimit.transfer.oracle_table import one_row_per_run

    frames = []
    for table, metric in tables:
        runs, col = one_row_per_run(table, metric)
        frames.append(runs.rename(columns={col: "loss"}))
    runs = pd.concat(frames, ignore_index=True)
    runs["lr"] = 2.0 ** runs["log2_lr"].astype(float)
    return runs


def _sel(frame: pd.DataFrame, groups: Sequence[tuple[float, float]], x: Sequence[str]) -> pd.DataFrame:
    keys = set(tuple(float(v) for v in g) for g in groups)
    idx = [tuple(float(v) for v in row) in keys for row in frame[list(x)].to_numpy()]
    return frame[np.asarray(idx, dtype=bool)]


def heldout_validation(runs: pd.DataFrame, fitted: Sequence[tuple[float, float]],
                       held_out: Sequence[tuple[float, float]], *, x: Sequence[str] = ("depth", "samples"),
                       lr: str = "lr", loss: str = "loss", level: float = 0.8, shift: float = 1.0,
                       points: int = 5, fixed: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Fit the oracle on the ``fitted`` groups of ``runs`` and score it on the ``held_out`` groups.

    ``runs``: one row per run with the ``x`` columns, ``lr`` (natural units), ``loss``, ``seed`` and optionally
    ``status`` ("diverged" = +∞); ``fitted``/``held_out``: (depth, samples) pairs. Returns ``fit`` (the law),
    ``rows`` (one per held-out group and seed: measured, predicted, per-seed interval, naive, errors,
    covered), ``groups`` (one per held-out group: seed-mean η̂*, regret of the forecast and of the naive one)
    and ``oracle`` / ``naive`` / ``shift_plus`` / ``shift_minus`` scores (:class:`Score` as dicts). ``fixed``:
    exponents of the η* law held fixed ({size variable: exponent}; ``{"depth": 0}`` is what Depth-μP
    promises), the others fitted. A fit the data cannot support (too few interior optima, one seed per group)
    raises :class:`DeeplimitError`."""
    x = tuple(x)
    fit_rows, held_rows = _sel(runs, fitted, x), _sel(runs, held_out, x)
    if fit_rows.empty or held_rows.empty:
        raise DeeplimitError("the runs hold no fitted or no held-out group; run both sweeps of the claim")
    oracle = fit_oracle(fit_rows, x, lr, loss, seed="seed", level=level, points=points,
                        fixed={"lr": dict(fixed)} if fixed else None)
    law = oracle.laws[()]["lr"]
    fitted_opt = [g for g in oracle.optima if not g.censored["lr"]]
    devs, counts = [], []
    for g in fitted_opt:
        v = np.array([s for s in g.per_seed["lr"] if math.isfinite(s)])
        counts.append(len(v))
        devs.extend((v - v.mean()).tolist())
    within_df = int(sum(counts) - len(counts))
    if within_df < 1:
        raise DeeplimitError("one seed per fitted group: a single seed's scatter cannot be estimated, so no "
                             "per-seed interval; run ≥ 2 seeds")
    within_var = float(np.sum(np.square(devs)) / within_df)
    k = float(np.mean(counts))
    prep, cols = prepared(held_rows, x, lr, loss, batch=None, wd=None, group=(), seed="seed")
    rows, groups = [], []
    for g in group_optima(prep, cols, points):
        sizes = {v: g.sizes[v] for v in x}
        pred = law.predict(sizes)
        lo, hi, df = per_seed_interval(pred, law.predict_interval(sizes, level), law.df, within_var, within_df, k,
                                       level)
        near = min(fitted_opt, key=lambda f: sum((math.log2(f.sizes[v]) - math.log2(sizes[v])) ** 2 for v in x))
        naive = near.log2["lr"]
        regret = {name: _regret(prep, sizes, {}, {"lr": val}, []) for name, val in
                  (("oracle", pred), ("naive", naive), ("shift_plus", pred + shift), ("shift_minus", pred - shift))}
        groups.append({**sizes, "measured_log2_lr": g.log2["lr"], "censored": g.censored["lr"],
                       "predicted_log2_lr": pred, "lo": lo, "hi": hi, "df": df, "naive_log2_lr": naive,
                       "naive_from": dict(near.sizes), "n_seeds": g.n_seeds,
                       **{f"regret_{n}": r for n, r in regret.items()}})
        for s, m in enumerate(g.per_seed["lr"]):
            rows.append({**sizes, "seed_index": s, "measured_log2_lr": m, "predicted_log2_lr": pred, "lo": lo,
                         "hi": hi, "naive_log2_lr": naive})
    table = pd.DataFrame(rows)
    scored = table[np.isfinite(table["measured_log2_lr"].to_numpy(float))]
    m = scored["measured_log2_lr"].to_numpy(float)
    p, lo_, hi_ = (scored[c].to_numpy(float) for c in ("predicted_log2_lr", "lo", "hi"))
    n_ = scored["naive_log2_lr"].to_numpy(float)
    gframe = pd.DataFrame(groups)

    def score(pred_: np.ndarray, lo_s: np.ndarray | None, hi_s: np.ndarray | None, regret_col: str) -> dict:
        cover = float(np.mean((lo_s <= m) & (m <= hi_s))) if lo_s is not None and len(m) else math.nan
        reg = gframe[regret_col].to_numpy(float)
        reg = reg[np.isfinite(reg)]
        return Score(mean_abs_log2_error=float(np.mean(np.abs(pred_ - m))) if len(m) else math.nan,
                     mean_regret=float(reg.mean()) if reg.size else math.nan, coverage=cover,
                     n_points=int(len(m))).to_dict()

    return json_safe({
        "fit": law.to_dict(), "level": level, "shift_octaves": shift, "within_seed_sd": math.sqrt(within_var),
        "within_df": within_df, "seeds_per_group": k, "n_expected": int(len(table)),
        "fitted_groups": [{**g.sizes, "log2_lr": g.log2["lr"], "censored": g.censored["lr"]}
                          for g in oracle.optima],
        "groups": groups, "rows": rows,
        "oracle": score(p, lo_, hi_, "regret_oracle"), "naive": score(n_, None, None, "regret_naive"),
        "shift_plus": score(p + shift, lo_ + shift, hi_ + shift, "regret_shift_plus"),
        "shift_minus": score(p - shift, lo_ - shift, hi_ - shift, "regret_shift_minus")})


@dataclass(frozen=True)
class Score:
    """A forecast's score on the held-out points: mean |log2 error| (octaves, over (group, seed) points), mean
    regret (fraction of the best loss, over groups), interval coverage (share of points; NaN without an
    interval) and the number of scored points."""

    mean_abs_log2_error: float
    mean_regret: float
    coverage: float
    n_points: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean_abs_log2_error": self.mean_abs_log2_error, "mean_regret": self.mean_regret,
                "coverage": self.coverage, "n_points": self.n_points}

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Score:
        def f(key: str) -> float:
            v = d.get(key)
            return math.nan if v is None else float(v)

        return cls(f("mean_abs_log2_error"), f("mean_regret"), f("coverage"), int(d.get("n_points") or 0))


def _misses(s: Score, claim: Mapping[str, Any] | None) -> list[str]:
    """The criteria ``s`` fails (a NaN fails its criterion)."""
    err, reg, cov = (_get(claim, k, d) for k, d in (("max_abs_log2_error", MAX_ABS_LOG2_ERROR),
                                                    ("max_regret", MAX_REGRET), ("min_coverage", MIN_COVERAGE)))
    out = []
    if not s.mean_abs_log2_error <= err:
        out.append(f"mean |log2 error| {s.mean_abs_log2_error:.2f} > {err:g}")
    if not s.mean_regret <= reg:
        out.append(f"regret {100 * s.mean_regret:.2f}% > {100 * reg:g}%")
    if not s.coverage >= cov:
        out.append(f"coverage {s.coverage:.0%} < {cov:.0%}")
    return out


def _words(s: Score) -> str:
    cov = "" if not math.isfinite(s.coverage) else f", coverage {s.coverage:.0%}"
    return (f"mean |log2 error| {s.mean_abs_log2_error:.2f}, regret {100 * s.mean_regret:.2f}%{cov} "
            f"({s.n_points} points)")


def oracle_verdict(oracle: Score, controls: Mapping[str, Score], *, n_expected: int,
                   naive: Score | None = None, claim: Mapping[str, Any] | None = None) -> ClaimVerdict:
    """The ``oracle`` claim's verdict from the held-out scores (protocol ``claims.oracle``).

    * "inconclusive" when fewer than ``min_scored_share`` of the ``n_expected`` held-out points are scored (a
      seed's optimum on the LR grid's edge, or no fit), or when the criteria pass but a sensitivity control
      (``controls``: the same forecast moved by ±``sensitivity_octaves``) passes them too — the test cannot
      tell a forecast that far off from a good one at this sample size;
    * "holds" when mean |log2 error| ≤ ``max_abs_log2_error``, mean regret ≤ ``max_regret`` and coverage ≥
      ``min_coverage``, and every control fails at least one of them;
    * "does not hold" when the forecast fails any of the three (on enough scored points).

    ``naive`` (reuse the nearest fitted group's η̂*) is reported in the statistics, never decides."""
    need = _get(claim, "min_scored_share", MIN_SCORED_SHARE)
    octaves = _get(claim, "sensitivity_octaves", SENSITIVITY_OCTAVES)
    checks = []
    for name, c in controls.items():
        miss = _misses(c, claim)
        checks.append(Check(f"sensitivity: the forecast moved by {name}", "fails a criterion (the test has power)",
                            _words(c) + (f" → rejected ({'; '.join(miss)})" if miss else " → accepted"),
                            bool(miss), evidence=False))
    st: dict[str, Any] = {"oracle": oracle.to_dict(), "controls": {k: v.to_dict() for k, v in controls.items()},
                          "n_expected": n_expected}
    if naive is not None:
        st["naive"] = naive.to_dict()
    if n_expected < 1 or oracle.n_points < need * n_expected:
        return ClaimVerdict("inconclusive", f"only {oracle.n_points} of {n_expected} held-out (group, seed) optima "
                            f"are scored (rule: ≥ {need:.0%}; the others lie on the LR grid's edge or were not "
                            "fitted)", tuple(checks), json_safe(st))
    miss = _misses(oracle, claim)
    if miss:
        return ClaimVerdict("does not hold", f"the forecast misses on the held-out points: {'; '.join(miss)} "
                            f"({_words(oracle)})", tuple(checks), json_safe(st))
    blind = [name for name, c in controls.items() if not _misses(c, claim)]
    if blind:
        return ClaimVerdict("inconclusive", f"the forecast meets every criterion ({_words(oracle)}), but so does "
                            f"the forecast moved by {', '.join(blind)}: the test cannot tell a {octaves:g}-octave "
                            "error from none at this sample size", tuple(checks), json_safe(st))
    return ClaimVerdict("holds", f"{_words(oracle)} meet every criterion, and the forecast moved by ±{octaves:g} "
                        "octave fails them", tuple(checks), json_safe(st))
