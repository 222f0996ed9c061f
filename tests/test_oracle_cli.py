"""``deeplimit predict``: the CLI contract of issue 24, on tables it did not produce (written here from synthetic
loss surfaces with known optima)."""

import json
import math

import numpy as np
import pytest

from deeplimit.cli import build_parser, main
from oracle_surfaces import grid_of, law, make_runs

GROUPS = grid_of(N=[2**20, 2**22, 2**24, 2**26], D=[2**27, 2**29, 2**31])
LR_LAW = law(2.0, N=-0.3, D=-0.1)
B_LAW = law(3.0, D=0.3)
CONTRACT_KEYS = ["at", "log2_lr", "log2_lr_ci", "lr", "log2_batch", "log2_batch_ci", "batch"]


@pytest.fixture(scope="module")
def batch_csv(tmp_path_factory):
    runs, _ = make_runs(GROUPS, LR_LAW, opt_batch=B_LAW, batches=[2.0**k for k in range(8, 15)], noise=1e-4,
                        rng=np.random.default_rng(5))
    path = tmp_path_factory.mktemp("oracle") / "runs.csv"
    runs.to_csv(path, index=False)
    return path


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_contract_json_with_batch_in_the_order_of_at(batch_csv, capsys):
    targets = ["N=1.07e9,D=2e10", "N=1e7,D=1e9", "N=3e6,D=5e8"]
    argv = ["predict", str(batch_csv), "--x", "N", "D", "--lr", "lr", "--loss", "loss", "--batch", "bs", "--json"]
    for t in targets:
        argv += ["--at", t]
    out = _json(capsys, argv)
    assert set(out) == {"predictions", "fit"}
    preds = out["predictions"]
    assert [p["at"] for p in preds] == [{"N": 1.07e9, "D": 2e10}, {"N": 1e7, "D": 1e9}, {"N": 3e6, "D": 5e8}]
    for p in preds:
        assert list(p)[:len(CONTRACT_KEYS)] == CONTRACT_KEYS
        at = p["at"]
        for axis, truth in (("lr", LR_LAW(**at)), ("batch", B_LAW(**at))):
            lo, hi = p[f"log2_{axis}_ci"]
            assert lo < p[f"log2_{axis}"] < hi
            assert p[axis] == pytest.approx(2.0 ** p[f"log2_{axis}"])
            assert abs(p[f"log2_{axis}"] - truth) < 0.15, (axis, at)
    assert out["fit"]["laws"][0]["lr"]["exponents"]["N"] == pytest.approx(-0.3, abs=0.03)
    assert out["fit"]["laws"][0]["batch"]["exponents"]["D"] == pytest.approx(0.3, abs=0.03)
    assert len(out["fit"]["groups"]) == len(GROUPS)


def test_without_batch_the_batch_fields_are_null_and_parquet_and_where_work(tmp_path, capsys):
    runs, _ = make_runs(GROUPS, LR_LAW, seeds=2, noise=1e-3)
    runs["rule"] = "mup"
    runs.to_parquet(tmp_path / "runs.parquet")
    out = _json(capsys, ["predict", str(tmp_path / "runs.parquet"), "--x", "N", "D", "--where", "rule == 'mup'",
                         "--fix", "D=-0.1", "--at", "N=1e9,D=1e10", "--json"])
    (p,) = out["predictions"]
    assert p["log2_batch"] is None and p["log2_batch_ci"] is None and p["batch"] is None
    assert p["log2_lr"] == pytest.approx(LR_LAW(N=1e9, D=1e10), abs=0.1)
    assert out["fit"]["laws"][0]["lr"]["fixed"] == ["D"]


def test_evaluate_prints_error_regret_and_coverage_beside_the_naive_forecast(batch_csv, capsys):
    assert main(["predict", str(batch_csv), "--x", "N", "D", "--batch", "bs", "--evaluate"]) == 0
    text = capsys.readouterr().out
    for words in ("held out 3 group(s) at the largest N", "mean |log2 error| lr", "mean |log2 error| batch",
                  "mean regret", "80% coverage lr", "naive"):
        assert words in text, text
    ev = _json(capsys, ["predict", str(batch_csv), "--x", "N", "D", "--batch", "bs", "--evaluate", "--json"])
    s = ev["evaluation"]["summary"]
    assert s["mean_abs_log2_error"]["lr"] < 0.2 < s["naive_mean_abs_log2_error"]["lr"]
    assert 0 <= s["coverage"]["lr"] <= 1 and s["n_scored"]["lr"] == 3
    assert math.isfinite(s["mean_regret"]) and s["mean_regret"] < s["naive_mean_regret"]
    assert "predictions" not in ev  # no --at: nothing to predict


@pytest.mark.parametrize(("extra", "words"), [
    (["--at", "N=1e9,D=1e10", "--loss", "val_loss"], "lacks column(s) ['val_loss']"),
    (["--at", "N=1e9"], "--at lacks D"),
    (["--at", "N=1e9,D"], "expected NAME=VALUE"),
    (["--at", "N=1e9,D=1e10", "--where", "N >"], "is not COL OP VALUE"),
    (["--at", "N=1e9,D=1e10", "--fix", "wd:N=0"], "no 'wd' law is fitted"),
    (["--at", "N=1e9,D=1e10", "--fix", "N=zero"], "expected [LAW:]X=EXPONENT"),
    ([], "give a target with --at"),
])
def test_bad_input_exits_2_with_one_line(batch_csv, capsys, extra, words):
    assert main(["predict", str(batch_csv), "--x", "N", "D", "--batch", "bs", *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_missing_file_and_every_flag_has_plain_help(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.csv"), "--x", "N", "--at", "N=1"]) == 2
    assert "no table of runs" in capsys.readouterr().err
    parser = build_parser("predict").subparsers["predict"]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
    assert main(["predict", "--help"]) == 0
    assert "``" not in capsys.readouterr().out
