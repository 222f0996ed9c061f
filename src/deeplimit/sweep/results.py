"""Where a sweep stands (per grid point) and its tidy results, read from the storage on any machine."""

from __future__ import annotations

import binascii
import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_save, ensure_dir
from deeplimit.secrets import redact_url
from deeplimit.sweep.create import KEY_ATTR, load_sweep
from deeplimit.sweep.grid import SweepSpec
from deeplimit.sweep.storage import open_storage, storage_error
from deeplimit.sweep.trial import STATUSES
from deeplimit.sweep.worker import decode_rows

__all__ = ["SweepStatus", "sweep_status", "status_of", "results_frame", "write_results", "ID_COLUMNS",
           "OBS_COLUMNS"]

ID_COLUMNS = ["experiment", "run_id"]
OBS_COLUMNS = ["step", "metric", "value", "status", "wall_s"]


@dataclass
class SweepStatus:
    """Counts over grid points (not trials) and, with ``table``, one row per point."""

    total: int
    done: int
    diverged: int
    running: int
    waiting: int
    failed: int
    pending: int
    table: pd.DataFrame

    @property
    def left(self) -> int:
        """Points not done: running, waiting, failed or not started."""
        return self.total - self.done

    @property
    def finished(self) -> bool:
        """Nothing runs or waits any more and every point is done or failed for good."""
        return self.running == 0 and self.waiting == 0 and self.pending == 0

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "done": self.done, "diverged": self.diverged, "running": self.running,
                "waiting": self.waiting, "failed": self.failed, "pending": self.pending, "left": self.left}

    def __str__(self) -> str:
        return ("{done}/{total} done ({diverged} diverged), {running} running, {waiting} waiting, "
                "{failed} failed, {pending} not started").format(**self.counts())


def _point_state(trials: Sequence[FrozenTrial]) -> str:
    states = {t.state for t in trials}
    if TrialState.COMPLETE in states:
        return "done"
    if TrialState.RUNNING in states:
        return "running"
    if TrialState.WAITING in states:
        return "waiting"
    if TrialState.FAIL in states:
        return "failed"
    return "pending"


def _check_record(trial: FrozenTrial, ok: bool, what: str) -> None:
    if not ok:
        raise DeeplimitError(f"the sweep's storage holds a damaged trial record (trial {trial.number}: {what}); it was "
                             "changed outside deeplimit: restore the storage from a copy or run the sweep again "
                             "under a new --name")


def status_of(spec: SweepSpec, trials: Sequence[FrozenTrial], *, table: bool = True) -> SweepStatus:
    """:class:`SweepStatus` of ``spec`` from a list of trials (one read of the study)."""
    by_key: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        key = t.user_attrs.get(KEY_ATTR)
        if key is not None:
            _check_record(t, isinstance(key, str), f"run key {str(key)[:60]!r}")
            by_key.setdefault(key, []).append(t)
        _check_record(t, t.user_attrs.get("status", "ok") in STATUSES,
                      f"status {str(t.user_attrs.get('status'))[:60]!r}")
        _check_record(t, isinstance(t.user_attrs.get("error", ""), str), "error text")
    rows: list[dict[str, Any]] = []
    counts = dict.fromkeys(("done", "running", "waiting", "failed", "pending"), 0)
    diverged = 0
    for point in spec.iter_points():
        key = spec.run_key(point)
        ts = by_key.get(key, [])
        state = _point_state(ts)
        counts[state] += 1
        complete = [t for t in ts if t.state == TrialState.COMPLETE]
        status = complete[0].user_attrs.get("status", "ok") if complete else ""
        diverged += status == "diverged"
        if not table:
            continue
        error = ""
        fails = [t for t in ts if t.state == TrialState.FAIL]
        if fails:
            last = fails[-1].user_attrs.get("error")
            error = last.strip().splitlines()[-1] if last else "worker died (stale heartbeat)"
        rows.append({"run_key": key, **point, "state": state, "status": status,
                     "value": complete[0].value if complete else math.nan,
                     "trial": complete[0].number if complete else (ts[-1].number if ts else -1),
                     "attempts": sum(t.state in (TrialState.COMPLETE, TrialState.RUNNING) or
                                     (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))
                                     for t in ts),
                     "last_error": error})
    return SweepStatus(total=len(spec), diverged=diverged, table=pd.DataFrame(rows), **counts)


