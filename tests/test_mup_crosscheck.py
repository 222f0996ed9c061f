"""Cross-check the width rules against microsoft/mup's own optimizers (ecosystem spec §6): for the same model
and base shapes, every parameter's learning rate under deeplimit's ``mup`` rule equals MuAdam's / MuSGD's."""

import pytest
import torch
from torch import nn

import deeplimit as dl

mup = pytest.importorskip("mup")


class Net(nn.Module):
    def __init__(self, width, readout):
        super().__init__()
        self.width = width
        self.input = dl.Input(20, width, bias=True)
        self.hidden = nn.ModuleList(dl.Residual(nn.Linear(width, width), block_depth=1) for _ in range(3))
        self.readout = readout(width, 5)

    def forward(self, x):
        x = self.input(x)
        for b in self.hidden:
            x = b(x)
        return self.readout(x)


def _mup_net(width):
    return Net(width, lambda n, k: mup.MuReadout(n, k, bias=False))


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_group_lrs_equal_mup(opt):
    lr, n0, n = 1e-2, 16, 64
    ref = _mup_net(n)
    mup.set_base_shapes(ref, _mup_net(n0), delta=_mup_net(2 * n0))
    mu_opt = (mup.MuAdam if opt == "adam" else mup.MuSGD)(ref.parameters(), lr=lr)
    mu_lr = {id(p): g["lr"] for g in mu_opt.param_groups for p in g["params"]}
    mu_name = {n_: mu_lr[id(p)] for n_, p in ref.named_parameters()}

    ours = Net(n, lambda a, b: dl.Readout(a, b, bias=False))
    plan = dl.make_plan(ours, "mup", base_width=n0, base_depth=3, optimizer=opt)
    groups = dl.make_optimizer(ours, plan, lr).param_groups
    our_name = {name: g["lr"] for g in groups for name in g["param_names"]}
    assert set(our_name) == set(mu_name)
    for name in mu_name:
        assert our_name[name] == pytest.approx(mu_name[name], rel=1e-12), name
    assert our_name["hidden.0.branch.weight"] != our_name["input.weight"]  # the check has teeth


def test_forward_equals_mup_readout():
    """Same weights: deeplimit.Readout under the plan == mup.MuReadout after set_base_shapes."""
    torch.manual_seed(0)
    n0, n = 16, 64
    ref = _mup_net(n)
    mup.set_base_shapes(ref, _mup_net(n0), delta=_mup_net(2 * n0), rescale_params=False)
    ours = Net(n, lambda a, b: dl.Readout(a, b, bias=False))
    dl.make_plan(ours, "mup", base_width=n0, base_depth=3).apply(ours)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 20)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
