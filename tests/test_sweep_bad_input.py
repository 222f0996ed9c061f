"""Bad input to every ``deeplimit sweep`` sub-command: a one-line error naming the fix, exit ≠ 0, nothing written.

Table-driven: each row is (sub-command arguments, a fragment the message must contain). ``{run}`` is a fresh
run folder that must not exist afterwards, ``{sweep}`` the folder of a valid demo sweep (created once), whose
state must not change, ``{file}`` an existing plain file, ``{full}`` a non-empty folder that is not ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deeplimit.cli.sweep import main
from deeplimit.sweep import sweep_status

SECRET = "S3cretPW"

CREATE = [
    # what / how
    ([], "required: --name"),
    (["--name", ""], "argument --name: is empty"),
    (["--name", "x", "--run-dir", "{run}"], "exactly one of --grid NAME or --spec"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "nope"], "unknown experiment grid 'nope'"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--spec", "{file}"], "exactly one of"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{run}/missing.json"], "does not exist"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{badjson}"], "not valid JSON"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{binary}"], "not valid JSON"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{listjson}"], "JSON object"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{misspelled}"], "unknown training option 'dpeth'"),
    (["--name", "x", "--run-dir", "{run}", "--spec", "{noaxes}"], "no 'axes' field"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "seeds"], "KEY=VALUE"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "seeds=1", "--set", "seeds=2"],
     "given twice"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "seeds=0"], "seeds must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "depths=0"], "depth must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "depths=[0, 4]"], "depth must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "steps=-1"], "steps must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--set", "lr_step=0"], "step must be positive"),
    # the real trainer's grids: every point is validated through the objective before anything is written
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=huge"], "unknown tier"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set", "bogus=1"],
     "--set bogus: no such setting here; valid:"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set", "depth=0"],
     "depth must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set", "width=0"],
     "width must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set", "steps=-1"],
     "steps must be"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "rule=depth_mup,nope"], "unknown rule 'nope'"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "rule=depth_mup blocks_only"], "unknown rule"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "data={run}/missing.npz"], "neither a dataset"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "data={file}"], "np.savez"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "train_io=maybe"], "--set train_io is a yes/no option"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "log2_lr=2000"], "learning rate"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "log2_lr=-10:-5"], "start:stop:step"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "log2_lr=-5:-10:1"], "below start"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "depth-transfer", "--set", "tier=smoke", "--set",
      "activation=foo"], "activation 'foo' is unknown"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "transformer-depth", "--set", "tier=smoke", "--set",
      "n_heads=5"], "does not divide"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--objective", "no_such_mod_xyz:f"],
     "cannot import module"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--objective", "nocolon"], "dotted path"),
    # where
    (["--name", "x", "--run-dir", "{file}", "--grid", "demo-quadratic"], "is a file"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "notaurl"], "not a storage URL"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "postgres://u@h/db"],
     "postgresql://"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "sqlite:///:memory:"],
     "needs a file"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "sqlite:////no/such/dir/x.db"],
     "does not exist"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "journal:/no/such/dir/j.log"],
     "does not exist"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage",
      f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:9/db"], "start the server"),
    (["--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage",
      f"postgresql+psycopg2://u@127.0.0.1:9/db?password={SECRET}"], "start the server"),
]

RUN = [
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--workers", "0"], "--workers: must be from 1"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--workers", "two"], "is not a whole number"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--heartbeat-interval", "0"], "must be ≥ 1"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--heartbeat-interval", "-1"], "must be ≥ 1"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--grace-period", "0"], "must be ≥ 1"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--grace-period", "3"], "above the heartbeat interval"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--max-retries", "-1"], "must be ≥ 0"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--threads", "-1"], "must be ≥ 0"),
    (["launch", "--name", "demo", "--run-dir", "{sweep}", "--n-trials", "0"], "must be ≥ 1"),
    (["launch", "--name", "nosuch", "--run-dir", "{sweep}"], "no sweep named 'nosuch'"),
    (["launch", "--name", "demo"], "no storage given"),
    (["launch", "--name", "demo", "--storage", f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:9/db"],
     "start the server"),
    (["worker", "--name", "demo", "--run-dir", "{sweep}", "--share", "2/2"], "need 0 <= I < N"),
    (["worker", "--name", "demo", "--run-dir", "{sweep}", "--share", "x"], "must look like I/N"),
    (["worker", "--name", "demo", "--run-dir", "{sweep}", "--heartbeat-interval", "0"], "must be ≥ 1"),
    (["worker", "--name", "demo", "--run-dir", "{sweep}", "--allow-objective", "nocolon"],
     "must look like package.module:function"),
    (["status", "--name", "demo", "--run-dir", "{sweep}", "--poll", "0"], "finite number > 0"),
    (["status", "--name", "demo", "--run-dir", "{sweep}", "--poll", "abc"], "is not a number"),
    (["status", "--name", "nosuch", "--run-dir", "{sweep}"], "no sweep named"),
    (["status", "--name", "demo", "--run-dir", "{run}"], "no sweep storage at"),
    (["launch", "--name", "demo", "--run-dir", "{root}"], "no sweep storage at"),
    (["status", "--name", "demo", "--storage", "sqlite:///{binary}"], "not an SQLite database"),
    (["results", "--name", "demo", "--run-dir", "{sweep}", "--out", "{file}"], "is a file"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--n-boot", "0"], "--n-boot: must be from 1"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--n-boot", "-1"], "--n-boot: must be from 1"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--group", "nope"], "no column(s) ['nope']"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--size", "log2_lr"], "cannot be the model size"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--size", "rule", "--group", "seed"],
     "positive numbers"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--metric", "nope"], "metric 'nope' is not in the table"),
    (["analyze", "--name", "demo", "--run-dir", "{sweep}", "--out", "{file}"], "is a file"),
    (["analyze", "--name", "empty", "--run-dir", "{sweep}"], "no completed runs"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}"], "required: --array"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "0"], "--array: must be from 1"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--executor", "pbs"], "invalid choice"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2"], "SQLite"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--time", "0"], "--time: must be from 1"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--mem-gb", "-1"], "finite number > 0"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--cpus-per-task", "0"], "must be from 1"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--max-parallel", "0"], "must be from 1"),
    (["slurm", "--name", "demo", "--run-dir", "{sweep}", "--array", "2", "--executor", "local",
      "--heartbeat-interval", "0"], "must be ≥ 1"),
    (["postgres", "start"], "required: --dir"),
    (["postgres", "start", "--dir", "{full}"], "not empty and holds no cluster"),
    (["postgres", "start", "--dir", "{file}"], "is a file"),
    (["postgres", "start", "--dir", "{run}", "--database", "x; DROP DATABASE y"], "database name"),
    (["postgres", "start", "--dir", "{run}", "--port", "80"], "--port: must be from 1024"),
    (["postgres", "stop", "--dir", "{run}"], "no cluster in"),
    (["postgres", "restart", "--dir", "{run}"], "invalid choice"),
    ([], "required: ACTION"),
    (["nope"], "invalid choice"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    file = root / "plain.txt"
    file.write_text("not a folder\n")
    (root / "bad.json").write_text("{")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "list.json").write_text("[1, 2]")
    (root / "noaxes.json").write_text('{"fixed": {"a": 1}}')
    (root / "misspelled.json").write_text(json.dumps({
        "axes": {"log2_lr": [-8.0]}, "fixed": {"dpeth": 4, "steps": 10, "data": "digits"},
        "objective": "deeplimit.transfer.objectives:train_objective"}))
    full = root / "full"
    full.mkdir()
    (full / "important.txt").write_text("keep me")
    sweep = root / "sweep"
    assert main(["create", "--name", "demo", "--run-dir", str(sweep), "--grid", "demo-quadratic", "--set", "seeds=1",
                 "--set", "depths=1,4", "--set", "steps=20", "--set", "lr_step=4.0"]) == 0
    assert main(["worker", "--name", "demo", "--run-dir", str(sweep), "--heartbeat-interval", "1"]) == 0
    assert main(["create", "--name", "empty", "--run-dir", str(sweep), "--grid", "demo-quadratic"]) == 0
    return {"root": root, "file": file, "full": full, "sweep": sweep, "badjson": root / "bad.json",
            "binary": root / "binary.bin", "listjson": root / "list.json", "misspelled": root / "misspelled.json",
            "noaxes": root / "noaxes.json"}


def _fill(args: list[str], places: dict[str, Path], run: Path) -> list[str]:
    names = {k: str(v) for k, v in places.items()} | {"run": str(run)}
    return [a.format(**names) for a in args]


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file() and "sweep.db" not in p.name}


def _state(places: dict[str, Path]) -> tuple[dict[str, int], dict]:
    """The valid sweep's files and its point counts."""
    return _snapshot(places["sweep"]), sweep_status(f"sqlite:///{places['sweep'] / 'sweep.db'}", "demo").counts()


