"""Solver behaviour: stopping instead of NaN (§3.8, §5.4), dtypes, saving, bad input, CLI and predict()."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
import torch

from deeplimit.errors import DeeplimitError, DeeplimitWarning
from deeplimit.sde import Band, Euler, SaveAt, Scenario, TamedEuler, get_preset, nearest_psd, predict, solve
from deeplimit.sde._index import naive_em_step
from deeplimit.sde.compare import compare_distributions, extract, ks_distance
from deeplimit.sde.events import EXIT_HIGH
from deeplimit.sde.scenarios import StoppingGrid, equicorrelated, stopping_map
from sde_helpers import ks_critical

V0 = equicorrelated(3, 0.2)


def test_stopping_band_freezes_paths_and_records_reason() -> None:
    V = 100 * torch.eye(3, dtype=torch.float64)
    sol = solve(Scenario("attention", 1.0, 0.5), Euler(), 0.0, 1.0, 0.01, V, saveat=SaveAt(every=25),
                event=Band(1e-4, 1e4), paths=64, seed=0)
    assert sol.exit_fraction == 1.0
    assert bool((sol.reason == EXIT_HIGH).all())
    assert bool(torch.isfinite(sol.terminal).all()) and bool(torch.isfinite(sol.V).all())
    assert float(torch.linalg.eigvalsh(sol.terminal)[:, -1].max()) <= 1e4
    assert bool((sol.t_stop < 1.0).all())
    assert sol.V.shape == (5, 64, 3, 3) and sol.times.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_nonfinite_paths_stop_without_nan() -> None:
    # no band: a blow-up path is stopped when it becomes non-finite, never reported as NaN
    V = 1e3 * torch.eye(2, dtype=torch.float64)
    with pytest.warns(
        DeeplimitWarning, match="leave the PSD cone"
    ):  # the deliberately coarse step is flagged
        sol = solve(Scenario("attention", 1.0, 0.05), Euler(), 0.0, 1.0, 0.05, V, paths=8, seed=0)
    assert sol.exit_fraction > 0 and bool(torch.isfinite(sol.terminal).all())


def test_float32_and_float64_agree_in_law() -> None:
    sc = Scenario("attention", 8**-0.5)
    a = solve(sc, Euler(), 0.0, 0.5, None, V0, paths=4096, seed=0, dtype=torch.float32).terminal
    b = solve(sc, Euler(), 0.0, 0.5, None, V0, paths=4096, seed=1, dtype=torch.float64).terminal
    assert a.dtype == torch.float32
    assert ks_distance(extract(a, "V", 0, 1), extract(b, "V", 0, 1)) <= ks_critical(4096, 4096, 0.01)


@pytest.mark.filterwarnings("ignore::deeplimit.errors.DeeplimitWarning")  # one coarse step on purpose
def test_matrix_free_step_matches_naive_pxp_step_in_law() -> None:
    # one Euler step from the stress covariance: matrix-free noise vs p×p eigen root
    sc = Scenario("block", 0.9, 0.5)
    V = equicorrelated(3, 0.3) * 2
    N = 20_000
    a = solve(sc, Euler(), 0.0, 0.05, 0.05, V, paths=N, seed=0).terminal
    b = naive_em_step(sc, V.expand(N, 3, 3).clone(), 0.05, torch.Generator().manual_seed(1))
    for i, j in [(0, 0), (0, 1), (1, 2)]:
        assert ks_distance(extract(a, "V", i, j), extract(b, "V", i, j)) <= ks_critical(N, N, 0.001)


def test_tamed_scheme_and_default_dt() -> None:
    sc = Scenario("resnet", 1.0)
    sol = solve(sc, TamedEuler(), 0.0, 0.1, None, V0, paths=16, seed=0)
    assert sol.dt == pytest.approx(0.004)
    assert bool(torch.isfinite(sol.terminal).all())


def test_random_streams_line_up_across_scenarios() -> None:
    # G1 and G2 are drawn every step, so γ → linear vs attention paths with the same seed are close for τ0 → ∞
    # (the attention noise has scale sqrt(κ_att) = γ²/τ0 ≈ 2.5e-7; another seed moves V by O(0.1))
    a = solve(Scenario("attention", 0.5, 1e6), Euler(), 0.0, 0.2, 0.01, V0, paths=8, seed=3).terminal
    b = solve(Scenario("linear", 0.5), Euler(), 0.0, 0.2, 0.01, V0, paths=8, seed=3).terminal
    c = solve(Scenario("linear", 0.5), Euler(), 0.0, 0.2, 0.01, V0, paths=8, seed=4).terminal
    assert float((a - b).abs().max()) < 1e-5
    assert float((c - b).abs().max()) > 1e-2


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[1.0, 0.5], [0.4, 1.0]]), "not symmetric"),
        (torch.tensor([[1.0, 2.0], [2.0, 1.0]]), "nearest PSD"),
        (torch.tensor([[1.0]]), "m ≥ 2"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), "non-finite"),
    ],
)
def test_bad_V0(bad: torch.Tensor, match: str) -> None:
    with pytest.raises(DeeplimitError, match=match):
        solve(Scenario("attention"), Euler(), 0.0, 1.0, 0.01, bad, paths=2)


def test_bad_times_and_names() -> None:
    with pytest.raises(DeeplimitError, match="must be positive"):
        solve(Scenario("attention"), Euler(), 0.0, 0.0, 0.01, V0)
    with pytest.raises(DeeplimitError, match="exceeds T"):
        solve(Scenario("attention"), Euler(), 0.0, 0.1, 0.5, V0)
    with pytest.raises(DeeplimitError, match="valid scenarios: attention"):
        get_preset("transformer")
    with pytest.raises(DeeplimitError, match="unknown SDE scenario kind"):
        Scenario("relu")
    with pytest.raises(DeeplimitError, match="m = 1"):
        get_preset("attention", m=1)
    near = nearest_psd(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(near).min()) >= -1e-12


def test_compare_table_has_bootstrap_errors() -> None:
    a = solve(Scenario("attention", 0.35), Euler(), 0.0, 0.3, None, V0, paths=512, seed=0).terminal
    b = solve(Scenario("attention", 0.35), Euler(), 0.0, 0.3, None, V0, paths=512, seed=1).terminal
    df = compare_distributions(a, b, bootstrap=20)
    assert list(df.columns) == ["quantity", "ks", "ks_se", "w1", "w1_se", "n_sde", "n_net"]
    assert bool((df["ks_se"] > 0).all())


def test_stopping_map_small_grid_monotone_in_gamma() -> None:
    df = stopping_map(StoppingGrid([0.1, 1.0], [1.0], n=200, d=200, m=3, paths=40), "network")
    med = df.set_index("gamma")["median_t"]
    assert med[0.1] == 1.0 and med[1.0] < 0.5


def test_predict_from_embeddings() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 64, generator=g, dtype=torch.float64)
    pred = predict(X, d=16, gamma=0.3, paths=512, compare=True, seeds=(0, 1), network_paths=128)
    assert pred.T == pytest.approx(0.25)
    assert 0.0 <= pred.exit_probability <= 1.0
    assert isinstance(pred.quantiles, pd.DataFrame) and set(pred.quantiles["source"]) == {"sde", "network"}
    assert pred.comparison is not None and set(pred.comparison["seed"]) == {0, 1}
    # the output covariance is centred on the input one at this small depth
    med = pred.quantiles.set_index(["source", "quantity"]).loc[("sde", "V^{11}"), "q0.5"]
    assert abs(med - float(pred.V0[0, 0])) < 0.5 * float(pred.V0[0, 0])
    with pytest.raises(DeeplimitError, match="X must be"):
        predict(torch.zeros(3), d=4, gamma=0.3)


def run_cli(argv: list[str]) -> int:
    from deeplimit.cli import sde

    parser = argparse.ArgumentParser(prog="deeplimit")
    sub = parser.add_subparsers(dest="command")
    sde.register(sub)
    args = parser.parse_args(["sde", *argv])
    return args.func(args)


def test_cli_comparison_writes_tables_png_and_samples(tmp_path) -> None:
    out = tmp_path / "att"
    rc = run_cli(
        [
            "--scenario",
            "attention",
            "--paths",
            "256",
            "--d",
            "30",
            "--bootstrap",
            "5",
            "--out",
            str(out),
            "--samples-out",
            str(tmp_path / "s.csv"),
        ]
    )
    assert rc == 0
    table = pd.read_csv(out / "attention_table.csv")
    assert {"ks", "ks_se", "w1", "w1_se", "sde_exit_fraction", "network_exit_fraction"} <= set(table.columns)
    assert (out / "attention.png").stat().st_size > 1000
    summary = json.loads((out / "attention.json").read_text())
    assert summary["preset"]["d"] == 30
    s = pd.read_csv(tmp_path / "s.csv")
    assert list(s.columns) == ["source", "path", "stopped", "V11", "V12", "V22"]
    assert len(s) == 512 and set(s["source"]) == {"sde", "network"}


def test_cli_stopping_map_and_bad_input(tmp_path) -> None:
    rc = run_cli(
        [
            "--scenario",
            "stopping-map",
            "--paths",
            "10",
            "--n",
            "50",
            "--d",
            "20",
            "--gammas",
            "0.1",
            "1.0",
            "--tau0s",
            "0.5",
            "4",
            "--source",
            "both",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    df = pd.read_csv(tmp_path / "stopping-map_table.csv")
    assert len(df) == 8 and (tmp_path / "stopping-map_network.png").exists()
    with pytest.raises(DeeplimitError, match="m = 1"):
        run_cli(["--scenario", "attention", "--m", "1", "--out", str(tmp_path)])
