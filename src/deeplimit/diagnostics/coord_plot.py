"""The coordinate-check figure (mup style): activation size and its change from init against width or depth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from deeplimit.diagnostics.coord_verdict import SITES
from deeplimit.plotting import tight_layout


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
    sites = list(SITES)
    colors = dict(zip(sites, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sites)))))
    for i, (rule, stat) in enumerate(rows):
        for j, t in enumerate(steps):
            ax = axes[i, j]
            sub = df[(df["rule"] == rule) & (df["step"] == t)]
            drawn = False
            for site in sites:
                g = sub[sub["site"] == site].groupby(axis)[stat]
                m, s = g.mean(), g.sem().fillna(0)
                if len(m) == 0 or (m <= 0).any() or not np.all(np.isfinite(m.values)):
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
            # y = 1: where Matplotlib's automatic placement puts it (no tick labels on top), without measuring the
            # tick labels of all the panels that share x for every title
            ax.set_title(f"{rule}, t = {t}", fontsize=9, y=1.0)
            if i == len(rows) - 1:
                ax.set_xlabel(axis + " (log2)")
            if j == 0:
                ax.set_ylabel({"rms": "RMS of activation", "delta_rms": "RMS change from init",
                               "l1": "mean |activation|"}.get(stat, stat))
            ax.grid(alpha=0.3, which="both")
    # every site drawn in any panel: the first panel can lack one (a zero-initialised readout's logits are 0 at
    # t = 0 and not drawn on a log scale), and its legend would then leave that site's colour unnamed
    by_label: dict[str, object] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(lab, h)
    labels = [s for s in sites if s in by_label]
    fig.legend([by_label[s] for s in labels], labels, loc="lower center", ncol=len(sites), frameon=False)
    fig.suptitle(f"coordinate check over {axis} (mean ± s.e. over seeds; flat = transfers)", fontsize=10)
    tight_layout(fig, rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