@pytest.fixture(scope="module")
def initial(places: dict[str, Path]) -> tuple[dict[str, int], dict]:
    """The valid sweep's state as created, read once: every bad command must leave it exactly so (a read per
    test before each command cost a storage open per row and would only re-read this)."""
    return _state(places)


def _check(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], places: dict[str, Path],
           run: Path, before: tuple[dict[str, int], dict]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code not in (0, None), (argv, out, err)
    assert len(lines) == 1 and "error:" in lines[0], (argv, err)
    assert fragment in lines[0], (argv, lines[0])
    assert "Traceback" not in out + err and SECRET not in out + err
    assert not run.exists(), f"{argv} left {run} behind"
    assert _state(places) == before, f"{argv} changed the existing sweep"
    assert (places["full"] / "important.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, fragment", CREATE, ids=[f"create-{i}" for i in range(len(CREATE))])
def test_create_bad_input(args: list[str], fragment: str, places: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], initial: tuple[dict[str, int], dict]) -> None:
    run = tmp_path / "run"
    _check(["create", *_fill(args, places, run)], fragment, capsys, places, run, initial)


@pytest.mark.parametrize("args, fragment", RUN, ids=[f"{a[0] if a else 'none'}-{i}" for i, (a, _) in enumerate(RUN)])
def test_run_bad_input(args: list[str], fragment: str, places: dict[str, Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                       initial: tuple[dict[str, int], dict]) -> None:
    monkeypatch.delenv("DEEPLIMIT_STORAGE_URL", raising=False)
    run = tmp_path / "run"
    _check(_fill(args, places, run), fragment, capsys, places, run, initial)
    assert not (places["sweep"] / "logs").exists() or args[0] != "launch"  # no worker was started


def test_nothing_listed_is_missing() -> None:
    # Every sub-command, and every option, has at least one bad-input row (flags that take no value, or any
    # text, are exempt).
    import argparse
    import re

    from deeplimit.cli.sweep import register

    parser = argparse.ArgumentParser()
    commands = register(parser.add_subparsers())
    rows = [r[0] for r in RUN] + [["create", *a] for a, _ in CREATE]
    free = {"--help", "--quiet", "--no-wait", "--ylabel", "--table", "--json", "--watch", "--wait", "--remove",
            "--partition", "--folder"}
    for command, sub in commands.items():
        mine = [r for r in rows if r and r[0] == command]
        assert mine, f"no bad-input row for `sweep {command}`"
        for flag in sorted(set(re.findall(r"(--[a-z][a-z-]*)", sub.format_help())) - free):
            # Options shared by several sub-commands (--storage, --name, --heartbeat-interval …) parse and fail
            # the same way everywhere: one row for any of them counts.
            assert any(flag in r for r in rows), f"`sweep {command} {flag}` has no bad-input row"
