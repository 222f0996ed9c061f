"""LR-transfer sweeps end to end: build a grid, create its sweep, analyse its results (what the CLI calls).

Each function is one step a user takes (``deeplimit sweep create|results|analyze``); the runner underneath is
the generic :mod:`deeplimit.sweep`. :func:`run_transfer_sweep` chains create → launch → status → results the
way the CLI's steps do, for callers that want the whole sweep at once (``deeplimit reproduce``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_save, ensure_dir, read_json
from deeplimit.sweep.create import Sweep, create_sweep, load_sweep
from deeplimit.sweep.grid import SweepSpec
from deeplimit.sweep.launch import launch_workers
from deeplimit.sweep.results import SweepStatus, sweep_status, write_results
from deeplimit.sweep.storage import default_storage, open_storage
from deeplimit.transfer.analysis import TransferAnalysis, analyze
from deeplimit.transfer.table import LEGACY_NAMES, transfer_results

__all__ = ["spec_from", "create_transfer_sweep", "run_transfer_sweep", "write_transfer_results", "analyze_sweep",
           "SweepAnalysis"]


def spec_from(grid: str | None = None, overrides: dict[str, Any] | None = None,
              spec_file: str | os.PathLike[str] | None = None) -> SweepSpec:
    """The spec of a named experiment grid (with ``--set`` overrides) or of a JSON spec file."""
    from deeplimit.transfer.grids import build_grid

    if (grid is None) == (spec_file is None):
        raise DeeplimitError("give exactly one of --grid NAME or --spec FILE.json")
    if grid is not None:
        return build_grid(grid, **(overrides or {}))
    if overrides:
        raise DeeplimitError("--set applies to --grid only; edit the JSON spec file instead")
    data = read_json(spec_file, "spec file")
    if not isinstance(data, dict):
        raise DeeplimitError(f"spec file {spec_file} must hold a JSON object with an 'axes' field")
    return SweepSpec.from_dict(data)


def create_transfer_sweep(name: str, *, grid: str | None = None, overrides: dict[str, Any] | None = None,
                          spec_file: str | os.PathLike[str] | None = None, objective: str | None = None,
                          storage: str | None = None, run_dir: str | os.PathLike[str] = "sweep",
                          spec: SweepSpec | None = None) -> Sweep:
    """Build the spec (:func:`spec_from`, or take ``spec`` as built) and create or resume its sweep; every point
    is validated first."""
    if spec is not None and (grid is not None or spec_file is not None or overrides):
        raise DeeplimitError("give either a built spec or --grid/--spec, not both")
    spec = spec if spec is not None else spec_from(grid, overrides, spec_file)
    spec = _stored_names(spec, name, storage or default_storage(run_dir))
    return create_sweep(name, spec, objective=objective, storage=storage, run_dir=run_dir)


def _stored_names(spec: SweepSpec, name: str, url: str) -> SweepSpec:
    """``spec`` with the names the stored sweep ``name`` uses, if it was stored under names of an older version
    (:data:`~deeplimit.transfer.table.LEGACY_NAMES`: a rule axis called ``preset``). Its run keys name the axis,
    so resuming it under the new name would run every point again; its results read as ``rule`` regardless."""
    try:
        _, stored = load_sweep(open_storage(url, create=False), name, url)
    except DeeplimitError:  # no such sweep yet (or a storage create_sweep will report on)
        return spec
    back = {new: old for old, new in LEGACY_NAMES.items()
            if (old in stored.axes or old in stored.fixed) and (new in spec.axes or new in spec.fixed)}
    if not back:
        return spec
    return replace(spec, axes={back.get(k, k): v for k, v in spec.axes.items()},
                   fixed={back.get(k, k): v for k, v in spec.fixed.items()})


def run_transfer_sweep(name: str, spec: SweepSpec, *, storage: str, run_dir: str | os.PathLike[str],
                       workers: int = 2) -> tuple[SweepStatus, pd.DataFrame]:
    """Create (or resume) sweep ``name`` of ``spec``, run what is left with ``workers`` worker processes (what
    ``deeplimit sweep create`` then ``launch`` do) and return its final status and long results table.

    ``workers=1`` runs its one worker in this process (:func:`deeplimit.sweep.worker.run_worker`, what
    ``deeplimit sweep worker`` does), with the same options a launched worker gets: a worker process would
    import torch and the trainer and load the data again, which costs more than a small sweep's training (a
    caller running many sweeps, like ``deeplimit reproduce --workers 1``, paid it once per sweep). The points,
    their seeds and results are the same; this process's torch threads are set to 1, as a worker's are.

    Raises :class:`KeyboardInterrupt` when the workers were interrupted (the next call resumes), and
    :class:`DeeplimitError` when points are left undone: a result computed from the points that happened to
    finish would look like one from the whole grid. Failed points are re-queued by the next call."""
    create_transfer_sweep(name, spec=spec, storage=storage, run_dir=run_dir)
    if sweep_status(storage, name).left:
        if workers == 1:
            interrupted = _run_here(storage, name, run_dir)
        else:
            interrupted = launch_workers(storage, name, n_workers=workers, run_dir=str(run_dir)).interrupted
        if interrupted:  # Ctrl-C stops the whole run; the next one resumes the sweep
            raise KeyboardInterrupt(f"sweep {name!r} interrupted")
    status = sweep_status(storage, name)
    if status.left:
        raise DeeplimitError(
            f"sweep {name!r} ended with {status.left} of {status.total} points not done ({status}); its verdict "
            f"would rest on part of the grid. Worker logs: {run_dir}. Re-run the same command to resume it "
            "(failed points are re-queued).")
    return status, transfer_results(storage, name)


def _run_here(storage: str, name: str, run_dir: str | os.PathLike[str]) -> bool:
    """One worker in this process, as a launched one runs (its defaults, the objectives this process created the
    sweep with allowed, Optuna quiet: no line per trial); True if it was interrupted."""
    import optuna

    from deeplimit.sweep.trial import trusted_objectives
    from deeplimit.sweep.worker import run_worker

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        report = run_worker(storage, name, run_dir=str(run_dir), allow_objectives=trusted_objectives(storage, name))
    finally:
        optuna.logging.set_verbosity(level)
    return report.interrupted


def write_transfer_results(storage: str, name: str, out: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict]:
    """The long table of sweep ``name`` written to ``out/long.csv`` (and ``.parquet``); returns (table, paths)."""
    frame = transfer_results(storage, name)
    return frame, write_results(frame, out)


@dataclass
class SweepAnalysis:
    """What :func:`analyze_sweep` computed and wrote."""

    analysis: TransferAnalysis
    table: pd.DataFrame
    paths: list[Path] = field(default_factory=list)


def analyze_sweep(storage: str, name: str, out: str | os.PathLike[str], *, group: str | list[str] = "rule",
                  size: str = "depth", metric: str | None = None, n_boot: int = 1000,
                  ylabel: str = "train loss (cross-entropy, nats)") -> SweepAnalysis:
    """η̂* per size, drift and verdict per group (depth-mup spec §11.4) of a sweep; tables and plots into ``out``.

    Writes ``long.csv``, ``summary.csv``, ``drift.csv``, ``loss_vs_lr.png`` and ``optimum_vs_size.png``.
    """
    groups = [group] if isinstance(group, str) else list(group)
    # "preset" is the rule column's old name: the results table of an older sweep reads it as "rule" too
    groups = [LEGACY_NAMES.get(g.strip(), g.strip()) for g in groups if g.strip()]
    if not groups:
        raise DeeplimitError("--group is empty; name the grouping columns, e.g. --group rule")
    _, spec = load_sweep(open_storage(storage, create=False), name, storage)
    frame = transfer_results(storage, name)
    if frame.empty:
        raise DeeplimitError(f"sweep {name!r} has no completed runs yet; run workers first "
                             "(deeplimit sweep launch)")
    missing = [c for c in [*groups, size] if c not in frame.columns]
    if missing:
        raise DeeplimitError(f"the results have no column(s) {missing}; choose --group/--size among the grid's "
                             f"fields {[*spec.axis_names, *spec.fixed]}")
    if size in ("lr", "log2_lr", "seed") or size in groups:
        raise DeeplimitError(f"--size {size} cannot be the model size: the learning rate and the seed are what the "
                             "analysis averages and minimises over, and a group column cannot be the size too; use "
                             "--size depth or --size width")
    if not pd.api.types.is_numeric_dtype(frame[size]) or (pd.to_numeric(frame[size]) <= 0).any():
        raise DeeplimitError(f"--size {size} must be a column of positive numbers (e.g. depth or width)")
    result = analyze(frame, metric=metric or spec.metric, group=groups, size=size, n_boot=n_boot)
    from deeplimit.transfer.plots import plot_analysis

    out_dir = ensure_dir(out, "analysis folder")
    paths = list(write_results(frame, out_dir, "long").values())
    for stem, table in (("summary", result.summary), ("drift", result.drift)):
        paths.append(atomic_save(out_dir / f"{stem}.csv", lambda fh, t=table: t.to_csv(fh, index=False)))
    paths += plot_analysis(result, out_dir, ylabel=ylabel)
    return SweepAnalysis(analysis=result, table=frame, paths=paths)
