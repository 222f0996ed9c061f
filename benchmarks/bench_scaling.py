"""Training-step time of a parametrized MLP-ResNet vs the identical plain PyTorch model vs microsoft/mup.

All three compute the same function (Depth-μP MLP-ResNet, width 256, 16 blocks, batch 128, Adam): the plain
model hard-codes the multipliers and builds the same Adam groups by hand; the mup peer uses ``MuReadout``,
``set_base_shapes`` and ``MuAdam`` with the depth multiplier hard-coded (mup has no depth support). Goal:
deeplimit / plain ≤ 1.02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from benchmarks.common import interleaved, paired_ratio

NAME = "scaling"
D_IN, D_OUT, N0, L0 = 784, 10, 64, 4


class Plain(nn.Module):
    """The same network written by hand: constants in forward, no deeplimit."""

    def __init__(self, width, depth, branch_mult, out_mult, readout=None):
        super().__init__()
        self.input = nn.Linear(D_IN, width, bias=False)
        self.W = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.readout = readout if readout is not None else nn.Linear(width, D_OUT, bias=False)
        self.branch_mult, self.out_mult = branch_mult, out_mult

    def forward(self, x):
        x = self.input(x)
        for W in self.W:
            h = F.relu(W(x))
            x = x + self.branch_mult * (h - h.mean(dim=-1, keepdim=True))
        return self.readout(x * self.out_mult) if self.out_mult != 1.0 else self.readout(x)


def _step(model, opt, xb, yb):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return step


def run(quick: bool = False) -> dict:
    width, depth, batch = (128, 8, 64) if quick else (256, 16, 128)
    lr = 2**-8
    mN, mL = width / N0, depth / L0
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.randn(batch, D_IN, generator=g), torch.randint(0, D_OUT, (batch,), generator=g)

    ours = dl.MLPResNet(d_in=D_IN, d_out=D_OUT, width=width, depth=depth)
    plan = dl.parametrize(ours, "depth_mup", base_width=N0, base_depth=L0, optimizer="adam")
    opt_ours = dl.make_optimizer(ours, plan, lr)

    plain = Plain(width, depth, mL ** -0.5, 1 / mN)
    with torch.no_grad():
        plain.input.weight.copy_(ours.input.weight)
        for W, b in zip(plain.W, ours.blocks):
            W.weight.copy_(b.W[0].weight)
        plain.readout.weight.copy_(ours.readout.weight)
    opt_plain = torch.optim.Adam([
        {"params": [plain.input.weight, plain.readout.weight], "lr": lr, "eps": 1e-8 / mN},
        {"params": [W.weight for W in plain.W], "lr": lr / mN / mL ** 0.5, "eps": 1e-8 / mN / mL ** 0.5},
    ], lr=lr)
    assert torch.allclose(plain(xb), ours(xb), atol=1e-5), "peers must compute the same function"

    peers = {"deeplimit": _step(ours, opt_ours, xb, yb), "plain_torch": _step(plain, opt_plain, xb, yb)}
    record: dict = {"config": {"width": width, "depth": depth, "batch": batch, "optimizer": "adam",
                               "rule": "depth_mup", "base": [N0, L0]}}
    try:
        import mup

        def mup_model(w):
            return Plain(w, depth, mL ** -0.5, 1.0, readout=mup.MuReadout(w, D_OUT, bias=False))
        mup_net = mup_model(width)
        mup.set_base_shapes(mup_net, mup_model(N0), delta=mup_model(N0 * 2))
        # mup knows no depth: scale the hidden LR by the depth factor through a separate MuAdam group
        hidden = [W.weight for W in mup_net.W]
        other = [mup_net.input.weight, mup_net.readout.weight]
        opt_mup = mup.MuAdam([{"params": other}, {"params": hidden, "lr": lr / mL ** 0.5}], lr=lr)
        peers["mup"] = _step(mup_net, opt_mup, xb, yb)
    except ImportError:
        record["mup"] = "not installed (pip install --no-deps mup)"

    number = 5 if quick else 20
    times = interleaved(peers, repeats=5 if quick else 21, number=number, warmup=2)
    summary = {f"{k}_ms_per_step": round(v["median_s"] * 1e3, 3) for k, v in times.items()}
    summary["ratio_deeplimit_over_plain"] = round(paired_ratio(times, "deeplimit", "plain_torch"), 4)
    if "mup" in times:
        summary["ratio_deeplimit_over_mup"] = round(paired_ratio(times, "deeplimit", "mup"), 4)
    summary["ratio"] = "median over rounds of the paired per-round time ratio"
    summary["goal_ratio_over_plain"] = 1.02
    record.update(times=times, summary=summary)
    return record
