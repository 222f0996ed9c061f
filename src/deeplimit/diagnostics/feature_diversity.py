"""Feature diversity exponent κ (TP6 §7, §10.4; depth-mup spec §7).

κ is the largest exponent with n^{-1/2}‖x^{⌊(u+Δu)L⌋} − x^{⌊uL⌋}‖ = Ω(Δu^{1−κ}). We measure

    d(Δu) = mean over samples of RMS over width of x^{⌊uL⌋+j} − x^{⌊uL⌋},   Δu = j/L, j = 1, 2, 4, …

fit the slope s of log d on log Δu and report κ̂ = 1 − s. Depth-μP has κ = ½; α ∈ (½, 1] has κ = 0 (after
training; at t = 0 every α gives slope ½, with an amplitude that vanishes like L^{1/2−α}).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_save
from deeplimit.plotting import tight_layout


@torch.no_grad()
def residual_stream(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """[x⁰, …, x^L] of a model whose forward accepts ``return_stream=True`` (MLPResNet, TransformerLM)."""
    was = model.training
    model.eval()
    try:
        _, stream = model(x, return_stream=True)
    except TypeError as exc:
        raise DeeplimitError(f"{type(model).__name__}.forward has no return_stream=True option; feature "
                             "diversity needs the residual stream x^0..x^L") from exc
    finally:
        model.train(was)
    return stream


def stream_distances(stream: Sequence[torch.Tensor], us: Sequence[float] = (0.25, 0.5, 0.75),
                     du_max: float = 1 / 8) -> pd.DataFrame:
    """d(Δu) for Δu = j/L, j ∈ {1, 2, 4, …} ≤ Δu_max·L, at each u; also RMS(x^{⌊uL⌋}) for normalisation."""
    L = len(stream) - 1
    if L < 2:
        raise DeeplimitError(f"feature diversity needs at least 2 residual blocks, got {L}")
    js = [2**k for k in range(int(math.log2(max(1, du_max * L))) + 1)]
    rows = []
    for u in us:
        i = int(math.floor(u * L))
        ref = stream[i].double()
        rms_ref = ref.square().mean().sqrt().item()
        for j in js:
            if i + j > L:
                break
            diff = stream[i + j].double() - ref
            d = diff.square().mean(dim=-1).sqrt().mean().item()  # RMS over width, mean over samples/tokens
            rows.append({"u": u, "j": j, "du": j / L, "d": d, "rms_ref": rms_ref, "depth": L})
    return pd.DataFrame(rows)


def kappa(distances: pd.DataFrame) -> pd.DataFrame:
    """κ̂ = 1 − slope of log d on log Δu, per u (least squares)."""
    out = []
    for u, g in distances.groupby("u"):
        if len(g) < 2 or (g["d"] <= 0).any():
            s = float("nan")
        else:
            s = float(np.polyfit(np.log(g["du"]), np.log(g["d"]), 1)[0])
        out.append({"u": u, "slope": s, "kappa": 1 - s, "points": len(g)})
    return pd.DataFrame(out)


def feature_diversity(model: nn.Module, x: torch.Tensor, us: Sequence[float] = (0.25, 0.5, 0.75),
                      du_max: float = 1 / 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(distances table, κ table) for ``model`` on a held-out batch ``x``."""
    d = stream_distances(residual_stream(model, x), us, du_max)
    return d, kappa(d)


class KappaProbe:
    """A training hook (``hook(step, model)`` of :func:`deeplimit.train.train`) that measures the stream
    distances and κ̂ on a fixed held-out batch ``x`` at the given ``steps``; results accumulate in
    :attr:`distances` and :attr:`kappas` (tables with the ``labels`` columns, e.g. ``rule``, plus ``step``)."""

    def __init__(self, x: torch.Tensor, steps: Sequence[int], **labels: object) -> None:
        self.x, self.steps, self.labels = x, set(steps), labels
        self.distances: list[pd.DataFrame] = []
        self.kappas: list[pd.DataFrame] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        if step in self.steps:
            d = stream_distances(residual_stream(model, self.x))
            k = kappa(d)
            for table in (d, k):
                for col, value in {**self.labels, "step": step}.items():
                    table[col] = value
            self.distances.append(d)
            self.kappas.append(k)


def init_distance_ratio(du: float, depth: int, base_depth: int, alpha: float, block_mult: float = 1.0,
                        c_phi: float = 0.5 - 1 / (2 * math.pi), sigma_hidden: float = 1.0) -> float:
    """Closed form at init, n → ∞ (spec §7, derived): d(Δu)/RMS(x^{⌊uL⌋}) = √((1 + a²σ²c_φ m_L^{−2α})^{ΔuL} − 1)."""
    q = 1 + block_mult**2 * sigma_hidden**2 * c_phi * (depth / base_depth) ** (-2 * alpha)
    return math.sqrt(q ** (du * depth) - 1)


def plot_feature_diversity(distances: pd.DataFrame, path: str, title: str = "") -> str:
    """Two panels: d(Δu)/d(Δu_min) and d(Δu)/Δu^{1/2} (flat for κ = ½), log-log, one curve per (label, u=½)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = distances[distances["u"] == 0.5] if (distances["u"] == 0.5).any() else distances
    label_cols = [c for c in ("rule", "step", "depth") if c in df.columns]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    groups = list(df.groupby(label_cols)) if label_cols else [((), df)]
    cmap = plt.get_cmap("viridis")
    for k, (key, g) in enumerate(groups):
        g = g.sort_values("du")
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c}={v}" for c, v in zip(label_cols, key))
        color = cmap(k / max(1, len(groups) - 1) * 0.9)
        axes[0].plot(g["du"], g["d"] / g["d"].iloc[0], "o-", ms=3, color=color, label=label)
        axes[1].plot(g["du"], g["d"] / np.sqrt(g["du"]), "o-", ms=3, color=color, label=label)
    du = np.array(sorted(df["du"].unique()))
    if len(du):
        axes[0].plot(du, np.sqrt(du / du[0]), "k--", lw=1, label=r"$\propto \Delta u^{1/2}$ ($\kappa=1/2$)")
        axes[0].plot(du, du / du[0], "k:", lw=1, label=r"$\propto \Delta u$ ($\kappa=0$)")
    for ax, ylab in zip(axes, [r"$d(\Delta u)/d(\Delta u_{min})$", r"$d(\Delta u)/\Delta u^{1/2}$"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(r"$\Delta u$ (fraction of depth), u = 1/2")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "feature diversity: distance between residual-stream layers", fontsize=10)
    tight_layout(fig)
    try:
        atomic_save(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path
