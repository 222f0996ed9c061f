"""optimizer="muon": hidden matrices on torch.optim.Muon with the spectral LR, the rest on AdamW, as one optimizer.

Measured, not asserted from the formulas: the update's spectral norm after one real step, the LR every group
gets under schedulers, and exact resume through dl.save_checkpoint / dl.load_checkpoint and the trainer.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler as S

import deeplimit as dl
from deeplimit.nn.registry import build_model
from deeplimit.scaling import table
from deeplimit.scaling.optim import CombinedOptimizer
from deeplimit.train import TrainConfig, train


def transformer(width=64, depth=2, **kw):
    return build_model("transformer", width=width, depth=depth, **kw)


def muon_plan(model, rule="completep", **kw):
    return dl.parametrize(model, rule, base_width=32, base_depth=1, optimizer="muon", **kw)


def test_hidden_matrices_go_on_muon_and_everything_else_on_adamw():
    model = transformer()
    plan = muon_plan(model)
    rows = {r["name"]: r for r in plan.rows(lr=1e-3)}
    for name, r in rows.items():
        pp = plan.params[name]
        expected = "muon" if pp.role == "hidden" and len(pp.shape) == 2 else "adamw"
        assert r["optimizer"] == expected, name
    assert {r["optimizer"] for r in rows.values()} == {"muon", "adamw"}
    assert rows["tok.weight"]["optimizer"] == rows["readout.weight"]["optimizer"] == "adamw"
    opt = dl.make_optimizer(model, plan, 1e-3)
    assert isinstance(opt, CombinedOptimizer) and isinstance(opt, torch.optim.Optimizer)
    assert isinstance(opt.parts["muon"], torch.optim.Muon) and isinstance(opt.parts["adamw"], torch.optim.AdamW)
    on_muon = {id(p) for g in opt.parts["muon"].param_groups for p in g["params"]}
    assert on_muon == {id(p) for n, p in model.named_parameters() if rows[n]["optimizer"] == "muon"}
    assert all(g["adjust_lr_fn"] == "original" for g in opt.parts["muon"].param_groups)


def _update_spectral_norms(rule, width, lr=2**-6):
    """‖ΔW‖_op of every Muon matrix after one step (weight decay 0), over the rule's effective LR."""
    torch.manual_seed(0)
    model = transformer(width=width, depth=2).double()
    plan = dl.parametrize(model, rule, base_width=32, base_depth=2, optimizer="muon")
    opt = dl.make_optimizer(model, plan, lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 256, (8, 32))
    loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
    loss.backward()
    opt.step()
    rows = {r["name"]: r for r in plan.rows(lr=lr)}
    out = {}
    for n, p in model.named_parameters():
        if rows[n]["optimizer"] == "muon":
            dw = torch.linalg.matrix_norm(p.detach() - before[n], ord=2).item()
            out[n] = dw / rows[n]["lr_effective"]
    return out, rows


@pytest.mark.parametrize("rule", ["mup", "sp"])
def test_the_update_has_spectral_norm_lr_effective_so_torchs_factor_is_applied_once(rule):
    """‖ΔW‖_op / lr_effective ≈ ‖O‖_op ∈ [0.6, 1.4] (Newton–Schulz singular values) for square, tall (4n×n) and
    wide (n×4n) matrices: torch's √max(1, A/B) applied twice would give ≈ 2 on the tall MLP input matrix."""
    ratios, rows = _update_spectral_norms(rule, 64)
    shapes = {rows[n]["shape"] for n in ratios}
    assert {"64x64", "256x64", "64x256"} <= shapes
    for n, r in ratios.items():
        assert 0.6 < r < 1.4, (n, rows[n]["shape"], r)
    tall = [r for n, r in ratios.items() if rows[n]["shape"] == "256x64"]
    square = [r for n, r in ratios.items() if rows[n]["shape"] == "64x64"]
    assert max(tall) / min(square) < 1.5


