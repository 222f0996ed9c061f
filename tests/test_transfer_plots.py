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
    for preset, k in [("depth_mup", 0.0), ("sp", -1.0)]:
        for L in (2, 8, 32):
            opt = -8 + k * math.log2(L / 2)
            for seed in (0, 1):
                for x in np.arange(-12.0, -4.5):
                    v = 0.5 + 0.05 * (x - opt) ** 2 + 0.01 * seed
                    rows.append({"preset": preset, "depth": L, "seed": seed, "log2_lr": x,
                                 "value": math.inf if (preset == "sp" and x > -7) else v})
    result = analyze(pd.DataFrame(rows), n_boot=100)
    paths = plot_analysis(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss_vs_lr.png", "optimum_vs_size.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
