"""The report's comparison, SDE and coordinate-check verdict rules (``deeplimit.transfer.verdict_rules``), fed
synthetic numbers just inside and just outside each threshold: every word a rule can give is reached."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.protocol import protocol
from deeplimit.transfer.analysis import PairedDifference
from deeplimit.transfer.verdict_rules import (
    activation_verdict,
    coord_depth_verdict,
    feature_diversity_verdict,
    monotone_share,
    no_ln_control,
    rank_collapse_verdict,
    sde_convergence_verdict,
    seed_consensus,
    shaped_vs_preln_verdict,
    shuffled_shares,
    stopping_agreement_verdict,
    stopping_trend_verdict,
)
from deeplimit.transfer.verdicts import Check

EPS = 1e-3


def pd_(lo: float, hi: float, n: int = 5) -> PairedDifference:
    """A paired difference with the interval [lo, hi] over n seeds."""
    return PairedDifference((lo + hi) / 2, lo, hi, n)


# ---------------------------------------------------------------- |x| vs ReLU
@pytest.mark.parametrize(("lo", "hi", "word"), [(-0.2, -EPS, "holds"), (-0.2, EPS, "inconclusive"),
                                                 (EPS, 0.2, "does not hold"), (-EPS, 0.2, "inconclusive")])
def test_activation_decides_at_the_deepest_depth_by_the_sign_of_the_interval(lo, hi, word):
    # the shallow depth's interval says the opposite: only the deepest decides
    v = activation_verdict({4: pd_(-hi, -lo), 16: pd_(lo, hi)})
    assert v.verdict == word, v.reason
    assert "16 blocks" in v.reason


def test_activation_with_one_seed_says_the_interval_is_missing():
    v = activation_verdict({8: PairedDifference(-0.3, math.nan, math.nan, 1)})
    assert v.verdict == "inconclusive" and "missing (one seed)" in v.reason
    with pytest.raises(DeeplimitError):
        activation_verdict({})


# ---------------------------------------------------------------- shaped vs Pre-LN
SHAPED = protocol().claim("shaped-vs-preln")
M = float(SHAPED["margin"])


def control(passed: bool | None) -> Check:
    return Check("no-LN", "worse", "…", passed)


@pytest.mark.parametrize(("interval", "ctrl", "word"), [
    ((-0.1, M - EPS), True, "holds"),
    ((-0.1, M - EPS), None, "partly"),
    ((-0.1, M - EPS), False, "partly"),
    ((-0.1, M + EPS), True, "inconclusive"),   # straddles +margin
    ((M + EPS, 0.3), True, "does not hold"),
    ((M - EPS, 0.3), True, "inconclusive"),
])
def test_shaped_vs_preln_against_the_protocol_margin(interval, ctrl, word):
    v = shaped_vs_preln_verdict(pd_(*interval), control(ctrl), SHAPED, shaped_best=2.0, bigram=2.5, depth=8,
                                steps=400)
    assert v.verdict == word, v.reason


def test_shaped_vs_preln_needs_two_seeds_and_a_model_below_the_bigram_entropy():
    one = PairedDifference(-0.1, math.nan, math.nan, 1)
    assert shaped_vs_preln_verdict(one, control(True), SHAPED, shaped_best=2.0, bigram=2.5, depth=8,
                                   steps=400).verdict == "inconclusive"
    for best in (2.5, 2.5 + EPS):  # at or above the bigram entropy: too little training to compare
        v = shaped_vs_preln_verdict(pd_(-0.1, 0.0), control(True), SHAPED, shaped_best=best, bigram=2.5, depth=8,
                                    steps=400)
        assert v.verdict == "inconclusive" and "bigram" in v.reason
    assert shaped_vs_preln_verdict(pd_(-0.1, 0.0), control(True), SHAPED, shaped_best=2.5 - EPS, bigram=2.5,
                                   depth=8, steps=400).verdict == "holds"


def test_the_no_ln_control_passes_only_clearly_worse_or_diverged_everywhere():
    assert no_ln_control(pd_(M + EPS, 1.0), SHAPED, name="c", measured="m").passed is True
    assert no_ln_control(pd_(M - EPS, 1.0), SHAPED, name="c", measured="m").passed is False
    one = PairedDifference(1.0, math.nan, math.nan, 1)
    assert no_ln_control(one, SHAPED, name="c", measured="m").passed is None
    assert no_ln_control(PairedDifference(math.nan, math.nan, math.nan, 0), SHAPED, name="c", measured="m",
                         diverged_everywhere=True).passed is True


# ---------------------------------------------------------------- feature diversity
UP, DOWN, ZERO = pd_(EPS, 0.2), pd_(-0.2, -EPS), pd_(-EPS, EPS)


@pytest.mark.parametrize(("deep", "gap", "ode", "word"), [
    (UP, UP, DOWN, "holds"),
    (UP, ZERO, DOWN, "partly"),      # the gap does not grow
    (UP, UP, ZERO, "partly"),        # ODE's own κ does not fall: a gap alone could be Depth-μP rising
    (DOWN, UP, DOWN, "does not hold"),
    (ZERO, UP, DOWN, "inconclusive"),
])
def test_feature_diversity_needs_the_gap_and_both_trends(deep, gap, ode, word):
    v = feature_diversity_verdict(deep, gap, ode, shallowest=4, deepest=64)
    assert v.verdict == word, v.reason
    assert [c.passed for c in v.checks] == [gap.verdict == "a > b", ode.verdict == "a < b"]


def test_feature_diversity_with_one_seed_is_inconclusive():
    one = PairedDifference(0.3, math.nan, math.nan, 1)
    v = feature_diversity_verdict(one, one, one, shallowest=4, deepest=16)
    assert v.verdict == "inconclusive" and all(c.passed is None for c in v.checks)


# ---------------------------------------------------------------- stopping times
def stopping_map(sign: float = 1.0) -> pd.DataFrame:
    """A 6 × 6 map with t* falling in γ and rising in τ0 (``sign`` = −1: the opposite trends)."""
    gammas, taus = np.linspace(0.1, 1, 6), 2.0 ** np.arange(-3, 3)
    return pd.DataFrame([{"gamma": g, "tau0": t, "median_t": float(np.clip(0.5 + sign * (0.1 * np.log2(t) - g),
                                                                               0, 1))}
                         for g in gammas for t in taus])


def test_the_trend_rule_and_its_shuffled_control_reach_each_word():
    good = stopping_map()
    share = monotone_share(good, 1.0)
    assert share == 1.0
    v = stopping_trend_verdict({"network": share}, {"network": shuffled_shares(good, 1.0, n=200)})
    assert v.verdict == "holds" and v.checks[0].passed, v.reason
    # the same share where shuffles reach the rule too (a map of ties): the rule cannot tell a trend
    ties = good.assign(median_t=1.0)
    v = stopping_trend_verdict({"network": monotone_share(ties, 1.0)}, {"network": shuffled_shares(ties, 1.0, n=50)})
    assert v.verdict == "inconclusive" and v.checks[0].passed is False, v.reason
    # a source below 90%
    bad = stopping_map(sign=-1.0)
    low = monotone_share(bad, 1.0)
    assert low < 0.9
    v = stopping_trend_verdict({"network": share, "sde": low},
                               {"network": shuffled_shares(good, 1.0, n=50), "sde": shuffled_shares(bad, 1.0, n=50)})
    assert v.verdict == "does not hold" and "not every map" in v.reason


@pytest.mark.parametrize(("share", "q95", "word"), [(0.9, 0.9 - EPS, "holds"), (0.9 - EPS, 0.5, "does not hold"),
                                                    (0.95, 0.9, "inconclusive")])
def test_the_trend_rule_just_inside_and_outside_its_thresholds(share, q95, word):
    null = np.full(100, q95)
    v = stopping_trend_verdict({"s": share}, {"s": null})
    assert v.verdict == word, v.reason


def test_the_cell_by_cell_check_needs_eighty_percent():
    assert stopping_agreement_verdict(0.8).verdict == "holds"
    assert stopping_agreement_verdict(0.8 - EPS).verdict == "does not hold"


# ---------------------------------------------------------------- SDE convergence
RISING, FLAT_CTRL = [0.05, 0.10, 0.21], [0.21, 0.21, 0.21]


@pytest.mark.parametrize(("counts", "exploded", "ks", "word"), [
    ({"converges": 2, "agrees": 2}, 0, RISING, "holds"),                         # exactly half converge
    ({"converges": 1, "agrees": 3}, 0, RISING, "inconclusive"),                  # under half: no power
    ({"converges": 3, "does not converge": 1}, 0, RISING, "does not hold"),
    ({"converges": 4}, 1, RISING, "does not hold"),                              # an exploded path
    ({"converges": 4}, 0, FLAT_CTRL, "does not hold"),                           # the control does not rise
    ({"converges": 4}, 0, [0.05, 0.1, 0.2], "does not hold"),                    # ends at 2× crit, not above
])
def test_sde_convergence_words(counts, exploded, ks, word):
    v = sde_convergence_verdict(counts, exploded=exploded, control_ks=ks, control_crit=0.1)
    assert v.verdict == word, v.reason


def test_sde_convergence_control_needs_two_widths():
    with pytest.raises(DeeplimitError):
        sde_convergence_verdict({"converges": 1}, exploded=0, control_ks=[0.3], control_crit=0.1)


# ---------------------------------------------------------------- depth coordinate check
COORD = protocol().claim("coord-check")


@pytest.mark.parametrize(("words", "seeds", "word"), [
    ({"depth_mup": "flat", "blocks_only": "grows", "sp": "grows"}, 3, "holds"),
    ({"depth_mup": "flat", "blocks_only": "grows", "sp": "grows"}, 2, "inconclusive"),  # under 3 seeds
    ({"depth_mup": "flat", "blocks_only": "inconclusive", "sp": "grows"}, 3, "partly"),
    ({"depth_mup": "flat", "blocks_only": "flat", "sp": "grows"}, 3, "partly"),
    ({"depth_mup": "grows", "blocks_only": "grows", "sp": "grows"}, 5, "does not hold"),
    ({"depth_mup": "shrinks", "blocks_only": "grows", "sp": "grows"}, 5, "does not hold"),
    ({"depth_mup": "inconclusive", "blocks_only": "grows", "sp": "grows"}, 5, "inconclusive"),
])
def test_coord_depth_words(words, seeds, word):
    v = coord_depth_verdict(words, seeds, COORD)
    assert v.verdict == word, v.reason
    assert [c.name for c in v.checks] == ["blocks_only over depth", "sp over depth"]


def test_coord_depth_consensus_and_bad_input():
    assert seed_consensus("flat", ["flat", "flat", "flat"]) == "flat"
    assert seed_consensus("flat", ["flat", "grows", "flat"]) == "inconclusive"
    with pytest.raises(DeeplimitError, match="sp"):
        coord_depth_verdict({"depth_mup": "flat", "blocks_only": "grows"}, 3, COORD)


# ---------------------------------------------------------------- rank collapse
THEORY = {"no identity": -0.2, "no centring": 0.1}


@pytest.mark.parametrize(("softmax", "shaped", "rates", "word"), [
    (0.99, 0.5, (-0.21, 0.105), "holds"),                   # every number on its threshold
    (0.99, 0.5, (-0.2 * 1.05 - EPS, 0.1), "partly"),        # a rate just beyond 5%
    (0.99, 0.5, (-0.2, 0.1 * 0.95 - EPS), "partly"),
    (0.99 - EPS, 0.3, (-0.2, 0.1), "does not hold"),        # softmax does not collapse
    (0.999, 0.5 + EPS, (-0.2, 0.1), "does not hold"),       # shaped not bounded
    (math.nan, 0.3, (-0.2, 0.1), "does not hold"),          # a missing number fails its comparison
])
def test_rank_collapse_words(softmax, shaped, rates, word):
    v = rank_collapse_verdict(softmax_rho=softmax, shaped_rho=shaped, no_identity_slope=rates[0],
                              no_centring_slope=rates[1], theory=THEORY)
    assert v.verdict == word, v.reason
    assert v.checks[0].passed is bool(softmax >= 0.99)


# ------------------------------------------------------------------------------------------------
# SDE vs the finite network: every word, each part of the rule on both sides of its threshold
# ------------------------------------------------------------------------------------------------
def _eq(overall="agrees", test="agrees", ctrl="differs", exploded="agrees"):
    return {"verdict": overall, "text": "synthetic",
            "test": {"verdict": test, "margin": 0.03, "ci": [0.0, 0.019]},
            "control": {"verdict": ctrl, "margin": 0.03, "ci": [0.058, 0.09]},
            "exploded": {"verdict": exploded}}


@pytest.mark.parametrize("eq, ks, crit, word, why", [
    (_eq(), 1.0, 0.02, "holds", "below the margin 0.03"),
    (_eq(), 0.5, 0.02, "inconclusive", "unshaped control did not fail"),          # KS must exceed 0.5 …
    (_eq(), 0.5 + EPS, 0.02, "holds", "below the margin"),
    (_eq(), 0.75, 0.25, "inconclusive", "unshaped control did not fail"),         # … and 3 critical values
    (_eq(), 0.75 + EPS, 0.25, "holds", "below the margin"),
    (_eq("differs", "differs"), 1.0, 0.02, "does not hold", "shown to differ"),
    (_eq("inconclusive", "inconclusive"), 1.0, 0.02, "inconclusive", "not shown within the margin"),
    (_eq("inconclusive", ctrl="inconclusive"), 1.0, 0.02, "inconclusive", "could not see a 20% error"),
    (_eq("inconclusive", exploded="inconclusive"), 1.0, 0.02, "inconclusive", "exploded fractions"),
])
def test_sde_comparison_rule(eq, ks, crit, word, why):
    from deeplimit.transfer.verdict_rules import sde_comparison_verdict

    v = sde_comparison_verdict(eq, control_ks=ks, control_crit=crit)
    assert v.verdict == word and why in v.reason, v


def test_the_measured_line_says_shifts_only_beyond_the_margin():
    """A slope interval that excludes 0 but stays inside ±margin is no shift for the claim rules; the report's
    measured line must not call it one (it did for CompleteP at −0.16 [−0.28, −0.03] while the verdict read
    "inconclusive")."""
    from deeplimit.report.sweeps import transfer_words

    def stats(lo, hi):
        return {"r": {"slope": (lo + hi) / 2, "slope_ci": [lo, hi], "margin": 0.25, "regret": None,
                      "verdict": "shifts"}}

    assert transfer_words(stats(-0.28, -0.03)).endswith("→ moves, but not beyond ±0.25.")
    assert transfer_words(stats(-0.46, -0.25 - EPS)).endswith("→ shifts.")
    assert transfer_words(stats(0.25 + EPS, 0.53)).endswith("→ shifts.")
