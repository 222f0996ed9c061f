"""deeplimit.sweep: fixed-budget LR-transfer sweeps on Optuna, tidy results, transfer analysis, plots.

Public API (imported lazily, so ``import deeplimit.sweep`` stays cheap)::

    SweepSpec, log2_grid                                  # grid.py
    TrialResult, TrialContext, create_sweep, run_worker,  # engine.py
    launch_workers, sweep_status, results_frame, write_results, open_storage
    analyze, summarize, drift_table, estimate_optimum, fit_trend, verdict   # analysis.py
    plot_loss_vs_lr, plot_optimum_vs_size, plot_analysis                     # plots.py
    PRESETS, register_preset                                                 # presets.py
    start_cluster, stop_cluster                                              # postgres.py
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepSpec": "grid", "Grid": "grid", "log2_grid": "grid",
    "TrialResult": "engine", "TrialContext": "engine", "create_sweep": "engine", "run_worker": "engine",
    "launch_workers": "engine", "spawn_workers": "engine", "sweep_status": "engine",
    "results_frame": "engine", "write_results": "engine", "open_storage": "engine",
    "analyze": "analysis", "summarize": "analysis", "drift_table": "analysis", "final_values": "analysis",
    "estimate_optimum": "analysis", "fit_trend": "analysis", "verdict": "analysis",
    "TransferAnalysis": "analysis", "Trend": "analysis",
    "plot_loss_vs_lr": "plots", "plot_optimum_vs_size": "plots", "plot_analysis": "plots",
    "PRESETS": "presets", "register_preset": "presets", "build_preset": "presets",
    "start_cluster": "postgres", "stop_cluster": "postgres",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"deeplimit.sweep.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deeplimit.sweep' has no attribute {name!r}")
