"""Every LR scheduler keeps the plan's per-group factors: group LR = base_schedule(t) · lr_scale (decision D12)."""

import pytest
import torch
from torch.optim import lr_scheduler as S

import deeplimit as dl

BASE, T = 2e-3, 30


def _model_and_opt(optimizer="adam"):
    model = dl.MLPResNet(d_in=6, d_out=3, width=64, depth=8, bias=True)
    plan = dl.parametrize(model, "depth_mup", base_width=16, base_depth=2, optimizer=optimizer)
    return model, dl.make_optimizer(model, plan, BASE, momentum=0.9 if optimizer == "sgd" else 0.0)


SCHEDULES = {
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=1e-2, total_steps=T),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=T, eta_min=1e-4),
    "LinearLR-warmup": lambda o: S.LinearLR(o, start_factor=0.01, total_iters=10),
    "LambdaLR": lambda o: S.LambdaLR(o, lambda t: 1 / (1 + t)),
    "SequentialLR": lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
                                                 S.CosineAnnealingLR(o, T_max=T - 5, eta_min=1e-5)], milestones=[5]),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=7, cycle_momentum=False),
}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_group_lrs_follow_the_base_schedule_times_lr_scale(name, optimizer):
    model, opt = _model_and_opt(optimizer)
    scales = [g["lr_scale"] for g in opt.param_groups]
    assert len(set(scales)) > 1  # the check has teeth: groups differ
    # the reference: the same schedule on a one-group optimizer at the base LR
    ref_opt = type(opt)([torch.zeros(1, requires_grad=True)], lr=BASE,
                        **({"momentum": 0.9} if optimizer == "sgd" else {}))
    ref = SCHEDULES[name](ref_opt)
    sched = dl.scheduler(opt, SCHEDULES[name])
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(T):
        base = ref_opt.param_groups[0]["lr"]
        assert sched.base_lr == pytest.approx(base, rel=1e-12)
        for g, s in zip(opt.param_groups, scales):
            assert g["lr"] == pytest.approx(base * s, rel=1e-12)
        for key in ("momentum", "betas"):  # OneCycleLR cycles momentum / beta1 too
            if key in g:
                assert g[key] == pytest.approx(ref_opt.param_groups[0][key])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()


def test_onecycle_on_the_real_optimizer_erases_the_factors_which_is_why_the_wrapper_exists():
    _, opt = _model_and_opt()
    S.OneCycleLR(opt, max_lr=1e-2, total_steps=T)
    assert len({g["lr"] for g in opt.param_groups}) == 1


def test_multiplicative_schedulers_keep_factors_natively():
    _, opt = _model_and_opt()
    scales = [g["lr_scale"] for g in opt.param_groups]
    sched = S.LambdaLR(opt, lambda t: 0.5 ** t)
    for _ in range(3):
        opt.step()
        sched.step()
    for g, s in zip(opt.param_groups, scales):
        assert g["lr"] == pytest.approx(BASE * s * 0.125)
    dl.set_base_lr(opt, 1e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3 * s for s in scales])


def test_reduce_on_plateau_and_state_dict_resume():
    _, opt = _model_and_opt()
    sched = dl.scheduler(opt, S.ReduceLROnPlateau, factor=0.5, patience=0, min_lr=1e-5)
    for metric in (1.0, 2.0, 3.0):
        sched.step(metric)
    assert sched.base_lr == pytest.approx(BASE * 0.25)
    state = sched.state_dict()
    _, opt2 = _model_and_opt()
    again = dl.scheduler(opt2, S.ReduceLROnPlateau, factor=0.5, patience=0, min_lr=1e-5)
    again.load_state_dict(state)
    assert again.get_last_lr() == pytest.approx(sched.get_last_lr())
    cyc = dl.scheduler(opt, S.CosineAnnealingLR, T_max=10, eta_min=1e-4)
    for _ in range(4):
        cyc.step()
    resumed = dl.scheduler(opt2, S.CosineAnnealingLR, T_max=10, eta_min=1e-4)
    resumed.load_state_dict(cyc.state_dict())
    cyc.step()
    resumed.step()
    assert resumed.get_last_lr() == pytest.approx(cyc.get_last_lr(), rel=1e-12)


def test_scheduler_needs_a_deeplimit_optimizer():
    plain = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=1e-3)
    with pytest.raises(dl.DeeplimitError, match="no 'lr_scale'.*make_optimizer"):
        dl.scheduler(plain, S.LinearLR)
    _, opt = _model_and_opt()
    opt.param_groups[0]["lr"] = 1.0
    with pytest.raises(dl.DeeplimitError, match="disagree on the base LR.*set_base_lr"):
        dl.scheduler(opt, S.LinearLR)
    _, opt = _model_and_opt()
    with pytest.raises(dl.DeeplimitError, match="cannot build the scheduler"):
        dl.scheduler(opt, S.OneCycleLR, max_lr=1e-2, bogus=1)
