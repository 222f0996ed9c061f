"""SDE-vs-network agreement as an equivalence test (issue 20): a margin, bounds with tested coverage, a power
calculation that the simulated test reaches, exploded fractions compared, and a sensitivity control that must
see a 20% error in γ on a real scenario."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.sde.equivalence import (
    Equivalence,
    claim_verdict,
    equivalence_test,
    exploded_paths,
    ks_statistic,
    ks_upper_width,
    paths_for_difference,
    paths_for_equivalence,
    perturbed_preset,
    sde_equivalence,
    sensitivity_control,
    w1_rows,
)
from deeplimit.sde.evidence import ks_critical
from deeplimit.sde.scenarios import get_preset


def _shift_for_ks(distance: float) -> float:
    """Mean shift s with KS(N(0, 1), N(s, 1)) = 2Φ(s/2) − 1 = distance."""
    return 2 * float(stats.norm.ppf(0.5 + distance / 2))


def _sim_error(p: float, reps: int) -> float:
    return 2 * math.sqrt(p * (1 - p) / reps)


def test_equal_laws_with_enough_paths_agree_and_a_clear_shift_differs() -> None:
    rng = np.random.default_rng(0)
    same = equivalence_test(rng.normal(size=4000), rng.normal(size=4000), margin=0.1)
    assert same.verdict == "agrees" and same.ci[1] < 0.1 and same.ci[0] == 0.0
    uni = equivalence_test(rng.uniform(size=(4000, 2)), rng.uniform(size=(3000, 2)), margin=0.1)
    assert uni.verdict == "agrees" and len(uni.columns) == 2
    true = 2 * stats.norm.cdf(0.5) - 1  # KS of N(0, 1) vs N(1, 1) = 0.383
    far = equivalence_test(rng.normal(1, 1, 1000), rng.normal(0, 1, 1000), margin=0.1)
    assert far.verdict == "differs" and far.ci[0] > 0.1 and far.ci[0] <= true <= far.ci[1]
    # W1 (in units of the SDE sample's IQR/1.349 ≈ σ): 1σ apart is beyond a 0.3 margin, identical laws within it
    w_far = equivalence_test(rng.normal(1, 1, 800), rng.normal(0, 1, 800), margin=0.3, stat="w1", reps=200)
    w_same = equivalence_test(rng.normal(0, 1, 800), rng.normal(0, 1, 800), margin=0.3, stat="w1", reps=200)
    assert w_far.verdict == "differs" and w_same.verdict == "agrees" and "bootstrap" in w_far.method


def test_ks_and_w1_fast_forms_equal_scipys() -> None:
    rng = np.random.default_rng(9)
    ties = (rng.integers(0, 5, 50) * 1.0, rng.integers(0, 6, 70) * 1.0)
    for a, b in [(rng.normal(size=300), rng.normal(0.2, 1, 200)), ties]:
        assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-15)
        w = w1_rows(np.stack([a, a[::-1]]), np.stack([b, b + 1]))
        assert w == pytest.approx([stats.wasserstein_distance(a, b), stats.wasserstein_distance(a, b + 1)], rel=1e-12)


def test_256_paths_cannot_show_agreement_at_margin_0_1_although_ks_does_not_reject() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=256), rng.normal(size=256)
    res = equivalence_test(a, b, margin=0.1)
    assert res.verdict == "inconclusive" and res.ci[1] > 0.1  # no power: the old rule read this as agreement
    assert stats.ks_2samp(a, b).statistic <= ks_critical(256, 256)
    assert ks_upper_width(256, 256, 0.05) > 0.1  # whatever the sample, 256 paths cannot reach a 0.1 margin


def test_ks_bounds_cover_the_true_distance_in_repeated_simulation() -> None:
    rng = np.random.default_rng(2)
    shift, reps = 0.25, 400
    true = 2 * stats.norm.cdf(shift / 2) - 1
    up = lo = 0
    for _ in range(reps):
        r = equivalence_test(rng.normal(shift, 1, 150), rng.normal(0, 1, 150), margin=0.5)
        up += r.ci[1] >= true
        lo += r.ci[0] <= true
    floor = 0.95 - _sim_error(0.95, reps)
    assert up / reps >= floor and lo / reps >= floor


def test_w1_bounds_cover_the_true_distance_in_repeated_simulation() -> None:
    rng = np.random.default_rng(3)
    shift, reps = 0.3, 120  # W1(N(0, 1), N(0.3, 1)) = 0.3 at scale 1
    up = lo = 0
    for r in range(reps):
        res = equivalence_test(rng.normal(shift, 1, 100), rng.normal(0, 1, 100), margin=1.0, stat="w1", scale=1.0,
                               reps=200, seed=r)
        up += res.ci[1] >= shift
        lo += res.ci[0] <= shift
    floor = 0.95 - _sim_error(0.95, reps)
    assert up / reps >= floor and lo / reps >= floor


@pytest.mark.parametrize("expected, columns, ratio", [(0.0, 1, 1.0), (0.03, 1, 1.0), (0.0, 1, 4.0)])
def test_paths_for_equivalence_reaches_the_power_and_half_as_many_do_not(expected, columns, ratio) -> None:
    rng = np.random.default_rng(4)
    n = paths_for_equivalence(0.1, expected=expected, columns=columns, sde_ratio=ratio)
    m = math.ceil(ratio * n)
    s, reps = _shift_for_ks(expected), 300
    full = half = 0
    for _ in range(reps):
        a, b = rng.normal(s, 1, (n, columns)), rng.normal(0, 1, (m, columns))
        full += equivalence_test(a, b, margin=0.1).verdict == "agrees"
        half += equivalence_test(a[: n // 2], b[: m // 2], margin=0.1).verdict == "agrees"
    assert full / reps >= 0.8 - _sim_error(0.8, reps)
    assert half / reps < 0.5  # the count is not wastefully conservative
    # more entries, a narrower margin or a true distance nearer the margin all need more paths
    assert paths_for_equivalence(0.1, columns=4) > paths_for_equivalence(0.1) < paths_for_equivalence(0.05)


def test_paths_for_difference_reaches_the_power() -> None:
    rng = np.random.default_rng(5)
    n = paths_for_difference(0.1, 0.2)
    s, reps = _shift_for_ks(0.2), 300
    hits = sum(equivalence_test(rng.normal(s, 1, n), rng.normal(0, 1, n), margin=0.1).verdict == "differs"
               for _ in range(reps))
    assert hits / reps >= 0.8 - _sim_error(0.8, reps)
    assert paths_for_difference(0.1, 0.2, sde_ratio=8) < n


def test_columns_are_tested_together_with_the_max_statistic_and_bonferroni() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))
    a[:, 1] += 1.0
    res = equivalence_test(a, b, margin=0.1, names=["x", "y", "z"])
    by = {c["name"]: c for c in res.columns}
    assert res.verdict == "differs" and res.value == by["y"]["value"] == max(c["value"] for c in res.columns)
    one = equivalence_test(a[:, 0], b[:, 0], margin=0.1)
    assert by["x"]["hi"] - by["x"]["value"] > one.ci[1] - one.value  # three tests: wider per-column bounds
    assert res.ci == (max(c["lo"] for c in res.columns), max(c["hi"] for c in res.columns))


def test_exploded_fractions_are_compared_not_counted() -> None:
    # Newcombe (1998), Table II, method 10 (hybrid score): 56/70 − 48/80 → [0.0524, 0.3339]
    lo, hi = exploded_paths(56, 48, 70, 80, margin=0.05).ci
    assert abs(lo - 0.0524) < 1e-4 and abs(hi - 0.3339) < 1e-4
    assert exploded_paths(0, 0, 4096, 4096).verdict == "agrees"
    assert exploded_paths(0, 0, 256, 256).verdict == "inconclusive"  # 256 paths cannot bound a rate below 1%
    res = exploded_paths(100, 0, 1000, 1000)
    assert res.verdict == "differs" and res.columns[0]["network_fraction"] == 0.1
    with pytest.raises(DeeplimitError, match="exploded ≤ paths"):
        exploded_paths(5, 0, 4, 10)


def test_verdict_of_the_claim_needs_the_control_to_differ() -> None:
    def eq(verdict: str) -> Equivalence:
        return Equivalence("ks", 0.0, (0.0, 0.0), 0.1, 10, 10, verdict)

    assert claim_verdict(eq("agrees"), eq("differs")) == "agrees"
    assert claim_verdict(eq("agrees"), eq("inconclusive")) == "inconclusive"
    assert claim_verdict(eq("agrees"), None) == "inconclusive"
    assert claim_verdict(eq("differs"), eq("differs")) == "differs"


def test_result_is_plain_json_with_a_readable_line() -> None:
    rng = np.random.default_rng(7)
    res = equivalence_test(rng.normal(size=500), rng.normal(size=600), margin=0.2)
    back = json.loads(json.dumps(res.to_dict()))
    assert back["verdict"] == res.verdict and back["n_network"] == 500 and back["n_sde"] == 600
    assert res.verdict in res.text() and "margin 0.2" in res.text()


def test_bad_input_is_one_line_errors() -> None:
    x = np.zeros(10)
    with pytest.raises(DeeplimitError, match="exploded"):
        equivalence_test(np.array([1.0, np.nan, 2.0]), x, margin=0.1)
    with pytest.raises(DeeplimitError, match="columns"):
        equivalence_test(np.zeros((10, 2)), np.zeros((10, 3)), margin=0.1)
    with pytest.raises(DeeplimitError, match="KS ≤ 1"):
        equivalence_test(x, x, margin=1.0)
    with pytest.raises(DeeplimitError, match="level"):
        equivalence_test(x, x, margin=0.1, level=95)
    with pytest.raises(DeeplimitError, match="unknown statistic"):
        equivalence_test(x, x, margin=0.1, stat="ad")
    with pytest.raises(DeeplimitError, match="reps"):
        equivalence_test(x, x + 1, margin=0.1, stat="w1", reps=20)
    with pytest.raises(DeeplimitError, match="widen the margin"):
        paths_for_equivalence(0.05, expected=0.05)
    with pytest.raises(DeeplimitError, match="lower the margin"):
        paths_for_difference(0.1, 0.05)
    with pytest.raises(DeeplimitError, match="leaves"):
        perturbed_preset(get_preset("resnet", gamma=0.9), 1.2, "gamma")
    assert perturbed_preset(get_preset("attention"), 1.2, "T").T == pytest.approx(1.2 * 0.75)


def test_sensitivity_control_sees_gamma_off_by_20_percent_on_the_attention_sde() -> None:
    # the cheapest real scenario: the attention layer at n = 40, d = 30 (T = 0.75), SDE step 0.05
    p = get_preset("attention", m=2, n=40, d=30, dt=0.05, paths=4000)
    res = sde_equivalence(p, margin=0.025, seed=0, sde_paths=8000)
    assert res.control.verdict == "differs" and 7900 <= res.control.n_sde <= 8000  # exploded paths left out
    assert res.test.verdict != "differs" and res.control.value > 2 * res.test.value
    assert res.exploded.verdict == "agrees" and res.perturbation == "γ × 1.2"
    assert res.verdict == claim_verdict(res.test, res.control)
    # the helper on its own with a sampling function: two draws of one law, same path count by default
    rng = np.random.default_rng(8)
    own = sensitivity_control(rng.normal(size=300), lambda k, s: np.random.default_rng(s).normal(size=k),
                              margin=0.3)
    assert own.verdict == "agrees" and own.n_sde == 300
