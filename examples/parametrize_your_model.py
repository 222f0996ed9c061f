"""Parametrize your own PyTorch model with Depth-μP, check it, and train it on Fashion-MNIST.

    python examples/parametrize_your_model.py           # full: widths 64→512, depths 4→32
    python examples/parametrize_your_model.py --quick   # what CI runs
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from deeplimit.data import load_fashion_mnist
from deeplimit.diagnostics import coord_check, log2_slopes


class Branch(nn.Module):
    """Your residual branch: any modules. Two matrices in series → block depth 2."""

    def __init__(self, width: int):
        super().__init__()
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x):
        h = F.relu(self.up(x))
        return self.down(h - h.mean(-1, keepdim=True))


class MyNet(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.width, self.depth = width, depth  # the plan reads these (or pass width=/depth= to parametrize)
        self.input = dl.Input(784, width)  # drop-in nn.Linear that carries the input multiplier
        self.blocks = nn.ModuleList(dl.Residual(Branch(width), block_depth=2) for _ in range(depth))
        self.readout = dl.Readout(width, 10)  # drop-in nn.Linear with the 1/m_N output multiplier

    def forward(self, x):
        x = self.input(x)
        for b in self.blocks:
            x = b(x)
        return self.readout(x)


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    x, y = load_fashion_mnist(split="train")
    x, y = x[:4096], y[:4096]

    # 1. parametrize: the LR you tuned at width 64, depth 4 transfers to width 256, depth 16
    model = MyNet(width=256, depth=16)
    plan = dl.parametrize(model, "completep", base_width=64, base_depth=4, optimizer="adamw")
    print(plan.summary())
    opt = dl.make_optimizer(model, plan, lr=2**-9, weight_decay=0.01)

    # 2. check it: coordinates flat over depth
    depths = [4, 8] if quick else [4, 8, 16, 32]
    df = coord_check(MyNet, "completep", x, y, widths=[64], depths=depths, base_width=64, base_depth=4,
                     optimizer="adamw", lr=2**-9, steps=3, seeds=[0])
    s = log2_slopes(df, "depth")
    print("log2 slope of the change over depth at t=3:",
          s[s["step"] == 3].set_index("site")["slope"].round(2).to_dict())

    # 3. train it
    steps = 20 if quick else 300
    for t in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=torch.Generator().manual_seed(t))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t % 10 == 0 or t == steps - 1:
            print(f"step {t:4d} loss {loss.item():.3f}")

    # 4. save with its plan; load into a fresh model
    dl.save_checkpoint("/tmp/mynet.pt", model, plan, opt)
    fresh = MyNet(width=256, depth=16)
    dl.load_checkpoint("/tmp/mynet.pt", fresh)
    assert torch.equal(fresh(x[:8]), model(x[:8]))
    print("checkpoint round trip ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
