"""Weight decay as an EMA timescale τ = 1/(η_g·λ) (optimizers spec §4, Wang & Aitchison 2024).

The decay each tensor actually gets is measured by stepping the real optimizers with zero gradients (Adam's and
Muon's updates are then zero, so only the decoupled decay moves the weights): after k steps every decayed
tensor is (1 − 1/τ)^k of its start, at every width and depth, whatever its LR factor.
"""

import math

import pytest
import torch

import deeplimit as dl
from deeplimit.nn.registry import build_model
from deeplimit.train import TrainConfig, train


def mlp(width=64, depth=4):
    return dl.MLPResNet(d_in=12, d_out=5, width=width, depth=depth, bias=True)


def _measured_decay(model, opt, steps=5):
    """Per tensor: the factor ‖w_k‖ / ‖w_0‖ after ``steps`` steps with zero gradients (a zero tensor: 1 if it
    stayed unchanged)."""
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    return {n: (p.detach().norm() / start[n].norm()).item() if start[n].norm() > 0 else float(torch.equal(p, start[n]))
            for n, p in model.named_parameters()}


@pytest.mark.parametrize("optimizer,rule", [("adamw", "depth_mup"), ("muon", "depth_mup"), ("sgd", "depth_mup"),
                                            ("adamw", "sp")])
def test_every_decayed_tensor_has_the_same_timescale_at_every_width_and_depth(optimizer, rule):
    tau, lr, k = 40.0, 2**-7, 5
    for width, depth in ((32, 2), (128, 8)):
        model = mlp(width, depth).double()
        plan = dl.parametrize(model, rule, base_width=32, base_depth=2, optimizer=optimizer)
        opt = dl.make_optimizer(model, plan, lr, wd_timescale=tau)
        factors = _measured_decay(model, opt, k)
        rows = {r["name"]: r for r in plan.rows(lr=lr, wd_timescale=tau)}
        lrs = set()
        for name, f in factors.items():
            if plan.params[name].role == "vector":
                assert f == pytest.approx(1.0, abs=1e-12) and rows[name]["weight_decay"] == 0.0, name
            else:
                assert f == pytest.approx((1 - 1 / tau) ** k, rel=1e-6), (name, width, depth)
                assert rows[name]["wd_timescale"] == pytest.approx(tau, rel=1e-12)
                lrs.add(round(rows[name]["lr"], 12))
        if rule != "sp" and depth > 2:
            assert len(lrs) > 1  # the check has teeth: the tensors' LRs differ, their timescales do not


def test_constant_lambda_lets_the_hidden_timescale_grow_with_width_under_mup_adamw():
    """The contrast: λ fixed ("torch" mode) under μP AdamW gives the hidden tensors τ = 1/(η·λ/m_N) ∝ width."""
    taus = {}
    for width in (32, 128):
        model = mlp(width, 2)
        plan = dl.make_plan(model, "mup", base_width=32, base_depth=2, optimizer="adamw", weight_decay_mode="torch")
        rows = {r["name"]: r for r in plan.rows(lr=1e-3, weight_decay=0.1)}
        taus[width] = rows["blocks.0.W.0.weight"]["wd_timescale"]
    assert taus[128] / taus[32] == pytest.approx(4.0, rel=1e-12)


def test_a_fraction_of_the_run_scales_tau_with_the_step_count():
    model = mlp()
    plan = dl.make_plan(model, "depth_mup", base_width=32, base_depth=2, optimizer="adamw")
    for steps in (1000, 4000):
        rows = plan.rows(lr=1e-3, wd_timescale_fraction=0.25, total_steps=steps)
        decayed = [r for r in rows if r["weight_decay"] > 0]
        assert decayed and all(r["wd_timescale"] == pytest.approx(0.25 * steps) for r in decayed)
        groups = plan.param_groups(model, 1e-3, wd_timescale_fraction=0.25, total_steps=steps)
        assert all(g["weight_decay"] == 0 or g["lr"] * g["weight_decay"] == pytest.approx(1 / (0.25 * steps))
                   for g in groups)


def test_the_table_shows_lambda_and_tau_per_tensor():
    model = build_model("transformer", width=64, depth=2)
    plan = dl.make_plan(model, "completep", base_width=32, base_depth=1, optimizer="muon")
    text = plan.table(lr=1e-3, wd_timescale=500)
    header = next(line for line in text.splitlines() if line.startswith("name "))
    assert "weight_decay" in header and "tau_steps" in header
    assert "500" in text


# One row per case: keyword arguments to make_optimizer → expected message.
BAD = [
    (dict(wd_timescale=0.0), "wd_timescale must be positive, got 0.0"),
    (dict(wd_timescale=-10.0), "wd_timescale must be positive"),
    (dict(wd_timescale=math.nan), "wd_timescale must be a finite number"),
    (dict(wd_timescale=math.inf), "wd_timescale must be a finite number"),
    (dict(wd_timescale_fraction=0.0, total_steps=100), "wd_timescale_fraction must be positive"),
    (dict(wd_timescale_fraction=-0.5, total_steps=100), "wd_timescale_fraction must be positive"),
    (dict(weight_decay=0.1, wd_timescale=100.0), r"either weight_decay \(lambda\) or a weight-decay timescale"),
    (dict(weight_decay=0.0, wd_timescale=100.0), "not both"),
    (dict(wd_timescale_fraction=0.2), "needs the length of the run: pass total_steps"),
    (dict(wd_timescale=100.0, wd_timescale_fraction=0.2, total_steps=10), "not both"),
    (dict(total_steps=100), "total_steps only converts wd_timescale_fraction"),
    (dict(wd_timescale_fraction=0.2, total_steps=0), "total_steps must be a positive integer"),
    (dict(wd_timescale_fraction=0.2, total_steps=10.5), "total_steps must be a positive integer"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_weight_decay_input_is_refused_with_the_fix(optimizer, kwargs, message):
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", base_width=32, base_depth=2, optimizer=optimizer)
    with pytest.raises(dl.DeeplimitError, match=message):
        dl.make_optimizer(model, plan, 1e-3, **kwargs)


def test_a_timescale_with_adam_l2_decay_is_refused():
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", base_width=32, base_depth=2, optimizer="adam")
    with pytest.raises(dl.DeeplimitError, match="needs decoupled decay.*use optimizer='adamw'"):
        dl.make_optimizer(model, plan, 1e-3, wd_timescale=100.0)


def test_the_trainer_takes_the_timescale_as_a_fraction_of_its_steps(tmp_path):
    import numpy as np

    r = np.random.default_rng(0)
    x = r.normal(size=(256, 10)).astype("float32")
    np.savez(tmp_path / "tiny.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    kw = dict(width=16, depth=2, base_width=16, base_depth=2, batch_size=32, min_window=5, steps=12,
              optimizer="adamw", eval_batches=0, data=str(tmp_path / "tiny.npz"))
    res = train(TrainConfig(wd_timescale_fraction=0.5, **kw))
    assert res.status == "ok"
    assert TrainConfig(**kw).fingerprint() != TrainConfig(wd_timescale_fraction=0.5, **kw).fingerprint()
    with pytest.raises(dl.DeeplimitError, match="not both"):
        train(TrainConfig(weight_decay=0.1, wd_timescale=100.0, **kw))
