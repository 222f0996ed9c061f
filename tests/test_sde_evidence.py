"""Evidence statistics of issue 12: stopping maps compared cell by cell, KS-vs-n convergence, exploded paths
counted (not averaged), and the unshaped negative control (spec §9 check 2)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.sde.compare import compare_distributions, exploded
from deeplimit.sde.evidence import (
    compare_stopping_maps,
    convergence_study,
    convergence_verdicts,
    ks_critical,
    map_agreement,
    stopping_width_check,
    unshaped_control,
)
from deeplimit.sde.scenarios import StoppingGrid, get_preset, run_comparison, run_sde, stopping_samples


def test_stopping_maps_compared_cell_by_cell_on_a_tiny_grid() -> None:
    rng = np.random.default_rng(0)
    same = rng.uniform(0.4, 0.6, 40)
    net = {(0.1, 1.0): np.ones(40), (0.5, 1.0): same, (1.0, 1.0): rng.uniform(0.0, 0.1, 40)}
    sde = {(0.1, 1.0): np.ones(40), (0.5, 1.0): same.copy(), (1.0, 1.0): rng.uniform(0.8, 1.0, 40)}
    cells = compare_stopping_maps(net, sde, T=1.0, reps=200)
    by = cells.set_index("gamma")
    assert by.loc[0.1, "agree"] and by.loc[0.5, "agree"] and not by.loc[1.0, "agree"]
    assert by.loc[1.0, "diff_hi"] < -0.5  # the interval of the difference excludes the tolerance
    agr = map_agreement(cells)
    assert agr["cells"] == 3 and agr["agree"] == 2 and agr["big_gaps"] == 1
    with pytest.raises(DeeplimitError, match="different"):
        compare_stopping_maps(net, {(0.1, 1.0): np.ones(3)}, T=1.0)


def test_real_stopping_maps_share_the_start_and_report_the_logit_scale() -> None:
    grid = StoppingGrid([0.0, 1.0], [0.25, 64.0], n=40, d=40, m=3, paths=12, seed=3)
    net, v0 = stopping_samples(grid, "network")
    sde, v0b = stopping_samples(grid, "sde")
    assert np.array_equal(v0, v0b)  # both sources start from the same realised X_0
    cells = compare_stopping_maps(net, sde, T=1.0, v0_eigmax=v0, n=40, reps=50)
    g0 = cells[cells["gamma"] == 0.0]
    assert g0["agree"].all() and (g0["median_network"] == 1.0).all()  # no residual branch: nobody exits
    scale = cells.groupby("tau0")["logit_scale"].first()
    assert math.isclose(scale.loc[0.25], 256 * scale.loc[64.0]) and scale.loc[0.25] > 10  # eigmax(V0)/(τ0√n)


def test_width_check_network_gap_shrinks_with_width_in_a_saturated_cell() -> None:
    # γ = 0.5, τ0 = 1, start V0 ≈ 100 I: the logits are far from small at n = 50; the gap to the SDE must
    # shrink by n = 400 if the SDE is the limit (it does: softmax saturation is a finite-width effect)
    df = stopping_width_check([0.5], [1.0], [50, 400], paths=16)
    gap = df.set_index("n")["gap"].abs()
    assert gap.loc[400] < 0.5 * gap.loc[50]
    assert (df["median_sde_fine"] - df["median_sde"]).abs().max() < 0.05  # not the SDE's step


def test_convergence_study_ks_falls_with_width_or_is_flagged() -> None:
    torch.manual_seed(0)
    table, slopes = convergence_study("resnet", gammas=(1.0,), ns=(3, 6, 12), paths=2048, reps=20)
    assert set(table["quantity"]) == {"rho^{12}", "V^{12}", "V^{11}", "V^{22}"}  # every covariance entry
    assert (table["sde_exploded"] == 0).all() and (table["network_exploded"] == 0).all()
    v = convergence_verdicts(table, slopes)
    assert set(v["verdict"]) <= {"converges", "agrees, no trend", "does not converge"}
    by_n = table.groupby("n")["ks"].median()
    assert by_n.loc[3] > by_n.loc[12]  # measured: ≈ 0.09 at n = 3 vs ≈ 0.03 at n = 12 for γ = 1
    with pytest.raises(DeeplimitError, match="integer depth"):
        convergence_study("resnet", ns=(4, 8, 16), ratio=1 / 3)


def test_convergence_verdicts_rules() -> None:
    rows, slopes = [], []
    for q, ks, (lo, hi) in [("falls", [0.2, 0.1, 0.05], (-1.2, -0.8)), ("flat-low", [0.01, 0.012, 0.01], (-.2, .2)),
                            ("flat-high", [0.3, 0.3, 0.3], (-0.1, 0.1))]:
        rows += [{"gamma": 1.0, "n": n, "quantity": q, "ks": k, "ks_crit": 0.03} for n, k in zip((3, 6, 12), ks)]
        slopes.append({"gamma": 1.0, "quantity": q, "slope": (lo + hi) / 2, "slope_lo": lo, "slope_hi": hi})
    v = convergence_verdicts(pd.DataFrame(rows), pd.DataFrame(slopes)).set_index("quantity")["verdict"]
    assert v["falls"] == "converges" and v["flat-low"] == "agrees, no trend" and v["flat-high"] == "does not converge"


@pytest.mark.filterwarnings("ignore:ks_2samp")
def test_exploded_paths_are_counted_not_averaged() -> None:
    rng = torch.Generator().manual_seed(0)
    G = torch.randn(200, 2, 4, generator=rng, dtype=torch.float64)
    V = G @ G.mT / 4
    bad = V.clone()
    bad[0] = 1e200 * torch.eye(2, dtype=torch.float64)  # one Euler path blown up but still finite
    bad[1] = float("nan")
    mask = exploded(bad)
    assert mask.tolist()[:2] == [True, True] and int(mask.sum()) == 2
    raw = compare_distributions(torch.cat([bad[:1], V[1:]]), V, bootstrap=0)
    kept = compare_distributions(bad[~mask], V, bootstrap=0)
    assert raw["w1"].max() > 1e190 and kept["w1"].max() < 1.0  # averaging the path in ruins W1; leaving it out
    res = run_comparison(get_preset("attention", n=24, d=12, paths=64), bootstrap=0)
    s = res.summary()
    assert s["sde_exploded"] == 0 and s["network_exploded"] == 0 and s["explode_at"] == 1e4
    assert len(res.distances) == 4  # ρ¹², V¹², V¹¹, V²²


@pytest.mark.parametrize("kind", ["attention", "resnet"])
def test_unshaped_network_is_far_from_the_shaped_sde(kind) -> None:
    p = get_preset(kind, n=48, d=24 if kind == "attention" else 16, paths=256, m=2)
    ctrl = unshaped_control(p, run_sde(p, seed=0).survivors(), paths=256, seed=0)
    assert ctrl["ks"] > max(0.5, 3 * ctrl["ks_crit"]), ctrl
    assert math.isclose(ctrl["ks_crit"], ks_critical(ctrl["n_sde"], ctrl["n_net"]))


def test_unshaped_network_does_not_converge_to_the_shaped_sde_as_width_grows() -> None:
    from deeplimit.sde.evidence import unshaped_convergence_control

    ctrl = unshaped_convergence_control("resnet", 0.5, (3, 12, 48), paths=512).set_index("n")
    assert ctrl.loc[48, "ks"] > ctrl.loc[3, "ks"] and ctrl.loc[48, "ks"] > 2 * ctrl.loc[48, "ks_crit"]
