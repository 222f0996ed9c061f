"""Damaged storages, checkpoints and paths: one-line errors naming the file and the fix, never a traceback.

One table per category: corrupt ``result`` records in a sweep's storage, journal files Optuna cannot replay,
checkpoints with the right fingerprint but damaged fields, a ``.npy`` given as a data set, run folders inside
a symbolic-link loop, and a sweep whose every point failed asked for its results. Each category has one case
through the command line (``main``, in process) besides the Python functions it calls.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from deeplimit.cli import main as deeplimit_main
from deeplimit.cli.sweep import main as sweep_main
from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, open_storage, results_frame, run_worker, sweep_status
from deeplimit.sweep.create import KEY_ATTR, load_sweep

FAST = {"heartbeat_interval": 1, "threads": None, "handle_signals": False}


def _one_line(call: Callable[[], Any], *fragments: str) -> str:
    with pytest.raises(DeeplimitError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def _cli_one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str,
                  entry: Callable[[list[str]], int] = sweep_main) -> str:
    code = entry(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "error:" in lines[0] and "Traceback" not in out + err, (code, out, err)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _z(obj: Any) -> str:
    return base64.b64encode(zlib.compress(json.dumps(obj).encode())).decode()


# --------------------------------------------------------------------------------------------------------------
# 1. Corrupt `result` records of completed trials (the storage edited outside deeplimit)
# --------------------------------------------------------------------------------------------------------------
GOOD = {"status": "ok", "wall_s": 1.0, "worker": "w", "attempt": 1, "info": {}}
RESULTS = [
    "not json at all",
    42,
    ["a", "list"],
    json.dumps({"status": "ok"}),
    json.dumps({**GOOD, "rows_z": "!!!not base64!!!"}),
    json.dumps({**GOOD, "rows_z": base64.b64encode(b"not zlib").decode()}),
    json.dumps({**GOOD, "rows_z": base64.b64encode(zlib.compress(b"\xff\xfe")).decode()}),
    json.dumps({**GOOD, "rows_z": _z({"a": 1})}),
    json.dumps({**GOOD, "rows_z": _z([1, 2])}),
    json.dumps({**GOOD, "rows_z": _z([]), "status": "weird"}),
    json.dumps({**GOOD, "rows_z": _z([]), "wall_s": "slow"}),
    json.dumps([1, 2, 3]),
]


def _damaged_sweep(tmp_path: Path, **attrs: Any) -> str:
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0, 2.0]}), objective="sweep_objectives:returns_float",
                      run_dir=tmp_path / "run")
    study, _ = load_sweep(open_storage(sw.storage), "s", sw.storage)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0,
                                              user_attrs={KEY_ATTR: "x=1.0", **attrs}))
    return sw.storage


@pytest.mark.parametrize("result", RESULTS, ids=[f"result-{i}" for i in range(len(RESULTS))])
def test_corrupt_result_records_are_one_line_errors(result: Any, tmp_path: Path) -> None:
    url = _damaged_sweep(tmp_path, result=result)
    _one_line(lambda: results_frame(url, "s"), "trial 0 (x=1.0)", "damaged result", "restore the storage")


def test_corrupt_results_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _damaged_sweep(tmp_path, result="{not json")
    run = str(tmp_path / "run")
    for command in ("results", "analyze"):
        _cli_one_line([command, "--name", "s", "--run-dir", run], capsys, "damaged result")
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.parametrize("attrs", [{KEY_ATTR: ["not", "a", "key"]}, {KEY_ATTR: "x=1.0", "status": ["?"]}],
                         ids=["key", "status"])
def test_damaged_trial_records_in_status(attrs: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = _damaged_sweep(tmp_path, **attrs)
    _one_line(lambda: sweep_status(url, "s"), "damaged trial record")
    _cli_one_line(["status", "--name", "s", "--run-dir", str(tmp_path / "run"), "--table"], capsys, "damaged")


# --------------------------------------------------------------------------------------------------------------
# 2. Journal files Optuna cannot replay
# --------------------------------------------------------------------------------------------------------------
JOURNAL = [
    (b"\xff\xfe\x00\x81 binary\n", "line 2 is binary"),
    (b'{"op_code": 4, "worker_id": "w", "study_id": \n', "line 2 is not JSON"),
    (b'{"op_code": 99, "worker_id": "w"}\n', "operation"),
    (b"[1, 2, 3]\n", "line 2 is not an Optuna journal entry"),
    (b'{"op_code": 8}\n', "journal storage"),
]


@pytest.fixture()
def journal(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "sweep.journal"
    create_sweep("s", SweepSpec(axes={"x": [1.0, 2.0]}), objective="sweep_objectives:returns_float",
                 storage=f"journal:{path}", run_dir=tmp_path / "run")
    return f"journal:{path}", path


def _insert(path: Path, line: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], line, *lines[1:]]))


@pytest.mark.parametrize("line, fragment", JOURNAL, ids=[f"journal-{i}" for i in range(len(JOURNAL))])
def test_damaged_journals_are_one_line_errors(line: bytes, fragment: str, journal: tuple[str, Path]) -> None:
    url, path = journal
    _insert(path, line)
    for call in (lambda: open_storage(url), lambda: sweep_status(url, "s"), lambda: results_frame(url, "s"),
                 lambda: run_worker(url, "s", **FAST)):
        _one_line(call, f"journal storage {path} is damaged", fragment, "restore it from a copy")


def test_a_damaged_journal_through_the_cli(journal: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, path = journal
    _insert(path, b'{"op_code": 99}\n')
    for command in ("status", "results", "worker"):
        _cli_one_line([command, "--name", "s", "--storage", url], capsys, "is damaged")


# --------------------------------------------------------------------------------------------------------------
# 3. Checkpoints with the right fingerprint and damaged fields
# --------------------------------------------------------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(blob: dict) -> None:
        *parents, last = path.split(".")
        node = blob
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return edit


CHECKPOINTS = [
    ("model", KeyError), ("model", "weights"), ("optimizer", KeyError), ("optimizer", {}), ("extra.step", "2"),
    ("extra.step", KeyError), ("extra.losses", [1.0]), ("extra.rows", "{not json"), ("extra.wall_s", None),
    ("extra.result", KeyError),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict]:
    root = tmp_path_factory.mktemp("ckpt")
    r = np.random.default_rng(0)
    x = r.normal(size=(200, 6)).astype("float32")
    np.savez(root / "tiny.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    argv = ["train", "--data", str(root / "tiny.npz"), "--width", "8", "--depth", "2", "--batch-size", "16",
            "--steps", "4", "-q"]
    assert deeplimit_main([*argv, "--run-dir", str(root / "good")]) == 0
    blob = torch.load(root / "good" / "ckpt.pt", weights_only=True)
    blob["extra"]["result"] = ""  # as if stopped before the end: a resume reads every field
    return argv, blob


@pytest.mark.parametrize("field, value", CHECKPOINTS, ids=[f"{f}-{v}" for f, v in CHECKPOINTS])
def test_checkpoints_with_damaged_fields(field: str, value: Any, checkpoint: tuple[list[str], dict],
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, good = checkpoint
    blob = torch.load(_save(good, tmp_path / "copy.pt"), weights_only=True)  # a deep copy
    _set(field, value)(blob)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(blob, run / "ckpt.pt")
    _cli_one_line([*argv, "--run-dir", str(run)], capsys, f"checkpoint {run / 'ckpt.pt'} has a damaged field",
                  f"'{field}", "--fresh", entry=deeplimit_main)


def test_an_intact_checkpoint_resumes(checkpoint: tuple[list[str], dict], tmp_path: Path) -> None:
    argv, good = checkpoint
    run = tmp_path / "run"
    run.mkdir()
    _save(good, run / "ckpt.pt")
    stale = run / ".ckpt.pt.abc123.tmp"  # what a run killed while saving leaves behind
    stale.write_bytes(b"torn")
    import os

    os.utime(stale, (1, 1))
    assert deeplimit_main([*argv, "--run-dir", str(run)]) == 0
    assert not stale.exists()


def _save(blob: dict, path: Path) -> Path:
    torch.save(blob, path)
    return path


# --------------------------------------------------------------------------------------------------------------
# 4. A .npy given as a data set, 5. run folders inside a symbolic-link loop, 6. results of a sweep that failed
# --------------------------------------------------------------------------------------------------------------
def test_a_npy_file_as_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deeplimit.data.images import load_npz

    np.save(tmp_path / "x.npy", np.zeros((10, 3), dtype="float32"))
    _one_line(lambda: load_npz(tmp_path / "x.npy"), "single array", "np.savez")
    _cli_one_line(["train", "--data", str(tmp_path / "x.npy"), "--steps", "2", "-q"], capsys, "single array",
                  entry=deeplimit_main)


@pytest.fixture()
def loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


def test_run_folders_inside_a_symlink_loop(loop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deeplimit.io import ensure_dir, resolve_path

    run = loop / "run"
    _one_line(lambda: resolve_path(run, "run folder"), "symbolic-link loop")
    _one_line(lambda: ensure_dir(run, "run folder"), "symbolic-link loop")
    _one_line(lambda: create_sweep("s", SweepSpec(axes={"x": [1.0]}), objective="sweep_objectives:returns_float",
                                   run_dir=run), "symbolic-link loop")
    ok = create_sweep("s", SweepSpec(axes={"x": [1.0]}), objective="sweep_objectives:returns_float",
                      run_dir=tmp_path / "ok")
    _one_line(lambda: run_worker(ok.storage, "s", run_dir=str(run), **FAST), "symbolic-link loop")
    for argv in (["create", "--name", "s", "--run-dir", str(run), "--grid", "demo-quadratic"],
                 ["status", "--name", "s", "--run-dir", str(run)],
                 ["worker", "--name", "s", "--storage", ok.storage, "--run-dir", str(run)]):
        _cli_one_line(argv, capsys, "symbolic-link loop")
    _cli_one_line(["train", "--steps", "2", "--run-dir", str(run), "-q"], capsys, "symbolic-link loop",
                  entry=deeplimit_main)


def test_results_of_a_sweep_whose_every_point_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    sw = create_sweep("f", SweepSpec(axes={"x": [1.0, 2.0]}), objective="sweep_objectives:fails_always",
                      run_dir=run)
    assert run_worker(sw.storage, "f", max_retries=0, **FAST).gave_up == 2
    _cli_one_line(["results", "--name", "f", "--run-dir", str(run)], capsys, "no completed runs", "2 failed",
                  "RuntimeError: boom", "deeplimit sweep create")
    assert not (run / "results").exists()
    create_sweep("empty", SweepSpec(axes={"x": [1.0]}), objective="sweep_objectives:fails_always", run_dir=run)
    _cli_one_line(["results", "--name", "empty", "--run-dir", str(run)], capsys, "no completed runs",
                  "sweep launch")
