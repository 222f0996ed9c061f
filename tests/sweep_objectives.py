"""Objectives used by the sweep tests; imported by dotted path in worker processes.

Each leaves a trace on disk (markers, completion log) so the tests can see what really ran, and where
it was interrupted, independently of what the storage says.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from deeplimit.sweep.trial import TrialContext, TrialResult


def _append(path: os.PathLike[str] | str, line: str) -> None:
    # O_APPEND writes of one short line are atomic across processes.
    with open(path, "a") as fh:
        fh.write(line + "\n")


_calls = 0


def _hold(release: Path, seconds: float) -> None:
    """Sleep ``seconds``, or less: until the file ``release`` exists."""
    end = time.monotonic() + seconds
    while not release.exists() and time.monotonic() < end:
        time.sleep(min(0.02, max(0.0, end - time.monotonic())))


def slow_marked(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """Write a 'started' marker, sleep, log the completion, return a parabola in x.

    A process's first trial sleeps ``first_sleep`` (longer), so a test that kills a worker as soon as its
    first marker appears surely hits it mid-trial even on a loaded machine. That sleep ends early once a file
    ``release`` exists in the sweep folder: a test that killed its victim writes it, so the workers left (and
    those started later) do not sit out the rest of a sleep that was only there to hold the victim. With
    ``hold_from: k`` the process's k-th and later trials are held too (until ``release``, ``hold_s`` at most):
    a test that stops workers there knows how many points were done, however slow the machine.
    """
    global _calls
    _calls += 1
    started = context.sweep_dir / "started"
    started.mkdir(exist_ok=True)
    (started / f"{os.getpid()}-{context.trial_number}").write_text(context.run_key)
    release = context.sweep_dir / "release"
    if _calls == 1:
        _hold(release, float(point.get("first_sleep", 1.0)))
    elif _calls >= int(point.get("hold_from", 0)) > 0:
        _hold(release, float(point.get("hold_s", 60.0)))
    else:
        time.sleep(float(point.get("sleep", 1.0)))
    _append(context.sweep_dir / "completions.log", f"{context.run_key}\t{os.getpid()}")
    x = float(point["x"])
    loss = (x + 1.0) ** 2
    return TrialResult(value=loss, rows=[{"step": 1, "metric": "train_loss", "value": loss}])


def fails_always(point: dict[str, Any], context: TrialContext) -> TrialResult:
    _append(context.sweep_dir / "attempts.log", f"{context.run_key}\t{context.attempt}")
    raise RuntimeError(f"boom at {context.run_key}")


def fails_first_attempt(point: dict[str, Any], context: TrialContext) -> TrialResult:
    _append(context.sweep_dir / "attempts.log", f"{context.run_key}\t{context.attempt}")
    if context.attempt == 1:
        raise RuntimeError("transient failure")
    return TrialResult(value=1.0)


def nan_or_value(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """NaN loss for x > 0 (diverged), else a finite loss; counts calls."""
    _append(context.sweep_dir / "calls.log", context.run_key)
    x = float(point["x"])
    return TrialResult(value=math.nan if x > 0 else 1.0 + x * x,
                       rows=[{"step": 0, "metric": "train_loss", "value": 2.0}])


def returns_float(point: dict[str, Any], context: TrialContext) -> float:
    return float(point["x"]) ** 2


def reports_metric(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """Reports its own 'loss' row (as the trainer reports window_loss); diverged for x > 2."""
    x = float(point["x"])
    status = "diverged" if x > 2 else "ok"
    return TrialResult(value=x, status=status, rows=[{"step": 3, "metric": "loss", "value": x * 10},
                                                    {"step": 3, "metric": "train_loss", "value": x}])


def failed_elsewhere(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """First attempt: another 'worker' fails this trial as stale and queues its retry while it runs."""
    if context.attempt == 1 and not (context.sweep_dir / "failed_once").exists():
        import optuna

        from deeplimit.sweep.create import enqueue_point, load_sweep
        from deeplimit.sweep.storage import open_storage

        (context.sweep_dir / "failed_once").write_text("")
        url = f"sqlite:///{context.sweep_dir / 'sweep.db'}"
        other, _ = load_sweep(open_storage(url), context.study_name, url)
        other.tell(context.trial_number, state=optuna.trial.TrialState.FAIL)
        enqueue_point(other, context.run_key, retry_of=context.trial_number)
    return TrialResult(value=float(point["x"]) ** 2, rows=[{"step": 1, "metric": "train_loss", "value": 1.0}])


def writes_checkpoint(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """Saves a checkpoint of ``kb`` kilobytes into its run directory (atomically), then returns."""
    from deeplimit.io import atomic_save

    atomic_save(context.checkpoint_path, lambda fh: fh.write(b"\0" * int(point.get("kb", 64)) * 1024))
    return TrialResult(value=float(point["x"]))
