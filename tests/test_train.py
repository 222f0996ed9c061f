"""Trainer: real Fashion-MNIST runs, divergence as a result, exact resume after SIGKILL, frozen I/O, bad input."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import deeplimit as dl
from deeplimit.io import safe_torch_load
from deeplimit.train import TrainConfig, build, config_from_point, train

SRC = str(Path(__file__).resolve().parents[1] / "src")
SMALL = dict(width=32, depth=4, base_width=32, base_depth=4, batch_size=64, min_window=10)


def test_training_reduces_fashion_mnist_loss_and_reports_eval():
    res = train(TrainConfig(steps=60, lr=2**-8, **SMALL))
    assert res.status == "ok" and res.steps_done == 60
    assert res.window_loss < 0.6 * res.step0_loss
    assert 0 < res.eval_loss < res.step0_loss
    metrics = {r["metric"] for r in res.rows}
    assert metrics == {"train_loss", "eval_loss", "window_loss"}


def test_divergence_is_a_recorded_result_not_a_crash():
    res = train(TrainConfig(steps=40, lr=4.0, **SMALL))
    assert res.status == "diverged" and res.value == math.inf
    assert res.reason
    assert any(r["metric"] == "window_loss" for r in res.rows)


def test_frozen_io_trains_only_hidden_weights():
    cfg = TrainConfig(train_io=False, **{**SMALL, "steps": 1})
    model, plan = build(cfg, {"d_in": 784, "d_out": 10})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in plan.params if plan.params[n].role == "hidden"}


def test_bad_training_options_are_named():
    with pytest.raises(dl.DeeplimitError, match="lr must be a finite positive number, got 0.0"):
        TrainConfig(lr=0.0)
    with pytest.raises(dl.DeeplimitError, match=r"unknown training option\(s\) \['lrr'\]"):
        TrainConfig.from_dict({"lrr": 1e-3})
    with pytest.raises(dl.DeeplimitError, match="unknown image dataset"):
        train(TrainConfig(data="no-such-set", steps=1, **{k: v for k, v in SMALL.items()}))


CHILD = """
import sys, torch
torch.set_num_threads(1)
from deeplimit.train import TrainConfig, train
cfg = TrainConfig(**eval(sys.argv[1]))
train(cfg, sys.argv[2])
"""


def test_resume_after_sigkill_continues_exactly(tmp_path):
    kw = dict(steps=120, lr=2**-8, checkpoint_every=10, **SMALL)
    ref = train(TrainConfig(**kw))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", CHILD, repr(kw), str(run_dir)], env=env)
    ckpt = run_dir / "ckpt.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert ckpt.exists(), "the child never wrote a checkpoint"
    killed_at = safe_torch_load(ckpt)["extra"]["step"]
    assert 0 < killed_at < 120, "the child must be killed mid-run"
    resumed = train(TrainConfig(**kw), run_dir)
    assert resumed.status == "ok" and resumed.steps_done == 120 and resumed.resumed_from == killed_at
    assert resumed.rows == ref.rows  # bit-identical losses, eval and window
    assert resumed.window_loss == ref.window_loss and resumed.eval_loss == ref.eval_loss


# ------------------------------------------------------------------------------------------------------
# Resume is keyed by the full config (issue 11: a stale checkpoint once returned 8/8 wrong results)


def _tiny_npz(tmp_path, n=300, seed=0):
    import numpy as np

    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 10)).astype("float32")
    path = tmp_path / f"tiny{seed}.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype("int64"))
    return str(path)


TINY = dict(width=8, depth=2, base_width=8, base_depth=2, batch_size=32, min_window=5)


def test_issue_repro_a_checkpoint_of_another_config_is_refused_not_resumed(tmp_path, capsys):
    from deeplimit.cli import main

    data, run_dir = _tiny_npz(tmp_path), str(tmp_path / "R")
    base = ["train", "--data", data, "--width", "8", "--depth", "2", "--batch-size", "32", "--run-dir", run_dir, "-q"]
    assert main([*base, "--steps", "200"]) == 0
    first = capsys.readouterr().out
    assert '"steps": 200' in first
    assert main([*base, "--steps", "50", "--lr", "10"]) == 2
    captured = capsys.readouterr()
    assert '"status": "ok"' not in captured.out and captured.out == ""
    assert "different run" in captured.err and "lr: 0.00390625 → 10.0" in captured.err
    assert "steps: 200 → 50" in captured.err
    assert "--fresh" in captured.err
    assert main([*base, "--steps", "50", "--lr", "10", "--fresh"]) == 0  # --fresh: the new config, from step 0
    out = capsys.readouterr().out
    assert '"steps": 50' in out and '"resumed_from": 0' in out


@pytest.mark.parametrize("change", [dict(lr=2**-6), dict(seed=1), dict(steps=30), dict(data="other"),
                                    dict(model_kwargs={"activation": "abs"}), dict(train_io=False)])
def test_any_change_that_alters_the_result_is_refused(tmp_path, change):
    data = _tiny_npz(tmp_path)
    cfg = dict(steps=20, data=data, **TINY)
    train(TrainConfig(**cfg), tmp_path / "run")
    if change.get("data") == "other":
        change = {"data": _tiny_npz(tmp_path, seed=1)}
    with pytest.raises(dl.DeeplimitError, match="different run"):
        train(TrainConfig(**{**cfg, **change}), tmp_path / "run")


def test_an_edited_data_file_is_a_different_run(tmp_path):
    import numpy as np

    data = _tiny_npz(tmp_path)
    cfg = TrainConfig(steps=20, data=data, **TINY)
    train(cfg, tmp_path / "run")
    with np.load(data) as z:
        x, y = z["x"].copy(), z["y"]
    x[0, 0] += 1.0
    np.savez(data, x=x, y=y)
    with pytest.raises(dl.DeeplimitError, match="different run .*content of the data file"):
        train(TrainConfig(steps=20, data=data, **TINY), tmp_path / "run")


def test_checkpoint_frequency_is_not_part_of_the_key_and_finished_runs_are_not_retrained(tmp_path):
    data = _tiny_npz(tmp_path)
    first = train(TrainConfig(steps=40, data=data, checkpoint_every=5, **TINY), tmp_path / "run")
    again = train(TrainConfig(steps=40, data=data, checkpoint_every=0, **TINY), tmp_path / "run")
    assert again.resumed_from == 40 and again.rows == first.rows and again.window_loss == first.window_loss
    for res in (first, again):
        assert sum(r["metric"] == "window_loss" for r in res.rows) == 1


def test_exactly_one_window_loss_row_also_for_diverged_runs(tmp_path):
    data = _tiny_npz(tmp_path)
    for lr in (2**-8, 10.0, 1e6):
        res = train(TrainConfig(steps=30, lr=lr, data=data, **TINY), tmp_path / f"lr{lr}")
        rows = [r for r in res.rows if r["metric"] == "window_loss"]
        assert len(rows) == 1 and rows[0]["value"] == res.window_loss == res.value
        if res.status == "diverged":
            assert res.window_loss == math.inf


def test_run_dir_checkpoints_mid_run_by_default(tmp_path, monkeypatch):
    """Without checkpoint_every a run dir still gets checkpoints (every quarter of the run or 30 s), but none
    within MIN_DEFAULT_CHECKPOINT_S of the last save: a run that fast gets only its final checkpoint."""
    import deeplimit.train.loop as loop

    data = _tiny_npz(tmp_path)

    def steps_saved(run: str, pause_s: float) -> list[int]:
        ckpt, seen = tmp_path / run / "ckpt.pt", []

        def hook(step, model):
            time.sleep(pause_s)
            if ckpt.exists():
                seen.append(safe_torch_load(ckpt)["extra"]["step"])

        train(TrainConfig(steps=40, data=data, **TINY), tmp_path / run, hook=hook)
        return sorted(set(seen) - {40})  # the last hook call sees the final checkpoint

    monkeypatch.setattr(loop, "MIN_DEFAULT_CHECKPOINT_S", 0.05)
    assert steps_saved("slow", 0.01) == [10, 20, 30]  # 10 steps of ≥ 0.01 s: past the floor at each quarter
    monkeypatch.setattr(loop, "MIN_DEFAULT_CHECKPOINT_S", 60.0)
    assert steps_saved("fast", 0.0) == []


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    """A pickle that would run code on load is refused (weights_only=True); nothing is executed."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": {}, "extra": {"fingerprint": "x", "payload": Evil()}}, run_dir / "ckpt.pt")
    with pytest.raises(dl.DeeplimitError, match="weights_only=True refuses code"):
        train(TrainConfig(steps=5, data=_tiny_npz(tmp_path), **TINY), run_dir)
    assert not marker.exists()


