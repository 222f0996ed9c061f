"""Early stop of a diverging run (``TrainConfig.diverge_patience``): off by default, stops a blow-up, spares a blip."""

import math

import numpy as np
import pytest

import deeplimit as dl
from deeplimit.train import TrainConfig, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 10)).astype("float32")
    path = tmp_path_factory.mktemp("diverge") / "tiny.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype("int64"))
    return str(path)


def _cfg(data, **kw):
    return TrainConfig(**{**dict(width=8, depth=2, base_width=8, base_depth=2, batch_size=32, min_window=5,
                                 log_every=1, eval_batches=0, steps=30, data=data), **kw})


def _losses(res):
    return [r["value"] for r in res.rows if r["metric"] == "train_loss"]


def _streaks(losses, warmup=0):
    """Lengths of the runs of consecutive losses above the step-0 loss (steps ≥ warmup)."""
    out, n = [], 0
    for t, v in enumerate(losses):
        n = n + 1 if t >= warmup and v > losses[0] else 0
        if n == 0 and out and out[-1] != 0:
            out.append(0)
        if n:
            if not out or out[-1] == 0:
                out.append(0)
            out[-1] = n
    return [s for s in out if s]


def test_unset_patience_changes_nothing(data):
    plain = train(_cfg(data, lr=1.0))
    never = train(_cfg(data, lr=1.0, diverge_patience=30))  # a streak can never reach 30 in 30 steps
    assert plain.status == never.status == "diverged" and plain.steps_done == never.steps_done == 30
    assert plain.rows == never.rows and plain.reason == never.reason
    assert TrainConfig().diverge_patience is None
    assert _cfg(data).fingerprint() != _cfg(data, diverge_patience=5).fingerprint()


def test_a_huge_learning_rate_stops_early(data):
    res = train(_cfg(data, lr=1e3, optimizer="adam", diverge_patience=5))
    losses = _losses(res)
    assert res.status == "diverged" and res.value == math.inf
    assert res.steps_done == len(losses) < 30
    first = next(t for t, v in enumerate(losses) if v > losses[0])
    assert all(v > losses[0] for v in losses[first:]) and len(losses[first:]) == 5
    assert res.reason == f"stopped early: loss above the step-0 loss for 5 steps from step {first}"
    assert sum(r["metric"] == "window_loss" for r in res.rows) == 1


def test_a_brief_excursion_within_the_patience_is_not_stopped(data):
    plain = train(_cfg(data, lr=0.25, seed=1))
    streaks = _streaks(_losses(plain))
    assert plain.status == "ok" and streaks, "precondition: the loss dips above step 0 and recovers"
    longest = max(streaks)
    spared = train(_cfg(data, lr=0.25, seed=1, diverge_patience=longest + 1))
    assert spared.status == "ok" and spared.rows == plain.rows
    stopped = train(_cfg(data, lr=0.25, seed=1, diverge_patience=longest))
    assert stopped.status == "diverged" and stopped.reason.startswith(f"stopped early: loss above the step-0 loss "
                                                                       f"for {longest} steps")
    assert _losses(stopped) == _losses(plain)[:stopped.steps_done]


def test_steps_in_the_warm_up_do_not_count(data):
    plain = train(_cfg(data, lr=1e3, warmup_frac=0.5))
    losses = _losses(plain)
    assert losses[1] > losses[0], "precondition: the loss is above step 0 during the warm-up"
    res = train(_cfg(data, lr=1e3, warmup_frac=0.5, diverge_patience=3))  # warm-up: int(0.5 · 30) = 15 steps
    assert res.reason == "stopped early: loss above the step-0 loss for 3 steps from step 15"
    assert res.steps_done == 18


def test_resume_recounts_the_streak(data, tmp_path):
    """A run cut off mid-streak resumes with the streak it had (from the stored losses), not from zero."""
    cfg = _cfg(data, lr=1e3, diverge_patience=6, checkpoint_every=3)
    ref = train(cfg)
    assert ref.reason == "stopped early: loss above the step-0 loss for 6 steps from step 1"

    def crash(step, model):
        if step == 4:
            raise RuntimeError("cut off")

    with pytest.raises(RuntimeError, match="cut off"):
        train(cfg, tmp_path / "run", hook=crash)  # checkpointed at step 3, two steps into the streak
    res = train(cfg, tmp_path / "run")
    assert res.resumed_from == 3 and res.rows == ref.rows and res.reason == ref.reason and res.steps_done == 7


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_patience_is_named(bad):
    with pytest.raises(dl.DeeplimitError, match="diverge_patience must be a positive integer"):
        TrainConfig(diverge_patience=bad)
