"""The ``oracle`` claim's rule (``deeplimit.transfer.oracle_verdict``): thresholds just inside and outside each
criterion, the sensitivity control, the per-seed interval's coverage on simulated studies, and the held-out
validation on a synthetic loss surface with known optima."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.protocol import protocol
from deeplimit.transfer.oracle_fit import fit_power_law
from deeplimit.transfer.oracle_verdict import Score, heldout_validation, oracle_verdict, per_seed_interval
from oracle_surfaces import lr_curve

EPS = 1e-3
CLAIM = protocol().claim("oracle")
GOOD = Score(0.2, 0.001, 0.9, 10)
FAR = Score(1.1, 0.02, 0.2, 10)  # a forecast one octave off: fails every criterion


def verdict(s: Score, controls=None, n_expected: int = 10):
    return oracle_verdict(s, controls if controls is not None else {"+1": FAR, "-1": FAR}, n_expected=n_expected,
                          claim=CLAIM)


def test_the_protocol_states_the_issue_criteria():
    assert (CLAIM["max_abs_log2_error"], CLAIM["max_regret"], CLAIM["min_coverage"], CLAIM["level"]) == \
        (0.5, 0.005, 0.8, 0.8)
    assert CLAIM["sensitivity_octaves"] == 1.0 and "oracle" in protocol().tiers["standard"]
    assert "oracle" not in protocol().tiers["quick"]


@pytest.mark.parametrize(("score", "word"), [
    (Score(0.5 - EPS, 0.001, 0.9, 10), "holds"), (Score(0.5 + EPS, 0.001, 0.9, 10), "does not hold"),
    (Score(0.2, 0.005 - 1e-5, 0.9, 10), "holds"), (Score(0.2, 0.005 + 1e-5, 0.9, 10), "does not hold"),
    (Score(0.2, 0.001, 0.8, 10), "holds"), (Score(0.2, 0.001, 0.8 - EPS, 10), "does not hold"),
    (Score(math.nan, 0.001, 0.9, 10), "does not hold"),
])
def test_each_criterion_just_inside_and_just_outside(score, word):
    v = verdict(score)
    assert v.verdict == word, v.reason
    assert len(v.checks) == 2 and all(c.passed for c in v.checks) and not any(c.evidence for c in v.checks)


def test_a_control_the_criteria_accept_makes_a_passing_forecast_inconclusive():
    v = verdict(GOOD, {"+1": FAR, "-1": Score(0.45, 0.001, 0.85, 10)})
    assert v.verdict == "inconclusive" and "-1" in v.reason and "cannot tell" in v.reason
    assert [c.passed for c in v.checks] == [True, False]
    # a failing forecast is a failure whatever the control says
    assert verdict(Score(0.7, 0.001, 0.9, 10), {"+1": GOOD, "-1": GOOD}).verdict == "does not hold"


@pytest.mark.parametrize(("n_points", "word"), [(7, "holds"), (6, "inconclusive"), (0, "inconclusive")])
def test_too_few_scored_points_decide_nothing(n_points, word):
    """min_scored_share 0.67 of 10 expected: 7 points decide, 6 do not (optima on the grid's edge)."""
    s = Score(0.2, 0.001, 0.9 if n_points else math.nan, n_points)
    assert verdict(s).verdict == word
    assert verdict(GOOD, n_expected=0).verdict == "inconclusive"


def test_score_reads_json_nulls_as_missing():
    s = Score.of({"mean_abs_log2_error": 0.1, "mean_regret": None, "coverage": None, "n_points": 4})
    assert s.mean_abs_log2_error == 0.1 and math.isnan(s.mean_regret) and math.isnan(s.coverage)
    assert Score.of(GOOD.to_dict()) == GOOD


def _study(rng, targets, *, group_sd: float, seed_sd: float, seeds: int = 5):
    """Per-seed optima of 6 fitted groups (depth 2, 4 × samples 2048 … 8192) and of held-out groups at
    ``targets``, around log2 η* = −10 − 0.1 log2 samples; returns the law, within-group stats, the held-out seeds."""
    fitted = [(d, s) for d in (2, 4) for s in (2048, 4096, 8192)]
    true = lambda d, s: -10 - 0.1 * math.log2(s)
    per = [true(d, s) + rng.normal(0, group_sd) + rng.normal(0, seed_sd, seeds) for d, s in fitted]
    means = [p.mean() for p in per]
    law = fit_power_law("lr", {"depth": [d for d, _ in fitted], "samples": [s for _, s in fitted]}, means)
    within = sum(float(np.sum((p - p.mean()) ** 2)) for p in per) / (len(per) * (seeds - 1))
    held = [true(d, s) + rng.normal(0, group_sd) + rng.normal(0, seed_sd, seeds) for d, s in targets]
    return law, within, len(per) * (seeds - 1), held


def test_the_per_seed_interval_covers_single_seeds_at_its_level_and_the_mean_interval_does_not():
    """1000 simulated studies (seeds scatter 0.3 octave, groups 0.08 around the law): the per-seed 80% interval
    covers a held-out seed's η̂* 75–85% of the time, both 2× and 8×/8× past the fitted sizes; the law's own
    interval (for a seed mean) covers too few single seeds where the target is near the fitted groups."""
    rng = np.random.default_rng(1)
    targets = [(4, 16384), (32, 65536)]
    per_seed, mean_only, n = np.zeros(2), np.zeros(2), 0
    for _ in range(1000):
        law, within, wdf, held = _study(rng, targets, group_sd=0.08, seed_sd=0.3)
        for i, ((d, s), h) in enumerate(zip(targets, held)):
            at = {"depth": float(d), "samples": float(s)}
            pred = law.predict(at)
            mi = law.predict_interval(at, 0.8)
            lo, hi, df = per_seed_interval(pred, mi, law.df, within, wdf, 5, 0.8)
            assert df >= law.df - 1e-9 and lo < pred < hi
            per_seed[i] += int(((lo <= h) & (h <= hi)).sum())
            mean_only[i] += int(((mi[0] <= h) & (h <= mi[1])).sum())
        n += 5
    assert np.all((per_seed / n >= 0.75) & (per_seed / n <= 0.85)), per_seed / n
    assert mean_only[0] / n < 0.7, mean_only / n


def test_no_within_seed_scatter_leaves_the_law_interval_unchanged():
    lo, hi, df = per_seed_interval(0.0, (-1.0, 1.0), 3, 0.0, 24, 5, 0.8)
    assert (lo, hi, df) == pytest.approx((-1.0, 1.0, 3.0))


def _surface(truth, *, seeds: int, seed_sd: float, rng) -> pd.DataFrame:
    rows = []
    grid = np.arange(-15.0, -4.5, 0.5)
    for (d, s), opt in truth.items():
        for seed in range(seeds):
            o = opt + rng.normal(0, seed_sd)
            loss = 0.5 + lr_curve(grid, o) + rng.normal(0, 1e-4, len(grid))
            rows += [{"depth": d, "samples": s, "lr": 2.0 ** x, "loss": y, "seed": seed} for x, y in zip(grid, loss)]
    return pd.DataFrame(rows)


FITTED = [(2, 2048), (2, 4096), (2, 8192), (4, 2048), (4, 4096), (4, 8192)]
HELD = [(2, 65536), (32, 8192)]


def test_heldout_validation_on_a_surface_with_known_optima():
    """η* = −9 − 0.25 log2(samples / 2048) (a horizon law, flat in depth): the oracle recovers the law, its
    forecast at the held-out groups is within a fraction of an octave, the naive one (the nearest fitted
    group's η̂*) is 0.75 octave off at 8× the budget, and the ±1-octave control is rejected."""
    rng = np.random.default_rng(3)
    true = lambda d, s: -9 - 0.25 * math.log2(s / 2048)
    runs = _surface({g: true(*g) for g in FITTED + HELD}, seeds=5, seed_sd=0.1, rng=rng)
    val = heldout_validation(runs, FITTED, HELD)
    assert val["fit"]["exponents"]["samples"] == pytest.approx(-0.25, abs=0.08)
    assert val["n_expected"] == 10 and val["oracle"]["n_points"] == 10
    assert val["oracle"]["mean_abs_log2_error"] < 0.2 and val["oracle"]["coverage"] >= 0.8
    by = {(g["depth"], g["samples"]): g for g in val["groups"]}
    assert by[(2, 65536)]["naive_log2_lr"] == pytest.approx(true(2, 8192), abs=0.15)
    assert by[(2, 65536)]["naive_from"] == {"depth": 2.0, "samples": 8192.0}
    assert val["naive"]["mean_abs_log2_error"] > val["oracle"]["mean_abs_log2_error"]
    assert val["shift_plus"]["mean_abs_log2_error"] > 0.8 and val["shift_minus"]["coverage"] < 0.5
    v = oracle_verdict(Score.of(val["oracle"]), {"+1": Score.of(val["shift_plus"]), "-1": Score.of(val["shift_minus"])},
                       n_expected=val["n_expected"], claim=CLAIM)
    assert v.verdict == "holds", v.reason


def test_heldout_validation_sees_a_bend_past_the_fitted_range():
    """η* flat over the fitted budgets but 1.5 octaves lower at 8× the budget: the forecast misses."""
    rng = np.random.default_rng(4)
    truth = {g: -9.0 for g in FITTED} | {(2, 65536): -10.5, (32, 8192): -9.0}
    val = heldout_validation(_surface(truth, seeds=3, seed_sd=0.1, rng=rng), FITTED, HELD)
    v = oracle_verdict(Score.of(val["oracle"]), {"+1": Score.of(val["shift_plus"])},
                       n_expected=val["n_expected"], claim=CLAIM)
    assert v.verdict == "does not hold" and "mean |log2 error|" in v.reason


def test_a_fixed_depth_exponent_is_held_and_uses_a_residual_degree_of_freedom_less():
    """``fixed={"depth": 0}``: the law keeps depth's exponent at 0 and fits one coefficient fewer (one more df)."""
    rng = np.random.default_rng(6)
    runs = _surface({g: -9 - 0.25 * math.log2(g[1] / 2048) for g in FITTED + HELD}, seeds=3, seed_sd=0.1, rng=rng)
    free, held = heldout_validation(runs, FITTED, HELD), heldout_validation(runs, FITTED, HELD, fixed={"depth": 0})
    assert held["fit"]["exponents"]["depth"] == 0.0 and free["fit"]["exponents"]["depth"] != 0.0
    assert held["fit"]["df"] == free["fit"]["df"] + 1
    assert held["fit"]["exponents"]["samples"] == pytest.approx(-0.25, abs=0.08)


def test_one_seed_or_no_held_out_runs_is_a_one_line_error():
    rng = np.random.default_rng(5)
    runs = _surface({g: -9.0 for g in FITTED + HELD}, seeds=1, seed_sd=0.0, rng=rng)
    with pytest.raises(DeeplimitError, match="one seed per fitted group"):
        heldout_validation(runs, FITTED, HELD)
    with pytest.raises(DeeplimitError, match="no fitted or no held-out group"):
        heldout_validation(runs, FITTED, [(64, 64)])


def test_the_claim_sweeps_hold_out_what_the_protocol_says_and_never_fit_it():
    from deeplimit.transfer.oracle_grids import oracle_claim_groups, oracle_claim_specs

    fitted, held = oracle_claim_groups("standard")
    assert held == [(2, 65536), (32, 8192)] and not set(fitted) & set(held)
    assert max(s for _, s in held) == 8 * max(s for _, s in fitted)
    assert max(d for d, _ in held) == 8 * max(d for d, _ in fitted)
    specs = oracle_claim_specs("standard", seed_set="confirmation")
    assert list(specs) == ["fit", "held-2-65536", "held-32-8192"]
    assert specs["fit"].axes["depth"] == (2, 4) and specs["fit"].axes["samples"] == (2048, 4096, 8192)
    assert specs["fit"].axes["seed"] == tuple(protocol().seeds["confirmation"])
    assert oracle_claim_specs("standard", seed_set="pilot")["held-2-65536"].axes["seed"] == (0, 1, 2, 3, 4)
    lrs = specs["fit"].axes["log2_lr"]
    assert all(s.axes["log2_lr"] == lrs and s.axes["batch_size"] == (32,) for s in specs.values())
    assert lrs[1] - lrs[0] == 0.5 and specs["fit"].fixed["rule"] == "depth_mup"
    # smoke: the groups fill a 2 × 3 grid, so one sweep
    assert list(oracle_claim_specs("smoke")) == ["all"]
    with pytest.raises(DeeplimitError, match="unknown tier"):
        oracle_claim_groups("huge")