def test_config_from_point_maps_flat_keys_and_names_typos():
    cfg = config_from_point({"preset": "mup", "log2_lr": -6, "activation": "abs", "block_mult": 0.5,
                             "experiment": "x", "steps": 10})
    assert cfg.rule == "mup" and cfg.lr == 2**-6 and cfg.model_kwargs == {"activation": "abs"}
    assert cfg.plan_kwargs == {"block_mult": 0.5} and cfg.steps == 10
    assert TrainConfig.from_point({"width": 16}) == TrainConfig(width=16)
    with pytest.raises(dl.DeeplimitError, match="unknown training option 'widht'"):
        config_from_point({"widht": 16})
    with pytest.raises(dl.DeeplimitError, match="either lr or log2_lr"):
        config_from_point({"lr": 0.1, "log2_lr": -3})
    with pytest.raises(dl.DeeplimitError, match="log2_lr must be a finite number"):
        config_from_point({"log2_lr": float("nan")})


def test_a_model_too_large_for_memory_is_refused_before_allocation():
    with pytest.raises(dl.DeeplimitError, match=r"width 400000, depth 2 has [\d,]+ parameters .* GiB"):
        build(TrainConfig(width=400_000, depth=2), {"d_in": 784, "d_out": 10})


def test_progress_bar_goes_to_stderr_not_stdout(tmp_path, capsys):
    train(TrainConfig(steps=20, data=_tiny_npz(tmp_path), **TINY), progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "step" in captured.err
