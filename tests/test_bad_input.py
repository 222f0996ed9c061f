"""Bad input to every command this table covers (train, sde, signal, feature-diversity, reproduce, top level).

One row per case: the command exits with status 2, prints exactly one line naming the problem and the fix,
shows no traceback, and leaves nothing behind (no output folder created, no file or checkpoint changed).
The CLI runs in-process through ``deeplimit.cli.main`` (fast); two rows also run as real processes.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeplimit.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 10)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    np.savez(d / "tiny.npz", x=x, y=y)
    x_nan = x.copy()
    x_nan[3, 2] = np.nan
    np.savez(d / "nan.npz", x=x_nan, y=y)
    (d / "empty.npz").write_bytes(b"")
    (d / "trunc.npz").write_bytes((d / "tiny.npz").read_bytes()[:100])
    (d / "empty.txt").write_bytes(b"")
    (d / "short.txt").write_bytes(b"to be or not to be\n" * 3)
    (d / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (d / "afile").write_text("keep me")
    (d / "bad.pt").write_bytes(b"not a checkpoint at all")
    # a run folder holding a finished run of other options (the stale-resume case of issue 11)
    stale = d / "stale"
    assert main(["train", "--data", str(d / "tiny.npz"), "--width", "8", "--depth", "2", "--steps", "5",
                 "--batch-size", "16", "-q", "--run-dir", str(stale)]) == 0
    foreign = d / "foreign"
    foreign.mkdir()
    (foreign / "ckpt.pt").write_bytes(b"not a checkpoint at all")
    return d


T = ["train", "--data", "{d}/tiny.npz", "--width", "8", "--depth", "2", "--steps", "5", "--batch-size", "16", "-q",
     "--out", "{out}"]
S = ["sde", "-q", "--out", "{out}"]
G = ["signal", "-q", "--data", "stdlib", "--train-steps", "0", "--depth", "2", "--width", "16", "--seeds", "0",
     "--out", "{out}"]
F = ["feature-diversity", "-q", "--data", "{d}/tiny.npz", "--width", "8", "--depth", "4", "--steps", "5",
     "--measure-at", "0", "5", "--out", "{out}"]
R = ["reproduce", "--smoke", "-q", "--out", "{out}"]

CASES = [
    # --- train: every option typed and checked (issue 11: 0 became 128, 'maybe' became True, -1 gave NaN)
    ("train batch-size 0", T + ["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    ("train train_io=maybe", T + ["--set", "train_io=maybe"], "--set train_io is a yes/no option"),
    ("train eval_batches=-1", T + ["--set", "eval_batches=-1"], "eval_batches must be an integer ≥ 0, got -1"),
    ("train log_every=0", T + ["--set", "log_every=0"], "log_every must be a positive integer, got 0"),
    ("train seed -1", T + ["--seed", "-1"], "seed must be an integer ≥ 0, got -1"),
    ("train lr=nan", T + ["--set", "lr=nan"], "lr must be a finite positive number, got nan"),
    ("train lr inf", T + ["--lr", "inf"], "lr must be a finite positive number, got inf"),
    ("train lr 0", T + ["--lr", "0"], "lr must be a finite positive number, got 0.0"),
    ("train threads -1", T + ["--threads", "-1"], "--threads: expected a positive integer, got -1"),
    ("train threads 0", T + ["--threads", "0"], "--threads: expected a positive integer, got 0"),
    ("train unknown option", T + ["--set", "widht=8"], "--set widht: no such setting here; valid: "),
    ("train float steps", T + ["--set", "steps=1.5"], "--set steps=1.5: expected a whole number"),
    ("train one beta", T + ["--set", "betas=0.9"], "--set betas=0.9: expected a comma-separated list of numbers"),
    ("train warmup 1", T + ["--set", "warmup_frac=1"], "warmup_frac must be a number in [0, 1)"),
    ("train dtype", T + ["--set", "dtype=float16"], "dtype must be 'float32' or 'float64'"),
    ("train ckpt seconds 0", T + ["--set", "checkpoint_seconds=0"], "checkpoint_seconds must be a positive"),
    ("train data_dir empty", T + ["--set", "data_dir="], "--set data_dir="),
    ("train set without =", T + ["--set", "rule"], "--set expects KEY=VALUE, got 'rule'"),
    ("train unknown rule", T + ["--rule", "nope"], "unknown rule 'nope'; choose one of"),
    ("train unknown model", T + ["--model", "nope"], "model must be one of"),
    ("train unknown optimizer", T + ["--optimizer", "lion"], "optimizer must be one of sgd, adam, adamw"),
    ("train width 0", T + ["--width", "0"], "width must be a positive integer, got 0"),
    ("train too large for memory", T + ["--width", "400000"], "parameters and needs ≈"),
    ("train NaN in data", T + ["--data", "{d}/nan.npz"], "x holds 1 NaN or infinite value(s)"),
    ("train empty npz", T + ["--data", "{d}/empty.npz"], "(EOFError"),
    ("train truncated npz", T + ["--data", "{d}/trunc.npz"], "(BadZipFile"),
    ("train missing npz", T + ["--data", "{d}/missing.npz"], "no such dataset file"),
    ("train text file to an MLP", T + ["--data", "{d}/short.txt"], "cannot read"),
    ("train npz to a transformer", T + ["--model", "transformer", "--data", "{d}/tiny.npz"], "trains on text"),
    ("train empty corpus", T + ["--model", "transformer", "--data", "{d}/empty.txt"], "is empty"),
    ("train binary corpus", T + ["--model", "transformer", "--data", "{d}/binary.bin"], "binary file"),
    ("train corpus too short", T + ["--model", "transformer", "--data", "{d}/short.txt"], "fewer than seq_len"),
    ("train batch above data", T + ["--batch-size", "1000"], "fewer than batch_size=1000"),
    ("train out is a file", T + ["--out", "{d}/afile"], "is a file, not a folder"),
    ("train run-dir is a file", T + ["--run-dir", "{d}/afile"], "is a file, not a folder"),
    ("train out unwritable", T + ["--out", "/proc/deeplimit-no"], "cannot create output folder"),
    ("train stale checkpoint", T + ["--steps", "7", "--run-dir", "{d}/stale"], "different run (steps: 5 → 7)"),
    ("train foreign checkpoint", T + ["--run-dir", "{d}/foreign"], "elete it"),
    # --- sde (issue 11: these ran and wrote output)
    ("sde band reversed", S + ["--scenario", "stopping", "--band", "10", "1"], "must satisfy 0 < LO < HI"),
    ("sde band negative", S + ["--scenario", "stopping", "--band", "-1", "10"], "must satisfy 0 < LO < HI"),
    ("sde band infinite", S + ["--scenario", "stopping", "--band", "1", "inf"], "must satisfy 0 < LO < HI"),
    ("sde gammas nan", S + ["--scenario", "stopping", "--gammas", "nan"], "gammas: every value must be a finite"),
    ("sde gammas above 1", S + ["--scenario", "stopping", "--gammas", "0.5", "2"], "in [0, 1], got 2.0"),
    ("sde tau0 inf", S + ["--tau0", "inf"], "tau0 = inf must be a finite positive number"),
    ("sde tau0 0", S + ["--tau0", "0"], "tau0 = 0.0 must be a finite positive number"),
    ("sde tau0s negative", S + ["--scenario", "stopping-map", "--tau0s", "-1"], "tau0s: every value"),
    ("sde bootstrap -1", S + ["--bootstrap", "-1"], "bootstrap must be an integer ≥ 0"),
    ("sde seed -1", S + ["--seed", "-1"], "seed must be an integer ≥ 0"),
    ("sde one token", S + ["--m", "1"], "m = 1: covariance SDEs need at least 2 tokens"),
    ("sde no paths", S + ["--paths", "0"], "paths must be a positive integer, got 0"),
    ("sde dt nan", S + ["--dt", "nan"], "dt = nan must lie in"),
    ("sde gamma above 1", S + ["--gamma", "1.5"], "gamma = 1.5 outside [0, 1]"),
    ("sde rho0 nan", S + ["--rho0", "nan"], "rho0 = nan must be finite"),
    ("sde unknown scenario", S + ["--scenario", "nope"], "invalid choice: 'nope'"),
    ("sde out is a file", S + ["--out", "{d}/afile", "--d", "10", "--paths", "8"], "is a file, not a folder"),
    ("sde samples-out under a file", S + ["--samples-out", "{d}/afile/s.csv", "--d", "10", "--paths", "8"],
     "afile is a file, not a folder"),
    ("sde threads -1", S + ["--threads", "-1"], "expected a positive integer"),
    # --- signal
    ("signal seeds -1", G + ["--seeds", "-1"], "seeds: every value must be an integer ≥ 0"),
    ("signal train-steps -1", G + ["--train-steps", "-1"], "train_steps must be an integer ≥ 0"),
    ("signal gamma 2", G + ["--residual-gamma", "2"], "residual_gamma must be a number in (0, 1]"),
    ("signal gamma nan", G + ["--residual-gamma", "nan"], "residual_gamma must be a number in (0, 1]"),
    ("signal width 0", G + ["--width", "0"], "width must be a positive integer"),
    ("signal lr negative", G + ["--lr", "-1"], "lr must be a finite positive number"),
    ("signal empty corpus", G + ["--data", "{d}/empty.txt"], "is empty"),
    ("signal npz corpus", G + ["--data", "{d}/tiny.npz"], "trains on text"),
    ("signal binary corpus", G + ["--data", "{d}/binary.bin"], "binary file"),
    ("signal unknown variant", G + ["--variants", "nope"], "invalid choice: 'nope'"),
    ("signal out is a file", G + ["--out", "{d}/afile"], "is a file, not a folder"),
    # --- feature-diversity
    ("fd measure-at past the end", F + ["--measure-at", "0", "10"], "measure_at: every value must be an integer "
                                                                     "between 0 and 5, got 10"),
    ("fd measure-at negative", F + ["--measure-at", "-1"], "between 0 and 5, got -1"),
    ("fd depth 1", F + ["--depth", "1"], "needs depth ≥ 2"),
    ("fd unknown rule", F + ["--rules", "nope"], "unknown rule 'nope'"),
    ("fd seed -1", F + ["--seed", "-1"], "seed must be an integer ≥ 0"),
    ("fd steps 0", F + ["--steps", "0"], "steps must be a positive integer"),
    ("fd lr nan", F + ["--lr", "nan"], "lr must be a finite positive number"),
    ("fd NaN in data", F + ["--data", "{d}/nan.npz"], "NaN or infinite"),
    ("fd out is a file", F + ["--out", "{d}/afile"], "is a file, not a folder"),
    ("fd threads 0", F + ["--threads", "0"], "expected a positive integer"),
    # --- reproduce
    ("reproduce workers 0", R + ["--workers", "0"], "expected a positive integer, got 0"),
    ("reproduce unknown section", R + ["--only", "nope"], "invalid choice: 'nope'"),
    ("reproduce set unknown section", R + ["--set", "nope.x=1"], "no settings to override in section 'nope'"),
    ("reproduce set a sweep section", R + ["--set", "depth-transfer.steps=3"], "take their settings from the"),
    ("reproduce set a billion seeds", R + ["--set", "coord-check.seeds=1000000000"], "from 1 to 10,000"),
    ("reproduce set zero paths", R + ["--set", "sde.paths=0"], "from 1 to 10,000,000"),
    ("reproduce set unknown key", R + ["--set", "stopping.nope=1"], "--set stopping.nope: no such setting here"),
    ("reproduce set without key", R + ["--set", "stopping"], "--set expects SECTION.KEY=VALUE"),
    ("reproduce out is a file", R + ["--out", "{d}/afile"], "is a file, not a folder"),
    # --- top level
    ("no command", [], "the following arguments are required: COMMAND"),
    ("unknown command", ["nope"], "invalid choice: 'nope'"),
    ("unknown flag", ["train", "--nope"], "unrecognized arguments: --nope"),
]


def _snapshot(d: Path) -> dict:
    return {str(p): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(files, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [a.format(d=files, out=out) for a in argv]
    before = _snapshot(files)
    rc = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, captured.err
    assert len(lines) == 1 and "error" in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert message in lines[0], lines[0]
    assert captured.out == ""
    assert not out.exists(), f"{out} was created by a refused command"
    assert _snapshot(files) == before, "a refused command changed an existing file"


@pytest.mark.parametrize("argv, message", [
    (["train", "--batch-size", "0", "-q"], "batch_size must be a positive integer"),
    (["sde", "--bootstrap", "-1", "-q"], "bootstrap must be an integer ≥ 0"),
])
def test_real_processes_exit_2_with_one_line(tmp_path, argv, message):
    done = subprocess.run([sys.executable, "-m", "deeplimit", *argv, "--out", str(tmp_path / "o")],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()
