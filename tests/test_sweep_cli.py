"""``deeplimit sweep`` end to end on the demo preset, through ``register`` on our own parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from deeplimit.cli.sweep import register
from deeplimit.errors import DeeplimitError


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="deeplimit")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", *argv])
    return args.func(args)


def test_cli_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "demo")
    common = ["--name", "demo", "--run-dir", d]
    assert _run("create", *common, "--preset", "demo-quadratic", "--set", "seeds=1",
                "--set", "depths=[1, 4, 16]", "--set", "steps=100", "--set", "lr_step=1.0") == 0
    assert "78 points" in capsys.readouterr().out
    # One in-process worker (the launch path is covered by the fault test's worker processes).
    assert _run("worker", *common, "--heartbeat-interval", "1", "--threads", "0") == 0
    assert _run("status", *common, "--json") == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["done"] == counts["total"] == 78 and counts["left"] == 0
    assert _run("results", *common) == 0
    long = pd.read_csv(tmp_path / "demo" / "results" / "long.csv")
    assert {"preset", "depth", "log2_lr", "seed", "step", "metric", "value", "status"} <= set(long.columns)
    capsys.readouterr()
    assert _run("analyze", *common, "--n-boot", "200") == 0
    out = capsys.readouterr().out
    assert "transfers" in out and "shifts" in out
    drift = pd.read_csv(tmp_path / "demo" / "analysis" / "drift.csv").set_index("preset")
    assert drift.loc["depth_scaled", "verdict"] == "transfers"
    assert drift.loc["sp", "verdict"] == "shifts"
    assert drift.loc["sp", "slope"] == pytest.approx(-1.0, abs=0.25)
    for name in ("summary.csv", "loss_vs_lr.png", "optimum_vs_size.png"):
        assert (tmp_path / "demo" / "analysis" / name).stat().st_size > 0


def test_cli_errors(tmp_path: Path) -> None:
    with pytest.raises(DeeplimitError, match="unknown sweep preset"):
        _run("create", "--name", "x", "--run-dir", str(tmp_path), "--preset", "nope")
    with pytest.raises(DeeplimitError, match="exactly one of"):
        _run("create", "--name", "x", "--run-dir", str(tmp_path))
    with pytest.raises(DeeplimitError, match="--storage URL or --run-dir"):
        _run("status", "--name", "x")
