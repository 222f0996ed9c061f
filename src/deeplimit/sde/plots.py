"""Matplotlib (Agg) figures for the SDE engine: density vs histogram, mean |ρ| vs depth, stopping-time map."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402
from torch import Tensor  # noqa: E402

from deeplimit.io import atomic_save  # noqa: E402
from deeplimit.plotting import tight_layout  # noqa: E402
from deeplimit.sde.compare import extract, label  # noqa: E402


def plot_density(
    sde: Tensor,
    network: Tensor,
    path: str | Path,
    quantity: str = "rho",
    i: int = 0,
    j: int = 1,
    title: str | None = None,
) -> Path:
    """SDE density (Gaussian KDE line) over the finite-network histogram for one quantity (Fig. 1 right,
    3, 7).

    ``sde, network``: ``(B, m, m)`` terminal Gram matrices. Writes a PNG and returns its path.
    """
    a, b = extract(sde, quantity, i, j), extract(network, quantity, i, j)
    fig, ax = plt.subplots(figsize=(6, 4))
    lo, hi = np.quantile(np.concatenate([a, b]), [0.001, 0.999])
    ax.hist(
        b, bins=60, range=(lo, hi), density=True, alpha=0.45, color="C0", label=f"finite network (N={b.size})"
    )
    grid = np.linspace(lo, hi, 400)
    if a.size > 1 and np.std(a) > 0:
        ax.plot(grid, stats.gaussian_kde(a)(grid), color="C3", lw=2, label=f"SDE (N={a.size})")
    ax.set_xlabel(_tex(label(quantity, i, j)))
    ax.set_ylabel("density")
    ax.set_title(title or f"terminal {_tex(label(quantity, i, j))}: SDE vs network")
    ax.legend()
    return _save(fig, path)


def plot_vs_depth(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    ylabel: str = "mean |ρ|",
    title: str = "mean |ρ| vs depth",
    logy: bool = False,
) -> Path:
    """Line plot of ``{label: (layers, values)}`` (Fig. 1 left, Fig. 4)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), label=name, lw=1.8)
    ax.set_xlabel("layer ℓ")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_stopping_map(
    df: pd.DataFrame, path: str | Path, value: str = "median_t", title: str | None = None
) -> Path:
    """Heat map of ``value`` (median stopping time) over ``(γ, τ0)`` from
    :func:`~deeplimit.sde.scenarios.stopping_map`
    (Fig. 8). Axes: log2 τ0 (x) and γ (y)."""
    table = df.pivot(index="gamma", columns="tau0", values=value).sort_index()
    fig, ax = plt.subplots(figsize=(7, 5))
    im = ax.imshow(
        table.to_numpy(),
        origin="lower",
        aspect="auto",
        cmap="viridis",
        vmin=0,
        vmax=float(df["T"].max()) if "T" in df else None,
    )
    ax.set_xticks(range(table.shape[1]), [f"{np.log2(t):g}" for t in table.columns], fontsize=7)
    ax.set_yticks(range(table.shape[0]), [f"{g:.3g}" for g in table.index], fontsize=7)
    ax.set_xlabel("log2 τ0")
    ax.set_ylabel("γ")
    ax.set_title(title or f"{value.replace('_', ' ')} of stopping time t*")
    fig.colorbar(im, ax=ax, label="t* (capped at T)")
    return _save(fig, path)


def plot_stopping_vs_gamma(df: pd.DataFrame, path: str | Path) -> Path:
    """Median and 10th percentile of ``t*`` vs γ (Fig. 5 right); ``df`` has ``gamma, median_t, p10_t`` and an
    optional ``source`` column."""
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = df.groupby("source") if "source" in df else [("", df)]
    for k, (src, g) in enumerate(groups):
        ax.plot(g["gamma"], g["median_t"], "o-", color=f"C{k}", label=f"{src} median".strip())
        ax.plot(g["gamma"], g["p10_t"], "s--", color=f"C{k}", label=f"{src} 10th percentile".strip())
    ax.set_xscale("log")
    ax.set_xlabel("γ")
    ax.set_ylabel("stopping time t*")
    ax.set_title("stopping time vs γ")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_stopping_diff(cells: pd.DataFrame, path: str | Path, T: float = 1.0, title: str | None = None) -> Path:
    """Heat map of the median-``t*`` difference network − SDE over ``(γ, τ0)`` (output of
    :func:`~deeplimit.sde.evidence.compare_stopping_maps`); cells whose bootstrap interval misses the tolerance
    are marked ✗, with the difference written in every cell."""
    table = cells.pivot(index="gamma", columns="tau0", values="diff").sort_index()
    agree = cells.pivot(index="gamma", columns="tau0", values="agree").sort_index()
    fig, ax = plt.subplots(figsize=(7, 5))
    im = ax.imshow(table.to_numpy(), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-T, vmax=T)
    for (r, c), v in np.ndenumerate(table.to_numpy()):
        mark = "" if bool(agree.to_numpy()[r, c]) else " ✗"
        ax.text(c, r, f"{v:+.2f}{mark}", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * T else "black")
    ax.set_xticks(range(table.shape[1]), [f"{np.log2(t):g}" for t in table.columns], fontsize=7)
    ax.set_yticks(range(table.shape[0]), [f"{g:.3g}" for g in table.index], fontsize=7)
    ax.set_xlabel("log2 τ0")
    ax.set_ylabel("γ")
    ax.set_title(title or "median t*: network − SDE (✗: 95% interval misses the tolerance)")
    fig.colorbar(im, ax=ax, label="difference of median t*")
    return _save(fig, path)


def plot_ks_vs_n(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """KS (network vs SDE) against width ``n`` on log-log axes, one panel per γ, one line per covariance entry,
    with the two-sample 5% critical value dashed (output of :func:`~deeplimit.sde.evidence.convergence_study`)."""
    gammas = sorted(table["gamma"].unique())
    fig, axes = plt.subplots(1, len(gammas), figsize=(3.2 * len(gammas), 3.4), sharey=True, squeeze=False)
    for ax, g in zip(axes[0], gammas):
        sub = table[table["gamma"] == g]
        for k, (q, s) in enumerate(sub.groupby("quantity", sort=False)):
            ax.plot(s["n"], s["ks"], "o-", color=f"C{k}", label=_tex(q), lw=1.5, ms=4)
        crit = sub.groupby("n")["ks_crit"].first()
        ax.plot(crit.index, crit.to_numpy(), "k--", lw=1, label="KS 5% critical value")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        widths = sorted(sub["n"].unique())
        ax.set_xticks(widths, [str(int(w)) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("width n (d = n·T)")
        ax.set_title(f"γ = {g:.3g}")
    axes[0][0].set_ylabel("KS distance, network vs SDE")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _tex(name: str) -> str:
    """``rho^{12}`` → mathtext ``$\\rho^{12}$`` (shown as ρ¹²); eigenvalue names pass through."""
    if "^{" not in name:
        return name
    return "$" + name.replace("abs_rho", "|\\rho|").replace("rho", "\\rho") + "$"


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Lay out, write at 120 dpi and close ``fig``; return the path (one place for every figure here)."""
    tight_layout(fig)
    out = Path(path)
    try:  # atomically: the report reads every figure back
        atomic_save(out, lambda fh: fig.savefig(fh, format="png", dpi=120))
    finally:
        plt.close(fig)
    return out
