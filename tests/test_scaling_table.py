"""The resolved plan equals the depth-mup spec §4 table, for every preset, optimizer and several (m_N, m_L)."""

import math

import pytest
import torch

import deeplimit as dl
from deeplimit.scaling.rules import RULES

N0, L0 = 16, 2
SHAPES = [(1, 1), (4, 8), (2, 16), (8, 2)]
EPS, LR, WD = 1e-8, 1e-3, 0.1

# (α, γ, μP?) per preset: spec §4.1, typed in independently of rules.py
SPEC_PRESETS = {
    "sp": (0, 0, False), "sp_lr_depth": (0, 1, False), "mup": (0, 0, True), "depth_mup": (0.5, 0.5, True),
    "completep": (1, 0, True), "blocks_only": (0.5, 0, True), "ode": (1, 0, True),
}


def expected(role, in_block, opt, alpha, gamma, mup, mN, mL, fan_in):
    """Spec §4 table row → (init std, Adam-or-SGD LR factor, ε factor, λ factor)."""
    d_lr = (mL ** (alpha - gamma) if opt == "sgd" else mL ** -gamma) if in_block else 1.0
    if role == "input":
        std = 1 / math.sqrt(fan_in)
        w_lr = (mN if opt == "sgd" else 1.0) if mup else 1.0
    elif role == "hidden":
        std = 1 / math.sqrt(fan_in)
        w_lr = (1.0 if opt == "sgd" else 1 / mN) if mup else 1.0
    elif role == "readout":
        std = 1 / math.sqrt(N0) if mup else 1 / math.sqrt(fan_in)
        w_lr = mN if (opt == "sgd" and mup) else 1.0
    else:  # vector
        std = None
        w_lr = mN if (opt == "sgd" and mup) else 1.0
    eps = (1 / mN if mup else 1.0) * (mL ** -alpha if in_block else 1.0)
    if role == "vector":
        wd = 0.0
    else:
        wd = (1 / w_lr) if mup else 1.0
    return std, w_lr * d_lr, eps, wd