def test_mup_muon_effective_lr_is_spectral_and_width_independent():
    """μP: lr_effective = η·√(fan_out/fan_in)·m_L^{-γ} at every width (spec §1); SP: torch's own factor."""
    model = transformer(width=128, depth=4)
    for rule, width_factor in (("depth_mup", lambda pp: math.sqrt(pp.fan_out / pp.fan_in)),
                               ("sp", lambda pp: table.muon_torch_factor(pp.shape))):
        plan = dl.make_plan(model, rule, base_width=32, base_depth=2, optimizer="muon", muon_lr_ratio=4.0)
        gamma = plan.rule.gamma
        for r in plan.rows(lr=1e-3):
            if r["optimizer"] != "muon":
                continue
            pp = plan.params[r["name"]]
            expect = 1e-3 * 4.0 * width_factor(pp) * (4 / 2) ** (-gamma)
            assert r["lr_effective"] == pytest.approx(expect, rel=1e-12), (rule, r["name"])
            assert r["lr"] * table.muon_torch_factor(pp.shape) == pytest.approx(r["lr_effective"], rel=1e-12)


def test_muon_lr_at_the_base_shape_equals_plain_torch_for_square_and_tall_matrices():
    """At m_N = m_L = 1 a square or tall matrix's group LR is η·muon_lr_ratio, exactly what one passes to plain
    torch.optim.Muon; a wide one (fan_in > fan_out) gets the spectral √(fan_out/fan_in) (decision O1)."""
    model = transformer(width=32, depth=1)
    plan = dl.make_plan(model, "depth_mup", base_width=32, base_depth=1, optimizer="muon")
    for r in plan.rows(lr=0.02):
        if r["optimizer"] == "muon":
            fo, fi = (int(v) for v in r["shape"].split("x"))
            assert r["lr"] == pytest.approx(0.02 if fo >= fi else 0.02 * math.sqrt(fo / fi), rel=1e-12)


def test_the_table_names_the_optimizer_and_the_effective_lr():
    model = transformer()
    text = muon_plan(model).table(lr=1e-3)
    assert "optimizer muon" in text
    for col in ("optimizer", "x_torch", "lr_effective"):
        assert col in text.splitlines()[2]
    assert "divides it out" in text


# ---- one optimizer: step, zero_grad, schedulers, add_param_group, state_dict ------------------------------------
def _mlp_opt(lr=2e-3, **kw):
    model = dl.MLPResNet(d_in=6, d_out=3, width=32, depth=4, bias=True)
    plan = dl.parametrize(model, "depth_mup", base_width=16, base_depth=2, optimizer="muon", muon_lr_ratio=8.0)
    return model, plan, dl.make_optimizer(model, plan, lr, **kw)


def _step(model, opt, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def test_set_base_lr_and_torch_schedulers_keep_every_groups_factor():
    model, _, opt = _mlp_opt()
    scales = [g["lr_scale"] for g in opt.param_groups]
    assert len(set(scales)) > 2 and {g["dl_optimizer"] for g in opt.param_groups} == {"muon", "adamw"}
    dl.set_base_lr(opt, 1e-2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-2 * s for s in scales], rel=1e-12)
    dl.set_base_lr(opt, 2e-3)
    sched = S.LambdaLR(opt, lambda t: 1 / (1 + t))  # a torch scheduler on the combined optimizer itself
    for t in range(5):
        for g, s in zip(opt.param_groups, scales):
            assert g["lr"] == pytest.approx(2e-3 * s / (1 + t), rel=1e-12)
        _step(model, opt, t)
        sched.step()
    model, _, opt = _mlp_opt()
    wrapped = dl.scheduler(opt, S.OneCycleLR, max_lr=1e-2, total_steps=10)
    for t in range(8):
        for g, s in zip(opt.param_groups, scales):
            assert g["lr"] == pytest.approx(wrapped.base_lr * s, rel=1e-12)
        _step(model, opt, t)
        wrapped.step()


def test_every_part_steps_and_zero_grad_clears_every_parameter():
    model, _, opt = _mlp_opt()
    before = [p.detach().clone() for p in model.parameters()]
    _step(model, opt)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.requires_grad)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert len(opt.state) == sum(1 for _ in model.parameters())  # momentum / Adam moments of every tensor


