"""Training-step time of a parametrized MLP-ResNet vs the identical plain PyTorch model vs microsoft/mup, and the
cost of deeplimit's forward hooks on a model described by a Structure.

All peers compute the same function (Depth-μP MLP-ResNet, width 256, 16 blocks, batch 128, Adam): the plain
model hard-codes the multipliers and builds the same Adam groups by hand; the mup peer uses ``MuReadout``,
``set_base_shapes`` and ``MuAdam`` with the depth multiplier hard-coded (mup has no depth support). The hooked
peer is a plain model with no deeplimit classes, declared with ``dl.declare_structure`` and parametrized, so its
branch and readout multipliers are applied by forward hooks; its twin has the same constants typed in its
forward. Every peer's output is asserted equal to deeplimit's before timing (the mup peer gets deeplimit's
weights). Timing: the one method of ``benchmarks.common``. Goals: deeplimit / plain ≤ 1.02 and hooked / its
twin ≤ 1.02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from benchmarks.common import assert_same_outputs, paired_ratio, paired_rounds, rounds_summary

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


class Branch(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.W = nn.Linear(width, width, bias=False)

    def forward(self, x):
        h = F.relu(self.W(x))
        return h - h.mean(dim=-1, keepdim=True)


class Block(nn.Module):
    def __init__(self, width, branch_mult):
        super().__init__()
        self.branch = Branch(width)
        self.branch_mult = branch_mult

    def forward(self, x):
        return x + self.branch(x) if self.branch_mult is None else x + self.branch_mult * self.branch(x)


class Foreign(nn.Module):
    """A model with no deeplimit classes: residual sums in its own forward. With ``mults`` its forward applies
    the multipliers itself (the hand-written twin); without, a Structure and hooks do."""

    def __init__(self, width, depth, mults=None):
        super().__init__()
        self.mults = mults
        self.input = nn.Linear(D_IN, width, bias=False)
        self.blocks = nn.ModuleList(Block(width, mults[0] if mults else None) for _ in range(depth))
        self.readout = nn.Linear(width, D_OUT, bias=False)

    def forward(self, x):
        x = self.input(x)
        for block in self.blocks:
            x = block(x)
        return self.readout(x * self.mults[1] if self.mults else x)


def _foreign_structure(width, depth):
    blocks = [f"blocks.{i}" for i in range(depth)]
    return dl.Structure(width=width, depth=depth, blocks={b: 1 for b in blocks},
                        branches={f"{b}.branch": b for b in blocks}, inputs=("input",), readouts=("readout",),
                        family="resnet", source="benchmark")


def _step(model, opt, xb, yb):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return step


def run(quick: bool = False) -> dict:
    width, depth, batch = (128, 8, 16) if quick else (256, 16, 128)
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

    hooked = dl.declare_structure(Foreign(width, depth), _foreign_structure(width, depth))
    plan_hooked = dl.parametrize(hooked, "depth_mup", base_width=N0, base_depth=L0, optimizer="adam")
    twin = Foreign(width, depth, mults=(mL ** -0.5, 1 / mN))
    twin.load_state_dict({k: v for k, v in hooked.state_dict().items() if ".deeplimit." not in k})
    opt_hooked = dl.make_optimizer(hooked, plan_hooked, lr)
    opt_twin = torch.optim.Adam([
        {"params": [twin.input.weight, twin.readout.weight], "lr": lr, "eps": 1e-8 / mN},
        {"params": [b.branch.W.weight for b in twin.blocks], "lr": lr / mN / mL ** 0.5, "eps": 1e-8 / mN / mL ** 0.5},
    ], lr=lr)
    with torch.no_grad():
        outputs = {"deeplimit": ours(xb), "plain_torch": plain(xb)}
        assert_same_outputs({"hooked_structure": hooked(xb), "hooked_twin": twin(xb)})

    peers = {"deeplimit": _step(ours, opt_ours, xb, yb), "plain_torch": _step(plain, opt_plain, xb, yb),
             "hooked_structure": _step(hooked, opt_hooked, xb, yb), "hooked_twin": _step(twin, opt_twin, xb, yb)}
    record: dict = {"config": {"width": width, "depth": depth, "batch": batch, "optimizer": "adam",
                               "rule": "depth_mup", "base": [N0, L0], "lr": lr}}
    try:
        import mup

        def mup_model(w):
            return Plain(w, depth, mL ** -0.5, 1.0, readout=mup.MuReadout(w, D_OUT, bias=False))
        mup_net = mup_model(width)
        mup.set_base_shapes(mup_net, mup_model(N0), delta=mup_model(N0 * 2))
        with torch.no_grad():  # deeplimit's weights, so that the outputs can be compared
            mup_net.load_state_dict(plain.state_dict())
            outputs["mup"] = mup_net(xb)
        # mup knows no depth: scale the hidden LR by the depth factor through a separate MuAdam group
        hidden = [W.weight for W in mup_net.W]
        other = [mup_net.input.weight, mup_net.readout.weight]
        opt_mup = mup.MuAdam([{"params": other}, {"params": hidden, "lr": lr / mL ** 0.5}], lr=lr)
        peers["mup"] = _step(mup_net, opt_mup, xb, yb)
    except ImportError:
        record["mup"] = "not installed (pip install --no-deps mup)"

    assert_same_outputs(outputs, atol=1e-5)
    repeats, number = (3, 1) if quick else (21, 20)
    times = paired_rounds(peers, repeats=repeats, number=number, warmup=2)
    summary = {f"{k}_ms_per_step": round(v["median_s"] * 1e3, 3) for k, v in times.items()}
    summary["ms_per_step"] = rounds_summary(times)
    summary["ratio_deeplimit_over_plain"] = round(paired_ratio(times, "deeplimit", "plain_torch"), 4)
    summary["ratio_hooked_over_twin"] = round(paired_ratio(times, "hooked_structure", "hooked_twin"), 4)
    summary["hooks_per_step"] = f"{depth} branch forward hooks, 1 readout pre-hook, 1 input hook (returns early)"
    if "mup" in times:
        summary["ratio_deeplimit_over_mup"] = round(paired_ratio(times, "deeplimit", "mup"), 4)
    summary["ratio"] = "median over rounds of the paired per-round ratio of thread CPU time"
    summary["goal_ratio_over_plain"] = 1.02
    record["settings"] = {"rounds": repeats, "steps_per_round": number, "warmup_steps": 2,
                          "outputs_equal_atol": 1e-5, "peers": list(peers)}
    record.update(times=times, summary=summary)
    return record
