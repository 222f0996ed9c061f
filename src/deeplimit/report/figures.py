"""Figures drawn by the report itself (the sweep and study modules draw their own)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.io import ensure_dir
from deeplimit.plotting import tight_layout


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file of a unique name beside ``path``, for a writer that needs a file name (a figure drawn by
    a library function): renamed over ``path`` when the block succeeds, removed when it fails. Two runs drawing
    the same figure never share a temporary file, and a reader never sees a half-written one."""
    ensure_dir(path.parent, "output folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a Matplotlib figure to ``path`` through :func:`replacing` and close it."""
    import matplotlib.pyplot as plt

    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def best_loss_figure(analyses: list, path: Path, title: str, ylabel: str = "best loss over the LR grid",
                     prefixes: list[str] | None = None) -> Path:
    """Best-over-LR loss vs size, one line per group (seed mean), each seed a dot: the figure that carries a
    comparison's verdict. Diverged seeds (+∞) are left out of the plot, not drawn at the edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for i, an in enumerate(analyses):
        r = an.runs
        best = r.groupby([*an.group, an.size, "seed"])["value"].min().reset_index()
        best = best[np.isfinite(best["value"])]
        for key, g in best.groupby(an.group):
            label = (prefixes[i] if prefixes else "") + ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
            mean = g.groupby(an.size)["value"].mean()
            line, = ax.plot(mean.index, mean.values, marker="o", label=label)
            ax.scatter(g[an.size], g["value"], color=line.get_color(), alpha=0.45, s=14)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(analyses[0].size)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    tight_layout(fig)
    return save_figure(fig, path)


def eta_star_figure(runs: pd.DataFrame, group: str, size: str, stats: dict, path: Path, title: str) -> Path:
    """Per-seed η* (the statistic's own estimator, :func:`deeplimit.transfer.statistics.fit_optimum`) vs size,
    one colour per rule, the seed mean joined by a line, censored optima drawn hollow; the legend carries each
    rule's slope per doubling with its interval, the numbers the verdict reads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplimit.transfer.statistics import fit_optimum

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for rule, g in runs.groupby(group):
        pts = []
        for (sz, _seed), c in g.groupby([size, "seed"]):
            c = c.sort_values("log2_lr")
            o = fit_optimum(c["log2_lr"].to_numpy(float), c["value"].to_numpy(float))
            pts.append((float(sz), o.log2_lr, o.censored))
        if not pts:
            continue
        df = pd.DataFrame(pts, columns=["size", "eta", "censored"])
        ok = df[~df["censored"] & np.isfinite(df["eta"])]
        s = stats.get(str(rule), {})
        label = str(rule)
        if s.get("slope") is not None and s.get("slope_ci") and None not in s["slope_ci"]:
            label += f": {s['slope']:+.2f} [{s['slope_ci'][0]:+.2f}, {s['slope_ci'][1]:+.2f}]/doubling"
        mean = ok.groupby("size")["eta"].mean()
        line, = ax.plot(mean.index, mean.values, marker="o", label=label)
        ax.scatter(ok["size"], ok["eta"], color=line.get_color(), alpha=0.45, s=14)
        cen = df[df["censored"] & np.isfinite(df["eta"])]
        if len(cen):
            ax.scatter(cen["size"], cen["eta"], facecolors="none", edgecolors=line.get_color(), s=30)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(size)
    ax.set_ylabel("log2 η* (per seed)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    tight_layout(fig)
    return save_figure(fig, path)


def transfer_figures(ctx, an, experiment: str, size: str, stats: dict, figs: list[Path], best: bool = True
                     ) -> list[Path]:
    """A transfer claim's figures: per-seed η* against size with each rule's slope (what the verdict reads), the
    best loss per seed against size, then the sweep's loss-vs-LR panels (its old optimum-vs-size panel is left out:
    it drew another estimator's η*)."""
    folder = ctx.out / "figures" / experiment
    out = [eta_star_figure(an.runs, "rule", size, stats, folder / f"eta_star_vs_{size}.png",
                           f"per-seed η* (dots) and their mean vs {size}")]
    if best:
        out.append(best_loss_figure([an], folder / f"best_loss_vs_{size}.png",
                                    f"best loss per seed (dots) vs {size}, per rule"))
    return out + [f for f in figs if "optimum_vs_size" not in f.name]
