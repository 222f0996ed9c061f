"""What the transfer oracle's exploratory pilot scripts share (``oracle_batch_pilot.py``, ``oracle_width_pilot.py``,
``oracle_lm_pilot.py``): the pilot seeds, running a dict of sweeps into one SQLite file with their wall times,
the one-row-per-run table under a chosen loss, and the provenance written beside the results.

Pilots run on the protocol's PILOT seeds only (0-4): they choose settings, they never decide a claim, and a
confirmation seed that a pilot has seen could no longer confirm anything.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.analysis import final_values
from deeplimit.transfer.sweeps import run_transfer_sweep

LOSSES = ("window_loss", "eval_loss")


def pilot_args(doc: str, out: str, loss: str,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The command line every MLP pilot takes: ``--out`` (default ``out``), ``--workers``, ``--seeds`` (how many
    pilot seeds), ``--loss`` (default ``loss``, one of :data:`LOSSES`) and ``--tiny``; ``extra`` adds a pilot's
    own options to the parser."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if extra is not None:
        extra(ap)
    ap.add_argument("--out", default=out)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="how many pilot seeds (0-4) to run (default 3)")
    ap.add_argument("--loss", default=loss, choices=(loss, *(x for x in LOSSES if x != loss)))
    ap.add_argument("--tiny", action="store_true", help="a tiny design that checks the pipeline, not the law")
    return ap.parse_args()


def pilot_seed_count(n: int) -> int:
    """``n`` checked against the protocol's pilot set (the first ``n`` pilot seeds are run): a number past the
    listed pilot seeds would run seeds that no list names, so it is refused."""
    from deeplimit.protocol import protocol

    listed = len(protocol().seeds["pilot"])
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= listed:
        raise DeeplimitError(f"--seeds {n!r}: a pilot runs 1 to {listed} of the protocol's pilot seeds "
                             f"{protocol().seeds['pilot']}; give a number in that range")
    return n


def spec_seeds(specs: Mapping[str, SweepSpec]) -> set[int]:
    """Every seed the sweeps would run."""
    return {int(s) for spec in specs.values() for s in spec.axes["seed"]}


def check_pilot_only(specs: Mapping[str, SweepSpec]) -> None:
    """Refuse sweeps that would run a seed outside the protocol's pilot set (a confirmation seed, or one past it)."""
    from deeplimit.protocol import protocol

    extra = sorted(spec_seeds(specs) - set(protocol().seeds["pilot"]))
    if extra:
        raise DeeplimitError(f"the pilot's sweeps would run seeds {extra}, outside the pilot set "
                             f"{protocol().seeds['pilot']}; a pilot runs pilot seeds only")


def run_sweeps(specs: Mapping[str, SweepSpec], out: Path, *, prefix: str,
               workers: int) -> tuple[list[pd.DataFrame], dict[str, float]]:
    """Run (or resume) each sweep ``prefix-<key>`` into ``out/sweeps.db``, runs under ``out/<key>``; returns their
    long tables and each sweep's wall seconds (a resumed, finished sweep costs ~0 s)."""
    check_pilot_only(specs)
    storage = f"sqlite:///{(out / 'sweeps.db').resolve()}"
    tables, walls = [], {}
    for key, spec in specs.items():
        t0 = time.perf_counter()
        tables.append(run_transfer_sweep(f"{prefix}-{key}", spec, storage=storage, run_dir=out / key,
                                         workers=workers)[1])
        walls[key] = round(time.perf_counter() - t0, 1)
        print(f"sweep {prefix}-{key}: {len(spec)} runs, {walls[key]:.0f} s", flush=True)
    return tables, walls


def loss_runs(tables: list[pd.DataFrame], loss: str) -> pd.DataFrame:
    """Sweeps' long tables → one row per run with ``loss`` (the metric ``loss`` at the run's end; +∞ for a
    diverged run), ``lr`` = 2^``log2_lr`` and the run's ``status``.

    Built on ``window_loss``, which every run records (a diverged run records no ``eval_loss``: reading that
    metric alone would drop the diverged runs, and an LR grid's diverged edge would look like a missing point)."""
    if loss not in LOSSES:
        raise DeeplimitError(f"--loss {loss!r}: choose one of {LOSSES}")
    frames = []
    for table in tables:
        runs = final_values(table, metric="window_loss")
        if loss != "window_loss":
            other = final_values(table, metric=loss)[["run_id", "value"]].rename(columns={"value": "_other"})
            runs = runs.merge(other, on="run_id", how="left")
            diverged = runs["status"].astype(str).eq("diverged") | ~pd.to_numeric(runs["_other"]).notna()
            runs["value"] = runs["_other"].where(~diverged, math.inf)
            runs = runs.drop(columns="_other").assign(metric=loss)
        frames.append(runs.rename(columns={"value": "loss"}))
    runs = pd.concat(frames, ignore_index=True)
    runs["lr"] = 2.0 ** runs["log2_lr"].astype(float)
    return runs


def run_seconds(runs: pd.DataFrame) -> dict[str, float] | None:
    """The runs' own wall seconds (each run's ``wall_s``, summed over workers): total, mean and largest — the
    per-run cost a design's time is extrapolated from, without the sweeps' start-up."""
    if "wall_s" not in runs.columns:
        return None
    w = pd.to_numeric(runs["wall_s"], errors="coerce").dropna()
    return {"total": round(float(w.sum()), 1), "mean": round(float(w.mean()), 3), "max": round(float(w.max()), 2)}


def provenance() -> dict[str, Any]:
    """The commit the pilot ran at (and whether the work tree had uncommitted changes: the report's own
    :func:`~deeplimit.report.provenance.git_state`), the UTC start time and the machine's load average: evidence
    names its commit, and a timing names the load it was taken under."""
    import os

    from deeplimit.report.provenance import git_state

    state = git_state()
    return {"commit": state["commit"][:7] if state["commit"] else None, "dirty": state["dirty"],
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
