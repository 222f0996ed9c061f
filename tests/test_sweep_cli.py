"""``deeplimit sweep`` end to end: the demo grid in process, and `launch` as a real process (progress, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from deeplimit.cli._args import parse_sets
from deeplimit.cli.sweep import main
from deeplimit.errors import DeeplimitError
from deeplimit.sweep import results_frame, sweep_status

ALLOW = ("--allow-objective", "sweep_objectives:slow_marked")


def _run(*argv: str) -> int:
    return main(list(argv))


def test_cli_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "demo")
    common = ["--name", "demo", "--run-dir", d]
    # two seeds: a verdict needs an interval over seeds (one seed is "inconclusive (1 seed)"); the slopes come out
    # exactly 0 and −1 with two as with three, and each point costs an Optuna trial (~80 ms) in the one worker
    assert _run("create", *common, "--grid", "demo-quadratic", "--set", "seeds=2",
                "--set", "depths=[1, 4, 16]", "--set", "steps=100", "--set", "lr_step=1.0") == 0
    assert "156 points" in capsys.readouterr().out
    # One in-process worker (launch runs as a real process in the tests below).
    assert _run("worker", *common, "--heartbeat-interval", "1", "--threads", "0") == 0
    out, err = capsys.readouterr()
    assert "Trial" not in out + err  # no Optuna INFO lines
    assert _run("status", *common, "--json") == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["done"] == counts["total"] == 156 and counts["left"] == 0
    # --watch: the aggregate bar until the sweep is finished (here at once), then the status line.
    assert _run("status", *common, "--watch", "--poll", "0.1") == 0
    out, err = capsys.readouterr()
    assert "156/156" in err and "156/156 done" in out
    assert _run("results", *common) == 0
    long = pd.read_csv(tmp_path / "demo" / "results" / "long.csv")
    assert {"rule", "depth", "log2_lr", "lr", "seed", "step", "metric", "value", "status"} <= set(long.columns)
    assert list(long.columns[:3]) == ["experiment", "run_id", "rule"]  # the transfer table's column order
    capsys.readouterr()
    assert _run("analyze", *common, "--n-boot", "200") == 0
    out = capsys.readouterr().out
    assert "transfers" in out and "shifts" in out
    drift = pd.read_csv(tmp_path / "demo" / "analysis" / "drift.csv").set_index("rule")
    assert drift.loc["depth_scaled", "verdict"] == "transfers"
    assert drift.loc["sp", "verdict"] == "shifts"
    assert drift.loc["sp", "slope"] == pytest.approx(-1.0, abs=0.25)
    for name in ("summary.csv", "loss_vs_lr.png", "optimum_vs_size.png"):
        assert (tmp_path / "demo" / "analysis" / name).stat().st_size > 0


def test_parse_sets() -> None:
    from deeplimit.transfer.grids import grid_fields

    fields = grid_fields("depth-transfer")
    assert parse_sets(["seeds=2", "rule=depth_mup,blocks_only", "depth=8,16", "log2_lr=-10:-5:0.5",
                       "train_io=False"], fields) == {"seeds": 2, "rule": ["depth_mup", "blocks_only"],
                                                      "depth": [8, 16], "log2_lr": "-10:-5:0.5", "train_io": False}
    for bad in (["noequals"], ["=3"], ["seeds=1", "seeds=2"], ["seeds="], ["a=1"], ["train_io=2"]):
        with pytest.raises(DeeplimitError):
            parse_sets(bad, fields)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and Path(p).is_dir()),
            "OMP_NUM_THREADS": "1"}


def _sigint_as_a_terminal_sends_it() -> None:
    """A suite started in the background (``make test &``) ignores SIGINT, and children inherit the ignore: the
    launcher must see Ctrl-C as a user at a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _deeplimit_sweep(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deeplimit.cli.sweep", *argv], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_as_a_terminal_sends_it, **kw)


def _slow_sweep(tmp_path: Path, name: str, n: int = 8) -> list[str]:
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"axes": {"x": [float(i) for i in range(n)]},
                                "fixed": {"sleep": 0.1, "first_sleep": 0.1, "hold_from": 2},
                                "objective": "sweep_objectives:slow_marked", "metric": "loss"}))
    common = ["--name", name, "--run-dir", str(tmp_path / name)]
    assert _run("create", *common, "--spec", str(spec)) == 0  # in process: only `launch` is under test here
    return common


def test_launch_shows_progress_and_ctrl_c_resumes_to_the_same_result(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    common = _slow_sweep(tmp_path, "ctrlc")
    # A user objective named in a spec file runs only when the launch allows it (the storage names the code).
    launch = _deeplimit_sweep("launch", *common, "--workers", "2", "--heartbeat-interval", "1", *ALLOW)
    started = tmp_path / "ctrlc" / "started"
    deadline = time.monotonic() + 60
    # Three markers: a worker has done its first point and is held in its second (see slow_marked's hold_from), so
    # the stop finds points done and points running however slow the machine is.
    while not (started.exists() and len(list(started.iterdir())) >= 3):
        assert time.monotonic() < deadline and launch.poll() is None, launch.stderr.read()
        time.sleep(0.05)
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 130, err
    assert "Traceback" not in out + err
    assert "run the same command again to resume" in err
    assert "ctrlc: " in err and "pt" in err  # the aggregate progress bar (tqdm, on stderr)
    storage = f"sqlite:///{tmp_path / 'ctrlc' / 'sweep.db'}"
    stopped = sweep_status(storage, "ctrlc")
    assert stopped.running == 0 and 0 < stopped.done < 8, stopped  # nothing left 'running' after the stop
    for log in (tmp_path / "ctrlc" / "logs").iterdir():
        assert "Traceback" not in log.read_text(), log.read_text()
    # Resume: the same command finishes the sweep; every point once, interrupted points re-run. Its launcher runs in
    # process (its two workers are real processes): the launcher's own process and Ctrl-C are checked above, and a
    # second launcher interpreter only repeated its imports (~3 s).
    capsys.readouterr()
    (tmp_path / "ctrlc" / "release").write_text("")  # the resumed run's points are no longer held
    assert _run("launch", *common, "--workers", "2", "--heartbeat-interval", "1", "--quiet", *ALLOW) == 0
    out, err = capsys.readouterr()
    assert "8/8 done" in out and "pt/s" not in err  # --quiet: no bar
    per_run = results_frame(storage, "ctrlc").query("metric == 'loss'")
    assert sorted(per_run["x"]) == [float(i) for i in range(8)] and per_run["run_id"].is_unique
    assert list(per_run.sort_values("x")["value"]) == [(i + 1.0) ** 2 for i in range(8)]  # same as a clean run


def test_launch_exits_nonzero_when_points_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The launcher in process, its two workers real processes: what is checked is the exit code and the words
    # the launcher prints (a launch's real process and its Ctrl-C are the test above); a launcher interpreter and
    # one for `create` cost ~5 s of imports.
    spec = tmp_path / "f.json"
    spec.write_text(json.dumps({"axes": {"x": [0.0, 1.0]}, "objective": "sweep_objectives:fails_always"}))
    common = ["--name", "f", "--run-dir", str(tmp_path / "f")]
    assert _run("create", *common, "--spec", str(spec)) == 0
    capsys.readouterr()
    code = _run("launch", *common, "--workers", "2", "--max-retries", "1", "--heartbeat-interval", "1", "--quiet",
                "--allow-objective", "sweep_objectives:fails_always")
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "2 failed" in out and "RuntimeError: boom" in err and "Traceback" not in err
