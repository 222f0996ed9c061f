"""Local worker processes: start them, show one progress bar across them, stop them cleanly on Ctrl-C.

Separate processes rather than threads: each gets its own interpreter and one BLAS thread, the fastest layout
on the 2-core target (ecosystem spec §7). The storage URL reaches the workers through the environment
(:data:`deeplimit.secrets.STORAGE_ENV`), never their command line, so a password never shows in ``ps``.
Each worker's output goes to ``<run_dir>/logs/worker-<i>.log``; the launching process shows one aggregate
progress bar (points done out of total, with rate and ETA) read from the storage.

Ctrl-C (SIGINT) or SIGTERM of the launching process is passed on to every worker (as SIGTERM; workers run in
their own session): each records its running point as interrupted, queues it again and exits; a second
launch resumes where this one stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deeplimit.errors import DeeplimitError
from deeplimit.io import ensure_dir
from deeplimit.runtime import EXIT_FAILED, EXIT_INTERRUPTED, thread_env
from deeplimit.secrets import STORAGE_ENV
from deeplimit.sweep.create import OBJECTIVE_ATTR, RUN_DIR_ATTR, load_sweep
from deeplimit.sweep.results import SweepStatus, status_of
from deeplimit.sweep.storage import open_storage
from deeplimit.sweep.trial import check_allow_list, require_allowed_objective, sweep_folder, trusted_objectives
from deeplimit.sweep.worker import check_worker_options

__all__ = ["LaunchReport", "worker_command", "worker_env", "spawn_workers", "launch_workers", "watch",
           "progress_bar"]


@dataclass
class LaunchReport:
    """Outcome of :func:`launch_workers`: worker exit codes, the final status, whether it was interrupted."""

    codes: list[int]
    status: SweepStatus
    interrupted: bool = False
    log_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """130 if interrupted; else the first failing worker's code; else 1 if any point failed; else 0."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        bad = [c for c in self.codes if c not in (0, EXIT_FAILED)]
        if bad:
            return bad[0]
        return EXIT_FAILED if self.status.failed or any(self.codes) else 0


def worker_env(storage: str, threads: int | None = 1) -> dict[str, str]:
    """Environment of a worker process: the storage URL (a secret), this interpreter's import path, threads."""
    env = dict(os.environ)
    env[STORAGE_ENV] = storage
    # Children import exactly what this process can import (source checkouts, test helpers).
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + env.get("PYTHONPATH", "").split(os.pathsep)))
    if threads:
        env.update(thread_env(threads))
    return env


def worker_command(name: str, *, heartbeat_interval: int = 5, grace_period: int | None = None,
                   max_retries: int = 2, run_dir: str | os.PathLike[str] | None = None, threads: int | None = 1,
                   n_trials: int | None = None, share: tuple[int, int] | None = None,
                   wait_for_running: bool = True, allow_objectives: Sequence[str] = ()) -> list[str]:
    """The command line of one worker process (``python -P -m deeplimit.sweep.worker …``), without the URL.

    ``-P`` keeps the current folder off the import path: a ``json.py`` or ``numpy.py`` lying in the folder a
    sweep is launched from must not run in every worker. ``PYTHONPATH`` still applies (see :func:`worker_env`).
    """
    cmd = [sys.executable, "-P", "-m", "deeplimit.sweep.worker", "--name", name,
           "--heartbeat-interval", str(heartbeat_interval), "--max-retries", str(max_retries),
           "--threads", str(threads or 0)]
    if grace_period:
        cmd += ["--grace-period", str(grace_period)]
    if run_dir:
        cmd += ["--run-dir", str(run_dir)]
    if n_trials is not None:
        cmd += ["--n-trials", str(n_trials)]
    if share is not None:
        cmd += ["--share", f"{share[0]}/{share[1]}"]
    if not wait_for_running:
        cmd += ["--no-wait"]
    for objective in check_allow_list(allow_objectives):
        cmd += ["--allow-objective", objective]
    return cmd


def spawn_workers(storage: str, name: str, n_workers: int = 2, *, log_dir: str | os.PathLike[str] | None = None,
                  **kwargs: Any) -> list[subprocess.Popen]:
    """Start ``n_workers`` worker processes (worker i gets the share ``(i, n)``) and return them at once.

    ``log_dir``: each worker's stdout and stderr go to ``log_dir/worker-<i>.log`` (default: inherited).
    Keyword arguments as for :func:`worker_command`; an objective this process created the sweep with is
    allowed in the workers too.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise DeeplimitError(f"the number of workers must be a whole number ≥ 1, got {n_workers!r}")
    check_worker_options(**kwargs)
    kwargs["allow_objectives"] = tuple(dict.fromkeys((*check_allow_list(kwargs.get("allow_objectives")),
                                                      *trusted_objectives(storage, name))))
    env = worker_env(storage, kwargs.get("threads", 1))
    procs = []
    logs: list[IO[bytes]] = []
    out = ensure_dir(log_dir, "log folder") if log_dir is not None else None
    try:
        for i in range(n_workers):
            sink: Any = None
            if out is not None:
                sink = open(out / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed when the process ends
                logs.append(sink)
            # Own session: a Ctrl-C in the terminal reaches the launcher only, which passes SIGTERM on, so a
            # worker still importing dies quietly instead of printing a KeyboardInterrupt traceback.
            procs.append(subprocess.Popen(worker_command(name, share=(i, n_workers), **kwargs), env=env,
                                          stdout=sink, stderr=subprocess.STDOUT if sink else None,
                                          start_new_session=True))
    finally:
        for fh in logs:
            fh.close()  # the children hold their own descriptors
    return procs


def progress_bar(total: int, initial: int, *, desc: str, quiet: bool) -> Any:
    """One tqdm bar over grid points (rate and ETA count only the points done since it started)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="pt", disable=quiet, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


