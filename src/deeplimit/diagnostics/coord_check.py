"""Coordinate checks over width *and* depth (ecosystem spec §1, §5; depth-mup spec §8.2).

Train a few steps at several (width, depth) and record, at every step t (t = 0 is init), the size of
each site's activations on a fixed batch: mean |x| (``l1``, mup's column), ``rms``, and ``delta_rms`` =
RMS(x_t − x_0) (the change from init, the statistic that separates parametrizations).

Sites are aliases that exist at every depth: ``input`` (x⁰), ``block_first`` (x¹), ``block_last`` (x^L,
the final residual stream) and ``logits``. Under a correct rule the curves are flat in width and depth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.apply import parametrize
from deeplimit.scaling.optim import make_optimizer

ModelFactory = Callable[[int, int], nn.Module]


def _sites(model: nn.Module) -> dict[str, nn.Module]:
    """Alias → module whose output is recorded. Needs ``input``, ``blocks`` and ``readout`` attributes."""
    try:
        blocks = list(model.blocks)
        return {"input": model.input, "block_first": blocks[0], "block_last": blocks[-1], "logits": model.readout}
    except AttributeError as exc:
        raise DeeplimitError(
            "coord_check needs a model with 'input', 'blocks' and 'readout' (like deeplimit.MLPResNet or the "
            f"transformer LM); got {type(model).__name__}") from exc


@torch.no_grad()
def _measure(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    acts: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, k=k: acts.__setitem__(k, out.detach().clone()))
               for k, m in _sites(model).items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return acts


def coord_check(
    make_model: ModelFactory,
    rule: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    widths: Sequence[int],
    depths: Sequence[int],
    base_width: int,
    base_depth: int,
    optimizer: str = "adam",
    lr: float = 2**-8,
    steps: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    dtype: torch.dtype = torch.float32,
    **plan_kwargs,
) -> pd.DataFrame:
    """Tidy table with one row per (width, depth, seed, step, site): ``l1``, ``rms``, ``delta_rms``.

    ``make_model(width, depth)`` builds the architecture; ``rule`` and ``plan_kwargs`` go to
    :func:`deeplimit.parametrize`. Every (width, depth) sees the same batches for a given seed.
    """
    if len(x) < batch_size * 2:
        raise DeeplimitError(f"coord_check needs at least {2 * batch_size} samples, got {len(x)}")
    if steps < 0:
        raise DeeplimitError(f"steps must be >= 0, got {steps}")
    rows = []
    eval_x = x[:batch_size].to(dtype)
    for seed in seeds:
        gen = torch.Generator().manual_seed(10_000 + seed)
        order = torch.randperm(len(x) - batch_size, generator=gen)[: steps * batch_size] + batch_size
        for width in widths:
            for depth in depths:
                model = make_model(width, depth).to(dtype)
                plan = parametrize(model, rule, seed=seed, optimizer=optimizer, base_width=base_width,
                                   base_depth=base_depth, **plan_kwargs)
                opt = make_optimizer(model, plan, lr)
                init = _measure(model, eval_x)
                for t in range(steps + 1):
                    acts = init if t == 0 else _measure(model, eval_x)
                    for site, a in acts.items():
                        a64 = a.double()
                        rows.append({
                            "rule": plan.rule.name, "alpha": plan.rule.alpha, "gamma": plan.rule.gamma,
                            "optimizer": optimizer, "lr": lr, "width": width, "depth": depth,
                            "base_width": base_width, "base_depth": base_depth, "seed": seed, "step": t,
                            "site": site, "l1": a64.abs().mean().item(), "rms": a64.square().mean().sqrt().item(),
                            "delta_rms": (a64 - init[site].double()).square().mean().sqrt().item(),
                        })
                    if t == steps:
                        break
                    idx = order[t * batch_size:(t + 1) * batch_size]
                    loss = loss_fn(model(x[idx].to(dtype)), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    return pd.DataFrame(rows)


def log2_slopes(df: pd.DataFrame, axis: str, stat: str = "delta_rms") -> pd.DataFrame:
    """Least-squares slope of log2(seed-mean ``stat``) on log2(``axis``), per (rule, site, step).

    A slope near 0 means the coordinate is flat along ``axis`` (the check passes); ``stat`` = 0 (e.g. the
    change at t = 0) gives NaN.
    """
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    mean = df.groupby(["rule", "site", "step", axis], as_index=False)[stat].mean()
    out = []
    for (rule, site, step), g in mean.groupby(["rule", "site", "step"]):
        v = g[stat].to_numpy()
        if len(g) < 2 or np.any(v <= 0) or not np.all(np.isfinite(v)):
            slope = float("nan")
        else:
            slope = float(np.polyfit(np.log2(g[axis].to_numpy(float)), np.log2(v), 1)[0])
        out.append({"rule": rule, "site": site, "step": step, "slope": slope})
    return pd.DataFrame(out)


def plot_coord_check(df: pd.DataFrame, axis: str, path: str, stats: Sequence[str] = ("rms", "delta_rms"),
                     steps: Sequence[int] | None = None) -> str:
    """mup-style figure: one panel per step, x = width or depth (log2), one curve per site, mean ± s.e.

    One row per (rule, statistic): the activation size ``rms`` and its change from init ``delta_rms``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_steps = sorted(df["step"].unique())
    if steps is None:
        steps = sorted({all_steps[int(round(i))] for i in np.linspace(0, len(all_steps) - 1, min(6, len(all_steps)))})
    rows = [(rule, stat) for rule in sorted(df["rule"].unique()) for stat in stats]
    fig, axes = plt.subplots(len(rows), len(steps), figsize=(2.9 * len(steps), 2.5 * len(rows) + 0.8),
                             squeeze=False, sharex=True)
    sites = ["input", "block_first", "block_last", "logits"]
    colors = dict(zip(sites, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sites)))))
    for i, (rule, stat) in enumerate(rows):
        for j, t in enumerate(steps):
            ax = axes[i, j]
            sub = df[(df["rule"] == rule) & (df["step"] == t)]
            drawn = False
            for site in sites:
                g = sub[sub["site"] == site].groupby(axis)[stat]
                m, s = g.mean(), g.sem().fillna(0)
                if len(m) == 0 or (m <= 0).any():
                    continue
                ax.errorbar(m.index, m.values, yerr=s.values, marker="o", ms=3, lw=1.2, capsize=2,
                            color=colors[site], label=site)
                drawn = True
            if drawn:
                ax.set_yscale("log")
            else:
                ax.text(0.5, 0.5, "0 at init" if stat == "delta_rms" else "no data", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{rule}, t = {t}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(axis + " (log2)")
            if j == 0:
                ax.set_ylabel({"rms": "RMS of activation", "delta_rms": "RMS change from init",
                               "l1": "mean |activation|"}.get(stat, stat))
            ax.grid(alpha=0.3, which="both")
    handles, labels = [], []
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            break
    fig.legend(handles, labels, loc="lower center", ncol=len(sites), frameon=False)
    fig.suptitle(f"coordinate check over {axis} (mean ± s.e. over seeds; flat = transfers)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
