"""Transfer analysis on synthetic tables with known optima."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.analysis import (
    analyze,
    estimate_optimum,
    final_values,
    fit_trend,
    paired_difference,
    slope_table,
    summarize,
)

GRID = np.arange(-12.0, -3.5, 1.0)


def _table(slopes: dict[str, float], depths=(4, 8, 16, 32, 64, 128), seeds=3, noise=0.01,
           rng: int = 0) -> pd.DataFrame:
    """Parabolic loss in log2 LR whose vertex moves by ``slope`` per doubling of depth."""
    gen = np.random.default_rng(rng)
    rows = []
    for rule, k in slopes.items():
        for L in depths:
            opt = -8.0 + k * math.log2(L / depths[0])
            for s in range(seeds):
                for x in GRID:
                    rows.append({"rule": rule, "depth": L, "seed": s, "log2_lr": x,
                                 "value": 1.0 + 0.1 * (x - opt) ** 2 + gen.normal(0, noise)})
    return pd.DataFrame(rows)


def test_parabola_vertex_recovered_exactly() -> None:
    x = np.arange(-10.0, -4.0)
    opt = estimate_optimum(x, 0.3 * (x + 7.3) ** 2 + 2.0)
    assert opt.refined and not opt.censored
    assert opt.log2_lr == pytest.approx(-7.3, abs=1e-9)
    assert opt.loss == pytest.approx(2.0, abs=1e-9)


def test_edge_argmin_is_censored_and_not_refined() -> None:
    x = np.arange(-10.0, -4.0)
    opt = estimate_optimum(x, x)  # increasing: minimum on the first grid point
    assert opt.censored and not opt.refined and opt.log2_lr == -10.0


def test_diverged_points_never_argmin() -> None:
    x = np.arange(-6.0, 0.0)
    y = np.array([5.0, 4.0, 3.0, 2.0, math.inf, math.nan])  # would keep falling, but diverged
    opt = estimate_optimum(x, y)
    assert opt.log2_lr == -3.0 and not opt.refined and not opt.censored
    none = estimate_optimum(x, np.full(6, math.inf))
    assert math.isnan(none.log2_lr) and none.index == -1


def test_bootstrap_interval_covers_truth() -> None:
    table = _table({"flat": 0.0}, depths=(8,), seeds=6, noise=0.02, rng=3)
    summary = summarize(table, n_boot=1000)
    row = summary.iloc[0]
    assert row["ci_low"] <= -8.0 <= row["ci_high"]
    assert row["ci_high"] - row["ci_low"] < 0.5
    assert len(row["per_seed_argmins"].split(";")) == 6
    assert row["se"] >= row["half_step"] == 0.5


def test_verdict_flips_between_transfers_and_shifts() -> None:
    result = analyze(_table({"flat": 0.0, "drifting": -0.5}), n_boot=300)
    drift = result.drift.set_index("rule")
    assert drift.loc["flat", "verdict"] == "transfers"
    assert abs(drift.loc["flat", "drift"]) < 0.2
    assert drift.loc["drifting", "verdict"] == "shifts"
    assert drift.loc["drifting", "drift"] == pytest.approx(-2.5, abs=0.3)  # −0.5 × log2(128/4)
    assert drift.loc["drifting", "drift_ci_high"] < 0
    # the verdict is the slope statistic's: per-seed slopes of η̂* per doubling, their t interval, the regret
    assert drift.loc["flat", "verdict_text"].startswith("transfers: the 95% slope interval")
    assert "4→128 blocks" in drift.loc["flat", "verdict_text"]
    assert drift.loc["drifting", "seed_slope"] == pytest.approx(-0.5, abs=0.05)
    assert drift.loc["drifting", "seed_slope_ci_high"] < -drift.loc["drifting", "margin"]
    assert drift.loc["flat", "regret_ci_high"] < drift.loc["flat", "regret_margin"] == 0.02
    # A shifting rule still predicts the LR at the target size from its fitted power law.
    assert math.log2(result.predict_lr("drifting", 256)) == pytest.approx(-8 - 0.5 * 6, abs=0.35)
    assert result.trends[("drifting",)].exponent == pytest.approx(-0.5, abs=0.1)


def test_censored_sizes_are_excluded_from_the_fit() -> None:
    table = _table({"p": -1.0}, depths=(4, 8, 16, 32, 64))  # vertex leaves the grid at L = 64
    result = analyze(table, n_boot=200)
    s = result.summary.set_index("depth")
    assert bool(s.loc[64, "censored"]) and not bool(s.loc[4, "censored"])
    d = result.drift.iloc[0]
    assert d["n_censored"] >= 1 and d["n_used"] == len(s) - d["n_censored"]
    assert "censored" in d["verdict_text"]


def test_diverged_status_counts_as_infinite_but_stays() -> None:
    table = _table({"p": 0.0}, depths=(4, 8), seeds=2)
    table["status"] = "ok"
    hot = table["log2_lr"] >= -5
    table.loc[hot, "status"] = "diverged"
    runs = final_values(table)
    assert len(runs) == len(table) and np.isinf(runs.loc[runs["log2_lr"] >= -5, "value"]).all()
    summary = summarize(runs, n_boot=100)
    assert (summary["n_diverged"] == 2 * 2).all()  # 2 LRs × 2 seeds per depth
    assert (summary["log2_eta_star"] < -5).all()


def test_long_table_metric_selection() -> None:
    table = _table({"p": 0.0}, depths=(4, 8), seeds=1)
    table["run_id"] = [f"r{i}" for i in range(len(table))]
    table["metric"], table["step"] = "loss", 100
    early = table.assign(metric="loss", step=10, value=99.0)
    long = pd.concat([early, table])
    runs = final_values(long, "loss")
    assert len(runs) == len(table) and (runs["value"] < 99).all()  # last step wins
    with pytest.raises(DeeplimitError, match="not in the table"):
        final_values(long, "accuracy")


def test_fit_trend_and_verdict_rules() -> None:
    t = fit_trend([4, 8, 16], [-8.0, -9.0, -10.0], [0.1, 0.1, 0.1])
    assert t.slope == pytest.approx(-1.0) and t.predict_lr(32) == pytest.approx(2.0**-11)
    lo, hi = t.interval(32)
    assert lo < -11 < hi
    with pytest.raises(DeeplimitError):
        fit_trend([4], [-8.0], [0.1])


def _exact(slopes: dict[str, float], offsets=(-0.04, -0.02, 0.0, 0.02, 0.04), depths=(4, 16, 64),
           curvature: float = 0.01) -> pd.DataFrame:
    """Noise-free parabolas on a half-octave grid; seed s's optimum moves by slope + offsets[s] per doubling
    (so the 95% t half-width of the mean slope is 2.776·0.0316/√5 = 0.039)."""
    rows = []
    for rule, k in slopes.items():
        for s, d in enumerate(offsets):
            for L in depths:
                opt = -8.0 + (k + d) * math.log2(L / depths[0])
                for x in np.arange(-14.0, -1.99, 0.5):
                    rows.append({"rule": rule, "depth": L, "seed": s, "log2_lr": x,
                                 "value": 0.5 + curvature * (x - opt) ** 2})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("slope", "spread", "word"), [
    (0.2, 1, "transfers"),      # 0.2 ± 0.039 inside ±0.25
    (-0.2, 1, "transfers"),
    (0.23, 1, "shifts"),        # [0.19, 0.27]: not inside the margin, and it excludes 0
    (0.1, 5, "inconclusive"),   # [−0.10, +0.30]: neither inside ±0.25 nor clear of 0
    (-0.5, 1, "shifts"),
])
def test_slope_table_decides_by_the_slope_interval_against_the_margin(slope, spread, word) -> None:
    # the per-seed interval decides, never the drift of the seed-mean optima over the range (the old ±1-octave
    # band over 16× depth called anything within ±0.5 per doubling "transfers")
    offsets = tuple(spread * d for d in (-0.04, -0.02, 0.0, 0.02, 0.04))
    row = slope_table(_exact({"r": slope}, offsets), margin=0.25, regret_margin=0.02).iloc[0]
    assert row["verdict"] == word, row["verdict_text"]
    assert row["seed_slope"] == pytest.approx(slope, abs=1e-6)


def test_slope_table_regret_decides_too() -> None:
    # a flat mean slope whose seeds scatter so much that the base η* costs > 2% at the largest size
    runs = _exact({"r": 0.0}, offsets=(-0.2, -0.1, 0.0, 0.1, 0.2), curvature=0.03)
    row = slope_table(runs, margin=0.25, regret_margin=0.02).iloc[0]
    assert row["seed_slope_ci_high"] < 0.25 and row["regret_ci_high"] >= 0.02
    assert row["verdict"] == "inconclusive" and "regret" in row["verdict_text"]


def test_slope_table_needs_two_sizes_and_refuses_bad_margins() -> None:
    row = slope_table(_exact({"r": 0.0}, depths=(8,))).iloc[0]
    assert row["verdict"] == "inconclusive" and "one blocks size" in row["verdict_text"]
    with pytest.raises(DeeplimitError, match="margin"):
        analyze(_exact({"r": 0.0}), margin=0.0)


def test_a_rule_whose_best_loss_blows_up_is_flagged_as_degrading():
    """SP at depth: the argmin barely moves but the loss explodes (TP6 Fig. 20); the verdict must say so."""
    import pandas as pd

    from deeplimit.transfer.analysis import analyze as full_analysis

    rows = []
    for depth, scale in [(4, 1.0), (16, 3.0), (64, 200.0)]:
        for lr in [-10, -9, -8, -7, -6]:
            for seed in (0, 1):
                rows.append({"rule": "sp", "depth": depth, "log2_lr": lr, "seed": seed,
                             "run_id": f"{depth}{lr}{seed}", "value": scale * (0.5 + 0.05 * (lr + 8) ** 2)})
    an = full_analysis(pd.DataFrame(rows), group="rule", size="depth")
    row = an.drift.iloc[0]
    assert row["verdict"] == "degrades"
    assert row["verdict_text"].startswith("degrades: at depth 64 the best loss rises from 0.5 to 100")
    assert row["degrade_text"] == "the best loss goes from 0.5 at 4 to 100 at 64 blocks"  # the descriptive flag


def test_one_seed_is_inconclusive_never_a_zero_width_interval() -> None:
    result = analyze(_table({"flat": 0.0}, seeds=1), n_boot=100)
    row = result.drift.iloc[0]
    assert row["verdict"] == "inconclusive" and row["verdict_text"].startswith("inconclusive (too few seeds)")
    assert math.isnan(row["drift_ci_low"]) and row["n_seed_drifts"] == 1


def test_noisy_seeds_widen_the_interval_until_nothing_is_claimed() -> None:
    quiet = analyze(_table({"flat": 0.0}, seeds=3, noise=0.01), n_boot=100).drift.iloc[0]
    noisy = analyze(_table({"flat": 0.0}, seeds=3, noise=0.3, rng=1), n_boot=100).drift.iloc[0]
    assert quiet["verdict"] == "transfers" and quiet["n_seed_drifts"] == 3
    assert (noisy["drift_ci_high"] - noisy["drift_ci_low"]) > 2 * (quiet["drift_ci_high"] - quiet["drift_ci_low"])
    assert noisy["verdict"] != "transfers"


def test_paired_difference_interval_and_verdict() -> None:
    a = [1.00, 1.10, 0.95, 1.05]
    d = paired_difference(a, [x + 0.2 for x in a])  # a is lower by exactly 0.2 in every pair
    assert d.mean == pytest.approx(-0.2) and d.lo == pytest.approx(-0.2) and d.verdict == "a < b"
    noisy = paired_difference([1.0, 1.2, 0.9], [1.1, 1.0, 1.0])
    assert noisy.lo < 0 < noisy.hi and noisy.verdict == "inconclusive"
    # the interval is the textbook t-interval over the differences
    from scipy import stats

    diffs = np.array([-0.1, 0.2, -0.1])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert noisy.hi == pytest.approx(diffs.mean() + half)
    assert paired_difference([1.0], [2.0]).verdict == "inconclusive (1 seed)"
    assert paired_difference([1.0, 1.01, 0.99], [1.0, 1.0, 1.0], margin=0.1).verdict == "equivalent"
    assert paired_difference([1.0, math.inf, 0.9], [1.1, 1.0, 1.0]).n == 2  # a diverged pair is dropped
    with pytest.raises(DeeplimitError):
        paired_difference([1.0, 2.0], [1.0])
