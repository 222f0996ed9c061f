"""Transfer plots (matplotlib, Agg backend): loss vs log2 LR per size, and η̂* vs log2 size.

Conventions (ecosystem spec §5, depth-mup spec §11.8): one panel per rule with a shared y-axis, one
curve per depth/width on a sequential colour map (light = small, dark = large), the optimum η̂* marked
with a star, diverged points drawn as crosses along the top of the panel (their loss is +∞), and an
η̂*-vs-size plot with 16–84 % bootstrap error bars, censored (edge) optima drawn hollow, and the fitted
power-law trend with its 95 % band.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import transforms  # noqa: E402

from deeplimit.errors import DeeplimitError  # noqa: E402
from deeplimit.io import atomic_save  # noqa: E402
from deeplimit.plotting import tight_layout  # noqa: E402
from deeplimit.transfer.analysis import SIZE_UNITS, TransferAnalysis  # noqa: E402

__all__ = ["plot_loss_vs_lr", "plot_optimum_vs_size", "plot_analysis"]

DEFAULT_YLABEL = "train loss (cross-entropy, nats)"


def _group_keys(frame: pd.DataFrame, group: list[str]) -> list[tuple]:
    return list(frame[group].drop_duplicates().sort_values(group).itertuples(index=False, name=None))


def _label(keys: tuple) -> str:
    return " / ".join(str(k) for k in keys)


def _size_label(size: str) -> str:
    return {"depth": "depth L (blocks)", "width": "width n"}.get(size, size)


def plot_loss_vs_lr(analysis: TransferAnalysis, path: str | os.PathLike[str], *,
                    ylabel: str = DEFAULT_YLABEL, title: str | None = None, cmap: str = "viridis",
                    log_y: bool | None = None) -> Path:
    """Loss vs log2 LR: one panel per group, one curve per size, optimum starred, diverged crossed."""
    curves, summary, g, size = analysis.curves, analysis.summary, analysis.group, analysis.size
    if curves.empty:
        raise DeeplimitError("nothing to plot: the analysis has no curves (no completed runs?)")
    groups = _group_keys(curves, g)
    sizes = sorted(curves[size].unique())
    colours = plt.get_cmap(cmap)(np.linspace(0.1, 0.9, len(sizes)))
    colour = dict(zip(sizes, colours))
    finite = curves["mean_loss"][np.isfinite(curves["mean_loss"])]
    # Diverging rules can reach 1e7 while good runs sit near 0.5: a shared axis scaled to them would flatten
    # every good curve. Cap the axis at a few times the typical step-0-like loss and mark points above it.
    y_cap = math.inf
    if len(finite) and finite.min() > 0:
        y_cap = float(min(finite.max(), 4.0 * np.quantile(finite, 0.5)))
    if log_y is None:
        log_y = bool(len(finite)) and finite.min() > 0 and y_cap / finite.min() > 100
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1.2, 3.8), sharey=True, squeeze=False)
    for ax, key in zip(axes[0], groups):
        key = key if isinstance(key, tuple) else (key,)
        sel = np.logical_and.reduce([curves[c] == v for c, v in zip(g, key)])
        sub = curves[sel]
        top = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        for s in sizes:
            c = sub[sub[size] == s].sort_values("log2_lr")
            if c.empty:
                continue
            ok = np.isfinite(c["mean_loss"])
            shown = ok & (c["mean_loss"] <= y_cap * 1.0001)
            above = ok & ~shown
            ax.plot(c["log2_lr"][shown], c["mean_loss"][shown], "o-", ms=3, lw=1.4, color=colour[s],
                    label=f"{size} {s:g}" if isinstance(s, int | float | np.number) else f"{size} {s}")
            if above.any():
                ax.scatter(c["log2_lr"][above], np.full(above.sum(), 0.93), marker="^", s=26, color=colour[s],
                           transform=top, clip_on=False, zorder=5)
            if (~ok).any():
                ax.scatter(c["log2_lr"][~ok], np.full((~ok).sum(), 0.97), marker="x", s=30, color=colour[s],
                           transform=top, clip_on=False, zorder=5)
            row = summary[np.logical_and.reduce([summary[cc] == v for cc, v in zip(g, key)])
                          & (summary[size] == s)]
            if len(row) and math.isfinite(row["log2_eta_star"].iloc[0]):
                r = row.iloc[0]
                y = r["loss_at_optimum"] if math.isfinite(r["loss_at_optimum"]) else r["best_loss"]
                if y > y_cap:
                    continue  # the optimum of a blown-up size is off the axis; its ▲ markers show it
                ax.scatter([r["log2_eta_star"]], [y], marker="*", s=140, color=colour[s],
                           edgecolor="black", linewidth=0.6, zorder=6,
                           facecolor="white" if r["censored"] else colour[s])
        ax.set_title(_label(key))
        ax.set_xlabel("log2 learning rate")
        ax.grid(alpha=0.3)
        if log_y:
            ax.set_yscale("log")
        if math.isfinite(y_cap):
            lo = float(finite.min())
            ax.set_ylim(lo * 0.97 if not log_y else lo / 1.1, y_cap * 1.03 if not log_y else y_cap * 1.1)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], marker="*", ls="", color="grey", markeredgecolor="black", ms=11),
                Line2D([], [], marker="x", ls="", color="grey"), Line2D([], [], marker="^", ls="", color="grey")]
    labels += ["η̂* (hollow: censored)", "diverged (loss = +∞)", "above the axis (finite)"]
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    tight_layout(fig, rect=(0, 0, 1 - 1.3 / (4.2 * n + 1.2), 1))
    return _save(fig, path)


def plot_optimum_vs_size(analysis: TransferAnalysis, path: str | os.PathLike[str], *,
                         title: str | None = None) -> Path:
    """η̂* vs log2 size per group with bootstrap error bars, censored points hollow, fitted trends."""
    summary, drift, g, size = analysis.summary, analysis.drift, analysis.group, analysis.size
    if summary.empty:
        raise DeeplimitError("nothing to plot: the summary table is empty")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = _group_keys(summary, g)
    extent: list[float] = []  # the points and their bars: one group's exploding trend band must not hide the rest
    bands: list = []
    for i, key in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        col = cycle[i % len(cycle)]
        sub = summary[np.logical_and.reduce([summary[c] == v for c, v in zip(g, key)])].sort_values(size)
        sub = sub[np.isfinite(sub["log2_eta_star"])]
        x = np.log2(sub[size].astype(float).to_numpy())
        y = sub["log2_eta_star"].to_numpy()
        yerr = np.stack([np.clip(y - sub["ci_low"].to_numpy(), 0, None),
                         np.clip(sub["ci_high"].to_numpy() - y, 0, None)])
        yerr = np.where(np.isfinite(yerr), yerr, 0)
        cen = sub["censored"].astype(bool).to_numpy()
        extent += [*(y - yerr[0]), *(y + yerr[1])]
        dr = drift[np.logical_and.reduce([drift[c] == v for c, v in zip(g, key)])]
        verdict = f" — {dr['verdict'].iloc[0]}" if len(dr) else ""
        bar = ax.errorbar(x[~cen], y[~cen], yerr=yerr[:, ~cen], fmt="o", color=col, capsize=3,
                          label=f"{_label(key)}{verdict}")
        if cen.any():
            ax.errorbar(x[cen], y[cen], yerr=yerr[:, cen], fmt="o", mfc="white", color=col, capsize=3)
        trend = analysis.trends.get(key)
        if trend is not None:
            xs = np.linspace(x.min(), x.max(), 50)
            ys = trend.intercept + trend.slope * xs
            ax.plot(xs, ys, "-", color=col, lw=1.2)
            bands.append((xs, np.array([trend.interval(2.0**v) for v in xs]), col, bar))
    if extent:  # the y range follows the points and their bars (the drift table has every band's numbers)
        ax.set_ylim(min(extent) - 1.5, max(extent) + 1.5)
    lo, hi = ax.get_ylim()
    for xs, band, col, bar in bands:
        if np.nanmax(band[:, 1] - band[:, 0]) < hi - lo:
            ax.fill_between(xs, band[:, 0], band[:, 1], color=col, alpha=0.12, lw=0)
        else:  # a band wider than the whole plot would only wash over the other groups
            bar.set_label(f"{bar.get_label()} (trend band off scale)")
    ax.set_xlabel(f"log2 {_size_label(size)}")
    ax.set_ylabel("log2 η̂* (optimal learning rate)")
    ax.grid(alpha=0.3)
    unit = SIZE_UNITS.get(size, size)
    ax.set_title(title or f"optimal LR vs {unit}: 16–84% bootstrap bars, hollow = censored, line = WLS trend",
                 fontsize=9)
    ax.legend(fontsize=8)
    tight_layout(fig)
    return _save(fig, path)


def plot_analysis(analysis: TransferAnalysis, out_dir: str | os.PathLike[str], *,
                  ylabel: str = DEFAULT_YLABEL, prefix: str = "") -> list[Path]:
    """Both plots into ``out_dir``: ``loss_vs_lr.png`` and ``optimum_vs_size.png``."""
    out = Path(out_dir)
    return [plot_loss_vs_lr(analysis, out / f"{prefix}loss_vs_lr.png", ylabel=ylabel),
            plot_optimum_vs_size(analysis, out / f"{prefix}optimum_vs_size.png")]


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    try:
        return atomic_save(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    finally:
        plt.close(fig)