def _show(bar: Any, status: SweepStatus) -> None:
    done = status.done + status.failed
    if done > bar.n:
        bar.update(done - bar.n)
    bar.set_postfix_str(f"{status.running} running, {status.diverged} diverged, {status.failed} failed",
                        refresh=True)


def _wait_all(procs: list[subprocess.Popen], seconds: float) -> None:
    """Wait up to ``seconds`` for every worker to exit: a sleep between two progress reads that ends as soon as
    the last worker does (a plain sleep made every launch outlive its workers by half a poll interval on average,
    a cost paid once per sweep by callers that run many small sweeps, such as ``deeplimit reproduce``)."""
    deadline = time.monotonic() + seconds
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to live workers (a clean stop), wait up to ``grace_s``, then SIGKILL any left (their points go
    stale and are retried)."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def launch_workers(storage: str, name: str, n_workers: int = 2, *, timeout: float | None = None,
                   quiet: bool = True, poll_s: float = 1.0, stop_grace_s: float = 30.0,
                   log_dir: str | os.PathLike[str] | None = None,
                   on_status: Callable[[SweepStatus], None] | None = None, **kwargs: Any) -> LaunchReport:
    """Run the sweep with ``n_workers`` local worker processes until no point is left; return a report.

    Args:
        storage, name: the sweep.
        n_workers: worker processes (worker i of n claims every n-th point first).
        timeout: seconds after which the workers are stopped (as by Ctrl-C) and a DeeplimitError is raised.
        quiet: no progress bar (the default for library calls; the CLI shows one).
        poll_s: seconds between reads of the storage for the progress bar.
        stop_grace_s: after Ctrl-C, how long workers get to record their running points before SIGKILL.
        log_dir: worker logs (default ``<run_dir>/logs``).
        on_status: called with each status read (e.g. for a custom display).
        kwargs: worker options of :func:`worker_command` (``heartbeat_interval``, ``max_retries``, ``run_dir``,
            ``threads``, ``grace_period``, ``n_trials``, ``wait_for_running``).

    Ctrl-C (or SIGTERM) stops every worker cleanly and returns a report with ``interrupted=True``; launching
    again resumes. ``report.exit_code`` is what a command line should exit with.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise DeeplimitError(f"the number of workers must be a whole number ≥ 1, got {n_workers!r}")
    check_worker_options(**kwargs)
    st = open_storage(storage, create=False)
    study, spec = load_sweep(st, name, storage)
    # What the workers would refuse is refused here, once, before any process starts.
    require_allowed_objective(study.user_attrs.get(OBJECTIVE_ATTR) or spec.objective, storage, name,
                              kwargs.get("allow_objectives"))
    run_dir = sweep_folder(kwargs.get("run_dir"), study.user_attrs.get(RUN_DIR_ATTR))
    logs = Path(log_dir) if log_dir is not None else run_dir / "logs"
    status = status_of(spec, study.get_trials(deepcopy=False), table=False)
    bar = progress_bar(status.total, status.done + status.failed, desc=name, quiet=quiet)
    procs = spawn_workers(storage, name, n_workers, log_dir=logs, **kwargs)
    deadline = None if timeout is None else time.monotonic() + timeout
    interrupted = timed_out = False
    previous = None
    try:
        # SIGTERM of the launcher (e.g. a job scheduler) behaves like Ctrl-C.
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        while any(p.poll() is None for p in procs):
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            _wait_all(procs, poll_s)
            try:
                status = status_of(spec, study.get_trials(deepcopy=False), table=False)
            except Exception:  # noqa: BLE001 - a display hiccup; the workers report storage failures themselves
                continue
            _show(bar, status)
            if on_status is not None:
                on_status(status)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if interrupted or timed_out or any(p.poll() is None for p in procs):
            bar.set_description_str(f"{name} (stopping workers)")
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C must not leave workers behind
                _stop(procs, stop_grace_s)
        final = status_of(spec, study.get_trials(deepcopy=False))
        _show(bar, final)
        bar.close()
    codes = [int(p.returncode) for p in procs]
    if timed_out:
        raise DeeplimitError(f"workers of sweep {name!r} did not finish within {timeout} s; they were stopped "
                             f"({final}); launch again to resume, or raise the timeout")
    return LaunchReport(codes=codes, status=final, interrupted=interrupted, log_dir=logs)


def watch(storage: str, name: str, *, poll_s: float = 2.0, quiet: bool = False,
          until_finished: bool = True) -> SweepStatus:
    """Show the aggregate progress bar of a sweep run by other processes until it is finished (or Ctrl-C)."""
    st = open_storage(storage, create=False)
    study, spec = load_sweep(st, name, storage)
    status = status_of(spec, study.get_trials(deepcopy=False), table=False)
    bar = progress_bar(status.total, status.done + status.failed, desc=name, quiet=quiet)
    try:
        _show(bar, status)
        while not (until_finished and status.finished):
            time.sleep(poll_s)
            status = status_of(spec, study.get_trials(deepcopy=False), table=False)
            _show(bar, status)
    finally:
        bar.close()
    return status_of(spec, study.get_trials(deepcopy=False))
