"""deeplimit.transfer: learning-rate transfer experiments on the generic sweep runner (depth-mup spec §11).

The science above :mod:`deeplimit.sweep`: named experiment grids over the real trainer, the objective that
trains one grid point, the long results table, the η̂*/drift analysis and its plots::

    experiments.py   EXPERIMENTS (depth-transfer, width-transfer, …), experiment(), customise(), log2_grid
    grids.py         EXPERIMENT_GRIDS, register_grid, build_grid (what ``sweep create --grid`` builds)
    objectives.py    train_objective (with validate); configs come from deeplimit.train.config_from_point
    demo.py          quadratic: a cheap real LR-transfer problem for demos and tests
    table.py         LONG_COLUMNS, long_table, transfer_results
    analysis.py      analyze, summarize, drift_table, slope_table (the verdict: the slope statistic of
                     statistics.transfer_test), estimate_optimum, fit_trend, paired_difference
    plots.py         plot_loss_vs_lr, plot_optimum_vs_size, plot_analysis
    sweeps.py        create_transfer_sweep, write_transfer_results, analyze_sweep (one call per CLI step)
    optimizers.py    Muon and weight-decay grids (GRIDS), analyze_axis, decay_threshold
    optimizer_verdicts.py  muon_transfer_section: the Muon section's rows on the slope statistic

Names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EXPERIMENTS": "experiments", "experiment": "experiments", "customise": "experiments", "log2_grid": "experiments",
    "EXPERIMENT_TIERS": "experiments",
    "EXPERIMENT_GRIDS": "grids", "register_grid": "grids", "build_grid": "grids",
    "train_objective": "objectives",
    "LONG_COLUMNS": "table", "long_table": "table", "transfer_results": "table",
    "analyze": "analysis", "summarize": "analysis", "drift_table": "analysis", "final_values": "analysis",
    "estimate_optimum": "analysis", "fit_trend": "analysis", "slope_table": "analysis", "TransferAnalysis": "analysis",
    "Trend": "analysis", "paired_difference": "analysis", "PairedDifference": "analysis",
    "drift_interval": "analysis", "per_seed_drifts": "analysis", "SLOPE_MARGIN": "analysis",
    "REGRET_MARGIN": "analysis",
    "plot_loss_vs_lr": "plots", "plot_optimum_vs_size": "plots", "plot_analysis": "plots",
    "create_transfer_sweep": "sweeps", "write_transfer_results": "sweeps", "analyze_sweep": "sweeps",
    "spec_from": "sweeps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"deeplimit.transfer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deeplimit.transfer' has no attribute {name!r}")