def test_a_deep_copy_is_a_working_independent_optimizer():
    model, _, opt = _mlp_opt()
    _step(model, opt)
    twin = copy.deepcopy({"model": model, "opt": opt})  # one memo: the copy's groups hold the copied tensors
    m2, o2 = twin["model"], twin["opt"]
    assert set(o2.parts) == {"muon", "adamw"}
    assert all(any(g is h for h in o2.parts[g["dl_optimizer"]].param_groups) for g in o2.param_groups)
    assert [_step(m2, o2, t) for t in range(2)] == [_step(model, opt, t) for t in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(m2.parameters(), model.parameters()))
    assert all(a is not b for a, b in zip(m2.parameters(), model.parameters()))


def test_add_param_group_routes_by_dl_optimizer_and_refuses_what_muon_cannot_take():
    model, _, opt = _mlp_opt()
    extra_m, extra_v = nn.Parameter(torch.randn(5, 4)), nn.Parameter(torch.randn(4))
    # torch wants param_names in every group once one group has them (the plan's groups do)
    opt.add_param_group({"params": [extra_m], "lr": 1e-3, "lr_scale": 0.5, "weight_decay": 0.0,
                         "dl_optimizer": "muon", "param_names": ["extra_m"]})
    opt.add_param_group({"params": [extra_v], "lr": 1e-3, "lr_scale": 0.5, "weight_decay": 0.0,
                         "dl_optimizer": "adamw", "param_names": ["extra_v"]})
    assert any(extra_m is p for g in opt.parts["muon"].param_groups for p in g["params"])
    assert opt.param_groups[-1]["params"][0] is extra_v
    with pytest.raises(dl.DeeplimitError, match="Muon takes 2-D parameters only"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(3))], "dl_optimizer": "muon"})
    with pytest.raises(dl.DeeplimitError, match="must name its part"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(3))]})
    with pytest.raises(dl.DeeplimitError, match="already in this optimizer"):
        opt.add_param_group({"params": [extra_v], "dl_optimizer": "adamw"})


def test_state_dict_round_trip_continues_exactly():
    model, _, opt = _mlp_opt()
    for t in range(3):
        _step(model, opt, t)
    state = copy.deepcopy(opt.state_dict())  # torch's state_dict holds live tensors that later steps change
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    ref = [_step(model, opt, t) for t in range(3, 6)]
    ref_w = [p.detach().clone() for p in model.parameters()]
    model2, _, opt2 = _mlp_opt()
    model2.load_state_dict(weights)
    opt2.load_state_dict(state)
    assert [_step(model2, opt2, t) for t in range(3, 6)] == ref
    assert all(torch.equal(a, b) for a, b in zip(ref_w, model2.parameters()))
    single = torch.optim.AdamW(model2.parameters()).state_dict()
    with pytest.raises(dl.DeeplimitError, match="saved from another optimizer"):
        opt2.load_state_dict(single)


def test_checkpoint_resume_through_dl_save_and_load_checkpoint_is_exact(tmp_path):
    model, plan, opt = _mlp_opt(weight_decay=0.05)
    sched = S.LambdaLR(opt, lambda t: 0.9**t)
    for t in range(4):
        _step(model, opt, t)
        sched.step()
    dl.save_checkpoint(tmp_path / "ck.pt", model, plan, opt, step=4, sched=sched.state_dict())
    ref = []
    for t in range(4, 9):
        ref.append(_step(model, opt, t))
        sched.step()
    ref_w = {k: v.clone() for k, v in model.state_dict().items()}

    model2 = dl.MLPResNet(d_in=6, d_out=3, width=32, depth=4, bias=True)
    plan2 = dl.parametrize(model2, "depth_mup", base_width=16, base_depth=2, optimizer="muon", muon_lr_ratio=8.0,
                           seed=123)  # other init: the checkpoint must restore everything
    opt2 = dl.make_optimizer(model2, plan2, 2e-3, weight_decay=0.05)
    sched2 = S.LambdaLR(opt2, lambda t: 0.9**t)
    _, extra = dl.load_checkpoint(tmp_path / "ck.pt", model2, opt2)
    sched2.load_state_dict(extra["sched"])
    got = []
    for t in range(extra["step"], 9):
        got.append(_step(model2, opt2, t))
        sched2.step()
    assert got == ref
    assert all(torch.equal(ref_w[k], v) for k, v in model2.state_dict().items())


