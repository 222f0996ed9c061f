"""The trainer as a package: the rule resolved once; the warm-up (through dl.scheduler) continues across a resume.

That the warm-up gives the same numbers as setting the LR by hand is test_train_reference's job."""

import numpy as np
import pytest
import torch

import deeplimit as dl
from deeplimit.train import TrainConfig, build, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 10)).astype("float32")
    path = tmp_path_factory.mktemp("pkg") / "tiny.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype("int64"))
    return str(path)


TINY = dict(width=8, depth=2, base_width=8, base_depth=2, batch_size=32, min_window=5, log_every=1, eval_batches=0)


def test_the_plan_is_built_from_the_rule_the_config_resolved():
    cfg = TrainConfig(rule="depth-mup", alpha=0.75, plan_kwargs={"eps_scope": "all", "block_mult": 0.5}, **TINY)
    rule = cfg.resolved_rule
    assert (rule.name, rule.alpha, rule.gamma, rule.eps_scope) == ("custom", 0.75, 0.25, "all")
    _, plan = build(cfg, {"d_in": 10, "d_out": 2})
    assert plan.rule is rule  # the same object: make_plan did not resolve the name again
    cfg.alpha = 0.5  # a field changed after construction is resolved again, not served stale
    assert cfg.resolved_rule.alpha == 0.5 and cfg.resolved_rule.eps_scope == "all"


def test_a_bad_rule_option_is_refused_when_the_config_is_made():
    with pytest.raises(dl.DeeplimitError, match="eps_scope 'sometimes' is unknown"):
        TrainConfig(plan_kwargs={"eps_scope": "sometimes"})
    with pytest.raises(dl.DeeplimitError, match="unknown rule 'nope'"):
        TrainConfig(rule="nope")


def test_a_run_cut_off_in_its_warm_up_resumes_to_the_same_losses(data, tmp_path):
    cfg = TrainConfig(steps=12, warmup_frac=0.5, lr=2**-4, optimizer="adamw", checkpoint_every=3, data=data, **TINY)
    ref = train(cfg)

    def crash(step, model):
        if step == 4:
            raise RuntimeError("cut off")

    with pytest.raises(RuntimeError, match="cut off"):
        train(cfg, tmp_path / "run", hook=crash)
    res = train(cfg, tmp_path / "run")
    assert res.resumed_from == 3 and res.rows == ref.rows and torch.isfinite(torch.tensor(res.window_loss))
