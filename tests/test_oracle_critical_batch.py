"""The transfer oracle's critical-batch estimator (``batch_estimator="critical"``, ``deeplimit predict
--batch-estimator critical``): on synthetic loss surfaces that are flat over the small batches (with seed noise)
and rise past a known critical batch, it recovers that batch, censors what the grid cannot show, and turns a
critical batch that grows as a power law of data into the batch law's exponent."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from deeplimit.cli import build_parser, main
from deeplimit.errors import DeeplimitError
from deeplimit.transfer.oracle import fit_oracle
from deeplimit.transfer.oracle_eval import evaluate_oracle
from deeplimit.transfer.oracle_fit import critical_batch

TOL = 0.02
RISE = 0.02  # relative excess loss per squared octave past the knee: the excess reaches TOL one octave past it


def surface(groups: dict[float, float], *, batches=range(1, 11), seeds: int = 3, noise: float = 1e-3,
            base: float = 0.5, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """One row per run (``D``, ``bs``, ``lr``, ``loss``, ``seed``). ``groups``: D → true log2 B_crit at tolerance
    TOL. The loss is base·(1 + RISE·max(0, log2 B − knee)²) + noise, knee = log2 B_crit − 1 (so the excess
    reaches TOL·base exactly at B_crit), plus an LR curve whose optimum moves half an octave per octave of
    batch (Adam's square-root rule), so the LR optimum must be read at the estimated batch. The noise is per
    run, relative to the loss (``noise`` = 0.1% of the loss against a 2% tolerance: the plateau's argmin is
    noise, its edge is not)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    rows = []
    for d, crit in groups.items():
        knee = crit - 1.0
        for seed in range(seeds):
            for xb in batches:
                opt_lr = -10.0 + 0.5 * (xb - 5)
                grid = np.arange(opt_lr - 3.0, opt_lr + 3.01, 0.5) + 0.25  # the optimum falls between grid points
                dlr = grid - opt_lr
                plateau = base * (1.0 + RISE * max(0.0, xb - knee) ** 2)
                loss = plateau + 0.05 * dlr ** 2 + 0.02 * np.maximum(dlr, 0) ** 3
                loss = loss * (1.0 + rng.normal(0.0, noise, grid.size))
                rows += [{"D": d, "bs": 2.0 ** xb, "lr": 2.0 ** g, "loss": y, "seed": seed}
                         for g, y in zip(grid, loss)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# critical_batch on one profile
# ------------------------------------------------------------------------------------------------
def test_the_crossing_is_interpolated_linearly_in_log2_batch_and_the_largest_batch_within_tolerance_counts():
    x = np.arange(1.0, 7.0)
    c = critical_batch(x, [1.0, 1.0, 1.0, 1.01, 1.03, 1.05], 0.02)
    assert c.log2_batch == pytest.approx(4.5) and c.censored is None  # 1.02 halfway from 1.01 to 1.03
    assert c.best_loss == 1.0 and c.threshold == pytest.approx(1.02)
    # a dip back within tolerance past the rise is still within it: the largest such batch is taken
    assert critical_batch(x, [1.0, 1.03, 1.0, 1.01, 1.03, 1.05], 0.02).log2_batch == pytest.approx(4.5)
    # every run of the next batch diverged: the crossing lies in the step after B_k, B_k is the lower bound
    c = critical_batch(x, [1.0, 1.0, 1.01, math.inf, math.inf, math.inf], 0.02)
    assert c.log2_batch == 3.0 and c.censored is None
    # a wider tolerance moves the estimate up, never down
    assert critical_batch(x, [1.0, 1.0, 1.0, 1.01, 1.03, 1.05], 0.04).log2_batch > 4.5


def test_censoring_at_the_top_the_bottom_and_with_no_finite_loss():
    x = np.arange(1.0, 6.0)
    top = critical_batch(x, [1.0, 1.0, 1.005, 1.01, 1.015], 0.02)
    assert top.censored == "top" and top.log2_batch == 5.0  # the rise is not seen: B_crit ≥ the largest batch
    bottom = critical_batch(x, [1.0, 1.05, 1.1, 1.2, 1.3], 0.02)
    assert bottom.censored == "bottom" and 1.0 < bottom.log2_batch < 2.0  # an upper bound: the plateau is unseen
    # the first finite batch is the grid's edge when the smaller ones diverged
    assert critical_batch(x, [math.inf, 1.0, 1.1, 1.2, 1.3], 0.02).censored == "bottom"
    assert critical_batch(x, [math.inf] * 5, 0.02).censored == "empty"


@pytest.mark.parametrize(("loss", "tol", "words"), [
    ([-1.0, -0.9, -0.8], 0.02, "relative to the best loss"),
    ([0.0, 0.1, 0.2], 0.02, "relative to the best loss"),
    ([1.0, 1.1, 1.2], 0.0, "finite number > 0"),
    ([1.0, 1.1, 1.2], math.nan, "finite number > 0"),
    ([1.0, 1.1, 1.2], math.inf, "finite number > 0"),
])
def test_non_positive_losses_and_bad_tolerances_are_refused(loss, tol, words):
    with pytest.raises(DeeplimitError, match=words):
        critical_batch([1.0, 2.0, 3.0], loss, tol)


# ------------------------------------------------------------------------------------------------
# The oracle with batch_estimator="critical"
# ------------------------------------------------------------------------------------------------
def test_a_known_critical_batch_is_recovered_per_seed_within_the_grids_resolution_and_eta_is_read_there():
    truth = {1024.0: 4.3, 4096.0: 6.6, 16384.0: 8.2}
    runs = surface(truth, rng=np.random.default_rng(1))
    oracle = fit_oracle(runs, x="D", batch="bs", batch_estimator="critical", batch_tolerance=TOL)
    argmin = fit_oracle(runs, x="D", batch="bs")
    for g in oracle.optima:
        want = truth[g.sizes["D"]]
        assert not g.censored["batch"]
        assert all(abs(v - want) < 0.5 for v in g.per_seed["batch"]), (want, g.per_seed["batch"])
        # the LR optimum is read at the critical batch: −10 + ½(log2 B − 5), 0.25 octave off the grid points
        assert g.log2["lr"] == pytest.approx(-10.0 + 0.5 * (g.log2["batch"] - 5), abs=0.25)
    fit = oracle.fit_dict()
    assert (fit["batch_estimator"], fit["batch_tolerance"]) == ("critical", TOL)
    assert (argmin.fit_dict()["batch_estimator"], argmin.fit_dict()["batch_tolerance"]) == ("argmin", None)
    assert "critical batch, tolerance 0.02" in oracle.text()


def test_censored_at_the_top_edge_when_the_rise_lies_past_the_grid():
    runs = surface({1024.0: 12.0, 2048.0: 12.5, 4096.0: 13.0}, batches=range(1, 9))
    with pytest.raises(DeeplimitError, match="no group .* has an interior batch optimum"):
        fit_oracle(runs, x="D", batch="bs", batch_estimator="critical", batch_tolerance=TOL)
    # one group's rise seen, two past the grid: those two are censored, so the law is refused as too few groups
    runs = surface({1024.0: 5.0, 2048.0: 12.5, 4096.0: 13.0}, batches=range(1, 9))
    with pytest.raises(DeeplimitError, match="1 of 3 have an interior optimum"):
        fit_oracle(runs, x="D", batch="bs", batch_estimator="critical", batch_tolerance=TOL)


def test_a_critical_batch_growing_as_a_power_law_of_data_gives_the_batch_laws_exponent():
    exponent = 0.4  # octaves of B_crit per doubling of data
    sizes = [2.0 ** k for k in range(10, 16)]
    truth = {d: 3.2 + exponent * (math.log2(d) - 10) for d in sizes}
    runs = surface(truth, batches=range(1, 12), rng=np.random.default_rng(7))
    oracle = fit_oracle(runs, x="D", batch="bs", batch_estimator="critical", batch_tolerance=TOL)
    law = oracle.laws[()]["batch"]
    assert law.exponents["D"] == pytest.approx(exponent, abs=0.1)
    (p,) = oracle.predict({"D": 2.0 ** 18})
    lo, hi = p.ci["batch"]
    assert lo < p.log2["batch"] < hi and abs(p.log2["batch"] - (3.2 + exponent * 8)) < 0.5
    # held out at the largest D, the law beats reusing the largest fitted group's critical batch
    s = evaluate_oracle(runs, x="D", batch="bs", batch_estimator="critical", batch_tolerance=TOL).summary
    assert s["mean_abs_log2_error"]["batch"] < s["naive_mean_abs_log2_error"]["batch"]


def test_a_tolerance_without_the_critical_estimator_or_a_non_positive_loss_is_refused():
    runs = surface({1024.0: 4.0, 2048.0: 5.0, 4096.0: 6.0}, seeds=1)
    with pytest.raises(DeeplimitError, match="critical batch estimator only"):
        fit_oracle(runs, x="D", batch="bs", batch_tolerance=0.02)
    with pytest.raises(DeeplimitError, match="name the batch-size column"):
        fit_oracle(runs, x="D", batch_estimator="critical", batch_tolerance=TOL)
    with pytest.raises(DeeplimitError, match="must be one of"):
        fit_oracle(runs, x="D", batch="bs", batch_estimator="median")
    with pytest.raises(DeeplimitError, match=r"loss column 'loss' holds -.* \(row 0, ≤ 0\)"):
        fit_oracle(runs.assign(loss=runs["loss"] - 1.0), x="D", batch="bs", batch_estimator="critical",
                   batch_tolerance=TOL)
    with pytest.raises(DeeplimitError, match="the critical batch needs a tolerance: .*seed-to-seed noise"):
        fit_oracle(runs, x="D", batch="bs", batch_estimator="critical")  # no default: it must sit above the noise


# ------------------------------------------------------------------------------------------------
# The CLI
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("critical") / "runs.csv"
    surface({d: 3.0 + 0.5 * (math.log2(d) - 10) for d in (1024.0, 2048.0, 4096.0, 8192.0)},
            rng=np.random.default_rng(3)).to_csv(path, index=False)
    return path


def test_cli_keeps_the_json_contract_and_names_the_estimator_in_the_fit_block(csv, capsys):
    argv = ["predict", str(csv), "--x", "D", "--batch", "bs", "--batch-estimator", "critical",
            "--batch-tolerance", "0.02", "--at", "D=32768", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    (p,) = out["predictions"]
    assert list(p)[:7] == ["at", "log2_lr", "log2_lr_ci", "lr", "log2_batch", "log2_batch_ci", "batch"]
    assert p["log2_batch"] == pytest.approx(3.0 + 0.5 * 5, abs=0.5) and p["batch"] == pytest.approx(
        2 ** p["log2_batch"])
    assert out["fit"]["batch_estimator"] == "critical" and out["fit"]["batch_tolerance"] == 0.02
    assert main(["predict", str(csv), "--x", "D", "--batch", "bs", "--batch-estimator", "critical",
                 "--batch-tolerance", "0.05", "--at", "D=32768"]) == 0
    assert "log2 batch* (critical batch, tolerance 0.05) =" in capsys.readouterr().out
    # the tolerance has no default: without it the command is refused, naming the flag and what to choose
    assert main(["predict", str(csv), "--x", "D", "--batch", "bs", "--batch-estimator", "critical", "--at",
                 "D=32768"]) == 2
    err = capsys.readouterr().err
    assert "--batch-tolerance FRAC" in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("extra", "words"), [
    (["--batch-tolerance", "0"], "finite number > 0"),
    (["--batch-tolerance", "-0.1"], "finite number > 0"),
    (["--batch-tolerance", "nan"], "finite number > 0"),
    (["--batch-tolerance", "inf"], "finite number > 0"),
    (["--batch-tolerance", "two"], "invalid float value"),
    (["--batch-estimator", "median"], "invalid choice"),
    (["--batch-tolerance", "0.02"], "add --batch-estimator critical"),
    (["--batch-estimator", "argmin", "--batch-tolerance", "0.02"], "add --batch-estimator critical"),
])
def test_cli_bad_input_exits_2_with_one_line(csv, capsys, extra, words):
    argv = ["predict", str(csv), "--x", "D", "--batch", "bs", "--at", "D=32768", *extra]
    if "--batch-estimator" not in extra and "0.02" not in extra:
        argv += ["--batch-estimator", "critical"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_cli_estimator_without_batch_and_non_positive_loss_exit_2_with_one_line(csv, tmp_path, capsys):
    for extra in (["--batch-estimator", "critical"], ["--batch-tolerance", "0.02"]):
        assert main(["predict", str(csv), "--x", "D", "--at", "D=32768", *extra]) == 2
        err = capsys.readouterr().err
        assert "--batch COL" in err and err.count("\n") == 1, err
    neg = tmp_path / "neg.csv"
    runs = pd.read_csv(csv)
    runs.assign(loss=np.log(runs["loss"])).to_csv(neg, index=False)  # log of a loss < 1: negative
    assert main(["predict", str(neg), "--x", "D", "--batch", "bs", "--batch-estimator", "critical",
                 "--batch-tolerance", "0.02", "--at", "D=32768"]) == 2
    err = capsys.readouterr().err
    assert "--batch-estimator argmin" in err and err.count("\n") == 1, err


def test_cli_help_explains_the_statistic():
    parser = build_parser("predict").subparsers["predict"]
    helps = {a.dest: a.help for a in parser._actions}
    assert "largest batch within" in helps["batch_estimator"] and "(1 + FRAC)" in helps["batch_tolerance"]
    assert "critical batch" in parser.description
