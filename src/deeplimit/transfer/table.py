"""The long results table of an LR-transfer sweep (ecosystem spec §5, depth-mup spec §11.8).

:func:`deeplimit.sweep.results_frame` gives a generic tidy table (identifying columns, point fields, then
``step, metric, value, status, wall_s``). Here it gets the transfer vocabulary: the identifying columns in
the spec's order and both ``lr`` and ``log2_lr`` (filled from each other when a grid sweeps only one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deeplimit.sweep.results import OBS_COLUMNS, results_frame

__all__ = ["LONG_COLUMNS", "LEGACY_NAMES", "long_table", "transfer_results"]

# Identifying columns in the order of ecosystem spec §5 / depth-mup spec §11.8; any other point field follows
# them, then the observation columns.
LONG_COLUMNS = [
    "experiment", "run_id", "rule", "alpha", "gamma", "width", "depth", "base_width", "base_depth",
    "block_depth", "activation", "train_io", "optimizer", "lr", "log2_lr", "seed",
]


# Columns of sweeps stored by older versions → today's name: a sweep created when the rule axis was called
# "preset" reads as one whose axis is "rule" (the stored points keep their names; see transfer.objectives).
LEGACY_NAMES = {"preset": "rule"}


def long_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (from :func:`~deeplimit.sweep.results_frame`) with ``lr``/``log2_lr``, legacy column names
    renamed (:data:`LEGACY_NAMES`) and the spec's column order."""
    out = frame.rename(columns={old: new for old, new in LEGACY_NAMES.items() if new not in frame.columns})
    if "lr" in out.columns and "log2_lr" not in out.columns:
        out["log2_lr"] = np.log2(pd.to_numeric(out["lr"], errors="coerce").astype(float))
    elif "log2_lr" in out.columns and "lr" not in out.columns:
        out["lr"] = np.exp2(pd.to_numeric(out["log2_lr"], errors="coerce").astype(float))
    first = [c for c in LONG_COLUMNS if c in out.columns]
    last = [c for c in OBS_COLUMNS if c in out.columns]
    middle = [c for c in out.columns if c not in first and c not in last]
    return out[first + middle + last]


def transfer_results(storage: str, name: str) -> pd.DataFrame:
    """The long table of sweep ``name``: :func:`~deeplimit.sweep.results_frame` then :func:`long_table`."""
    return long_table(results_frame(storage, name))
