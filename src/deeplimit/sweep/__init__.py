"""deeplimit.sweep: a generic runner of fixed grids on Optuna (public API only), kill-safe and exactly once.

It knows grids, trials, storages, workers and results, not what the axes mean: the LR-transfer science built
on it lives in :mod:`deeplimit.transfer`. Modules, one job each::

    grid.py      SweepSpec (axes × fixed parameters, run keys)
    trial.py     TrialResult, TrialContext, load_objective: the contract with an objective
    storage.py   open_storage, default_storage, resolve_storage: SQLite, PostgreSQL, journal files
    create.py    create_sweep: validate every point, store the spec
    worker.py    run_worker: the loop (study.optimize, heartbeats, retries, de-duplication)
    launch.py    launch_workers, spawn_workers, watch: local processes with one progress bar
    results.py   sweep_status, results_frame, write_results
    slurm.py     submit_workers: Slurm job arrays of workers through submitit
    postgres.py  start_cluster, stop_cluster: a private PostgreSQL server for local use and tests

Names are imported lazily, so ``import deeplimit.sweep`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepSpec": "grid",
    "TrialResult": "trial", "TrialContext": "trial", "load_objective": "trial",
    "open_storage": "storage", "default_storage": "storage", "resolve_storage": "storage",
    "Sweep": "create", "create_sweep": "create",
    "WorkerReport": "worker", "run_worker": "worker",
    "LaunchReport": "launch", "launch_workers": "launch", "spawn_workers": "launch", "watch": "launch",
    "SweepStatus": "results", "sweep_status": "results", "results_frame": "results", "write_results": "results",
    "submit_workers": "slurm",
    "start_cluster": "postgres", "stop_cluster": "postgres",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"deeplimit.sweep.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deeplimit.sweep' has no attribute {name!r}")
