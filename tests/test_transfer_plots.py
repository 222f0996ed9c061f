"""Plots are written (Agg) for a synthetic analysis with diverged and censored points."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.transfer.analysis import analyze
from deeplimit.transfer.plots import plot_analysis


def test_plot_files_written(tmp_path: Path) -> None:
    rows = []
    for rule, k in [("depth_mup", 0.0), ("sp", -1.0)]:
        for L in (2, 8, 32):
            opt = -8 + k * math.log2(L / 2)
            for seed in (0, 1):
                for x in np.arange(-12.0, -4.5):
                    v = 0.5 + 0.05 * (x - opt) ** 2 + 0.01 * seed
                    rows.append({"rule": rule, "depth": L, "seed": seed, "log2_lr": x,
                                 "value": math.inf if (rule == "sp" and x > -7) else v})
    result = analyze(pd.DataFrame(rows), n_boot=100)
    paths = plot_analysis(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss_vs_lr.png", "optimum_vs_size.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_a_trend_band_wider_than_the_plot_is_not_drawn(tmp_path: Path, monkeypatch) -> None:
    """One group whose optima jump about (a huge trend band) must not wash over the others: its band is left
    out and its legend entry says so, while the well-fitted group keeps its band."""
    import matplotlib.axes

    from deeplimit.transfer.plots import plot_optimum_vs_size

    rows = []
    for rule, opts in [("depth_mup", {2: -8.0, 8: -8.0, 32: -8.1}), ("sp", {2: -6.0, 8: -9.5, 32: -6.5})]:
        for L, opt in opts.items():
            for seed in (0, 1, 2):
                for x in np.arange(-12.0, -3.5):
                    rows.append({"rule": rule, "depth": L, "seed": seed, "log2_lr": x,
                                 "value": 0.5 + 0.05 * (x - opt - 0.1 * seed) ** 2})
    result = analyze(pd.DataFrame(rows), n_boot=100)
    filled, labels = [], []
    fill = matplotlib.axes.Axes.fill_between
    legend = matplotlib.axes.Axes.legend
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between",
                        lambda self, *a, **k: filled.append(k.get("color")) or fill(self, *a, **k))
    monkeypatch.setattr(matplotlib.axes.Axes, "legend", lambda self, *a, **k: labels.extend(
        self.get_legend_handles_labels()[1]) or legend(self, *a, **k))
    plot_optimum_vs_size(result, tmp_path / "o.png")
    assert len(filled) == 1
    assert any(lab.startswith("sp") and "off scale" in lab for lab in labels)
    assert not any(lab.startswith("depth_mup") and "off scale" in lab for lab in labels)