def read_trials(study: Any, storage: str, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
    """``study.get_trials`` with a storage that fails (damaged journal, lost server) as a one-line error."""
    try:
        return study.get_trials(deepcopy=False, states=states)
    except Exception as exc:  # the database driver's or the journal's own errors, whatever they are
        raise storage_error(exc, storage, opening=False) from None


def sweep_status(storage: str, name: str) -> SweepStatus:
    """Where the sweep stands: per grid point ``done | running | waiting | failed | pending``."""
    study, spec = load_sweep(open_storage(storage, create=False), name, storage)
    try:
        return status_of(spec, read_trials(study, storage))
    except (TypeError, ValueError, AttributeError) as exc:  # a trial's attributes edited outside deeplimit
        raise DeeplimitError(f"sweep {name!r} in storage {redact_url(storage)!r} holds a damaged trial record "
                             f"({type(exc).__name__}: {exc}); it was changed outside deeplimit: restore the "
                             "storage from a copy or run the sweep again under a new --name") from None


def _decode_result(text: Any) -> tuple[str, float, list[dict[str, Any]]]:
    """``(status, wall_s, rows)`` of a trial's ``result`` attribute; ValueError if it is not what workers write."""
    if not isinstance(text, str):
        raise ValueError(f"the result is a {type(text).__name__}, not text")
    try:
        payload = json.loads(text)
        status, wall, rows_z = payload["status"], payload["wall_s"], payload["rows_z"]
        rows = decode_rows(rows_z)
    except (json.JSONDecodeError, KeyError, TypeError, binascii.Error, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
    if status not in STATUSES or not isinstance(wall, int | float) or isinstance(wall, bool):
        raise ValueError(f"status {str(status)[:40]!r} / wall_s {str(wall)[:40]!r} are not a run's")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(isinstance(k, str) for k in r)
                                             for r in rows):
        raise ValueError("its rows are not a list of records")
    return status, float(wall), rows


def results_frame(storage: str, name: str) -> pd.DataFrame:
    """Tidy long table of every completed run: one row per (run, step, metric).

    Columns: ``experiment`` (the sweep name unless the point has its own ``experiment``), ``run_id`` (the run
    key), the point's fields (axes in spec order, then fixed parameters), ``trial``, the rows' own extra keys,
    then ``step, metric, value, status, wall_s``. The objective's value appears as one row with
    ``metric = spec.metric`` at the run's last step, unless the objective's rows already hold that metric (the
    runner never adds a second row for it). Only COMPLETE trials are read.
    """
    study, spec = load_sweep(open_storage(storage, create=False), name, storage)
    points = {spec.run_key(p): p for p in spec.iter_points()}
    records: list[dict[str, Any]] = []
    for t in read_trials(study, storage, (TrialState.COMPLETE,)):
        key = t.user_attrs.get(KEY_ATTR)
        payload_text = t.user_attrs.get("result")
        if not isinstance(key, str) or payload_text is None or key not in points:
            continue
        try:
            status, wall, rows = _decode_result(payload_text)
        except ValueError as exc:
            raise DeeplimitError(f"trial {t.number} ({key}) of sweep {name!r} has a damaged result in storage "
                                 f"{redact_url(storage)!r} ({exc}); it was changed outside deeplimit: restore the "
                                 "storage from a copy or run the sweep again under a new --name") from None
        ident: dict[str, Any] = {"experiment": name, "run_id": key, **spec.full_point(points[key]), "trial": t.number}
        for r in rows:
            records.append({**ident, "status": status, "wall_s": wall, **r})
        if not any(r.get("metric") == spec.metric for r in rows):
            steps = [r["step"] for r in rows if isinstance(r.get("step"), int | float)]
            records.append({**ident, "step": max(steps) if steps else math.nan, "metric": spec.metric,
                            "value": t.value if t.value is not None else math.inf, "status": status,
                            "wall_s": wall})
    if not records:
        return pd.DataFrame(columns=[*ID_COLUMNS, *spec.axis_names, *OBS_COLUMNS])
    frame = pd.DataFrame.from_records(records)
    point_cols = [c for c in (*spec.axis_names, *spec.fixed) if c not in ID_COLUMNS]
    last = [c for c in OBS_COLUMNS if c in frame.columns]
    first = [*ID_COLUMNS, *point_cols]
    middle = [c for c in frame.columns if c not in first and c not in last]
    frame = frame[first + middle + last]
    return frame.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)


def write_results(frame: pd.DataFrame, out_dir: str | os.PathLike[str], stem: str = "long") -> dict[str, Path]:
    """Write ``stem.csv`` (always) and ``stem.parquet`` (when pyarrow is installed), each atomically."""
    out = ensure_dir(out_dir, "results folder")
    paths = {"csv": atomic_save(out / f"{stem}.csv", lambda fh: frame.to_csv(fh, index=False))}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    # Mixed-type object columns (e.g. a point field that is str for some runs) break Parquet: cast them.
    pq = frame.copy()
    for col in pq.columns:
        if pq[col].dtype == object:
            kinds = {type(v) for v in pq[col].dropna()}
            if len(kinds) > 1:
                pq[col] = pq[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    paths["parquet"] = atomic_save(out / f"{stem}.parquet", lambda fh: pq.to_parquet(fh, index=False))
    return paths