def test_trainer_with_muon_resumes_a_checkpoint_exactly(tmp_path):
    kw = dict(width=32, depth=4, base_width=32, base_depth=4, batch_size=64, min_window=10, optimizer="muon",
              lr=2**-8, steps=40, checkpoint_every=10, wd_timescale_fraction=0.5, plan_kwargs={"muon_lr_ratio": 8.0},
              rule="depth_mup")
    ref = train(TrainConfig(**kw))
    assert ref.status == "ok" and ref.window_loss < 0.7 * ref.step0_loss

    class Stop(Exception):
        pass

    def stop_at_25(step, model):
        if step == 25:
            raise Stop
    with pytest.raises(Stop):
        train(TrainConfig(**kw), tmp_path, hook=stop_at_25)  # last checkpoint: step 20
    resumed = train(TrainConfig(**kw), tmp_path)
    assert resumed.resumed_from == 20
    assert resumed.rows == ref.rows and resumed.window_loss == ref.window_loss


# ---- what Muon cannot take, and bad options ------------------------------------------------------------------
class ConvNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.width = width
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.mix = nn.Linear(width, width, bias=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.conv(torch.relu(self.stem(x))).mean((2, 3))
        return self.head(self.mix(torch.relu(h)))


def _conv_plan():
    model = ConvNet()
    roles = {"stem.weight": "input", "conv.weight": "hidden", "mix.weight": "hidden", "head.weight": "readout"}
    return model, dl.parametrize(model, "mup", base_width=8, optimizer="muon", roles=roles)


def test_a_convolution_falls_back_to_adamw_with_the_mup_adam_rule_and_the_table_says_so():
    model, plan = _conv_plan()
    rows = {r["name"]: r for r in plan.rows(lr=1e-3)}
    assert rows["conv.weight"]["optimizer"] == "adamw" and rows["mix.weight"]["optimizer"] == "muon"
    assert plan.params["conv.weight"].lr_scale == pytest.approx(1 / 2)  # μP Adam hidden: 1/m_N
    assert "conv.weight" in plan.table(lr=1e-3) and "not 2-D" in plan.table(lr=1e-3)
    opt = dl.make_optimizer(model, plan, 1e-3)
    _step_img = F.cross_entropy(model(torch.randn(4, 1, 6, 6)), torch.tensor([0, 1, 2, 3]))
    _step_img.backward()
    opt.step()


BAD = [
    (dict(muon_fallback=False), r"Muon takes 2-D matrices only, but hidden tensor\(s\) \['conv.weight'\]"),
    (dict(adjust_lr_fn="match_rms_adamw"), "adjust_lr_fn is set by the plan"),
    (dict(nesterof=True), r"unknown optimizer option\(s\) \['nesterof'\]"),
    (dict(momentum=-0.1), "momentum must be >= 0"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_muon_options_are_named(kwargs, message):
    model, plan = _conv_plan()
    with pytest.raises(dl.DeeplimitError, match=message):
        dl.make_optimizer(model, plan, 1e-3, **kwargs)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_a_bad_muon_lr_ratio_is_refused(value):
    with pytest.raises(dl.DeeplimitError, match="muon_lr_ratio must be"):
        dl.make_plan(transformer(), "mup", optimizer="muon", muon_lr_ratio=value)


def test_muon_options_reach_the_right_part():
    model, _, opt = _mlp_opt(momentum=0.9, ns_steps=3, amsgrad=True)
    assert all(g["momentum"] == 0.9 and g["ns_steps"] == 3 for g in opt.parts["muon"].param_groups)
    assert all(g["amsgrad"] for g in opt.parts["adamw"].param_groups)
    _, _, default = _mlp_opt()
    assert all(g["momentum"] == 0.95 for g in default.parts["muon"].param_groups)  # torch's default