@pytest.mark.parametrize("preset", sorted(SPEC_PRESETS))
@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("mN,mL", SHAPES)
def test_plan_matches_spec_table(preset, opt, mN, mL):
    alpha, gamma, mup = SPEC_PRESETS[preset]
    model = dl.MLPResNet(d_in=12, d_out=5, width=N0 * mN, depth=L0 * mL, bias=True, pre_ln=True)
    plan = dl.parametrize(model, preset, base_width=N0, base_depth=L0, optimizer=opt)
    roles_seen = set()
    for name, pp in plan.params.items():
        roles_seen.add((pp.role, pp.in_block))
        fan_in = pp.fan_in
        # readout bias has d_out entries: a finite dim, m_N = 1
        this_mN = 1 if name == "readout.bias" else mN
        std, lr, eps, wd = expected(pp.role, pp.in_block, opt, alpha, gamma, mup, this_mN, mL, fan_in)
        assert pp.lr_scale == pytest.approx(lr, rel=1e-12), name
        if opt != "sgd":
            assert pp.eps_scale == pytest.approx(eps, rel=1e-12), name
        assert pp.wd_scale == pytest.approx(wd, rel=1e-12), name
        if std is not None:
            assert pp.init_std == pytest.approx(std, rel=1e-12), name
    assert roles_seen == {("input", False), ("hidden", True), ("readout", False), ("vector", True), ("vector", False)}
    # forward multipliers: branch a·m_L^-α, readout output_mult·m_N^-1 under μP
    assert model.blocks[0].branch_mult == pytest.approx(mL ** -alpha)
    assert model.readout.output_mult == pytest.approx(1 / mN if mup else 1.0)
    # the optimizer groups carry exactly these numbers
    optim = dl.make_optimizer(model, plan, LR, weight_decay=WD, eps=EPS)
    by_param = {id(p): g for g in optim.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        g, pp = by_param[id(p)], plan[name]
        assert g["lr"] == pytest.approx(LR * pp.lr_scale)
        assert g["weight_decay"] == pytest.approx(WD * pp.wd_scale)
        if opt != "sgd":
            assert g["eps"] == pytest.approx(EPS * pp.eps_scale)


def test_presets_are_the_spec_presets():
    assert {k: (r.alpha, r.gamma, r.is_mup) for k, r in RULES.items()} == SPEC_PRESETS


@pytest.mark.parametrize("preset", sorted(SPEC_PRESETS))
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_base_shape_reduces_to_sp_model(preset, opt):
    """Spec §8.3: at (n₀, L₀) every rule is the SP model bit for bit; every factor is 1."""
    torch.manual_seed(0)
    xi = torch.randn(7, 12)
    ref = dl.MLPResNet(d_in=12, d_out=5, width=N0, depth=L0, bias=True)
    dl.parametrize(ref, "sp", base_width=N0, base_depth=L0, optimizer=opt, seed=3)
    model = dl.MLPResNet(d_in=12, d_out=5, width=N0, depth=L0, bias=True)
    plan = dl.parametrize(model, preset, base_width=N0, base_depth=L0, optimizer=opt, seed=3)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(ref(xi), model(xi))
    for pp in plan.params.values():
        assert pp.lr_scale == 1.0 and pp.eps_scale == 1.0
        assert pp.wd_scale in (0.0, 1.0)


def test_eps_scopes_and_weight_decay_modes():
    model = dl.MLPResNet(d_in=12, d_out=5, width=64, depth=8, bias=True)
    kw = dict(base_width=16, base_depth=2, optimizer="adamw")
    mN, mL = 4, 4
    blocks = dl.make_plan(model, "depth_mup", eps_scope="blocks", **kw)
    assert blocks["input.weight"].eps_scale == 1.0
    assert blocks["blocks.0.W.0.weight"].eps_scale == pytest.approx(1 / mN / mL ** 0.5)
    allp = dl.make_plan(model, "depth_mup", eps_scope="all", **kw)
    assert {round(p.eps_scale, 15) for p in allp.params.values()} == {round(1 / mN / mL ** 0.5, 15)}
    none = dl.make_plan(model, "depth_mup", eps_scope="none", **kw)
    assert {p.eps_scale for p in none.params.values()} == {1.0}
    torch_wd = dl.make_plan(model, "depth_mup", weight_decay_mode="torch", **kw)
    assert torch_wd["blocks.0.W.0.weight"].wd_scale == 1.0 and torch_wd["blocks.0.W.0.bias"].wd_scale == 0.0
    indep = dl.make_plan(model, "depth_mup", weight_decay_mode="independent", **kw)
    groups = indep.param_groups(model, lr=1e-3, weight_decay=0.1)
    for g in groups:
        if g["weight_decay"]:
            # u-μP independent decay: λ / lr_g(0), so lr_g·λ_g = λ at step 0 for every group
            assert g["lr"] * g["weight_decay"] == pytest.approx(0.1)


def test_sgd_nonsquare_hidden_follows_musgd():
    """Spec §4 note 1: hidden SGD LR ÷ (fan_in_mult / fan_out_mult)."""
    base = torch.nn.Sequential(dl.Input(6, 8), dl.Residual(torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 8)), block_depth=2), dl.Readout(8, 3))
    model = torch.nn.Sequential(dl.Input(6, 16), dl.Residual(torch.nn.Sequential(torch.nn.Linear(16, 32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 16)), block_depth=2), dl.Readout(16, 3))
    with pytest.warns(dl.DeeplimitWarning, match="block depth 2"):
        plan = dl.make_plan(model, "mup", base=base, optimizer="sgd", depth=1, base_depth=1)
    up = plan["1.branch.0.weight"]  # 16 -> 32: fan_in ×2, fan_out ×1
    assert (up.fan_in_mult, up.fan_out_mult) == (2.0, 1.0)
    assert up.lr_scale == pytest.approx(0.5)
    down = plan["1.branch.2.weight"]  # 32 -> 16
    assert down.lr_scale == pytest.approx(2.0)
    assert plan["0.weight"].role == "input" and plan["2.weight"].role == "readout"
