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
from deeplimit.train import TrainConfig, build, train

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
    with pytest.raises(dl.DeeplimitError, match="lr must be positive"):
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
    killed_at = torch.load(ckpt, weights_only=False)["extra"]["step"]
    assert 0 < killed_at < 120, "the child must be killed mid-run"
    resumed = train(TrainConfig(**kw), run_dir)
    assert resumed.status == "ok" and resumed.steps_done == 120
    assert resumed.window_loss == pytest.approx(ref.window_loss, rel=1e-6)
    assert resumed.eval_loss == pytest.approx(ref.eval_loss, rel=1e-6)
