"""The worker loop: run grid points through ``study.optimize`` until none is left.

Each trial of a worker is one ``study.optimize(n_trials=1)`` call, so Optuna itself pops queued trials,
beats the heartbeat of the running one, fails stale trials of dead workers before every trial and records
the result. The objective handed to Optuna (:meth:`_Worker.objective`) adds the grid bookkeeping:

* **Which point.** A trial popped from the queue (a retry) carries its run key; a fresh trial claims a grid
  point no trial has touched yet, from this worker's share first (worker i of n prefers every n-th point).
* **Exactly once.** After claiming, the trial reads the study again and steps aside (PRUNED, ``skipped``)
  if another trial of the same point is running or complete. Both rivals write their claim before they
  read, so the later reader always sees the earlier one; if both see each other, both step aside and the
  point is claimed afresh. A trial failed as stale can no longer be completed (Optuna refuses to tell a
  finished trial), so a late result from a worker thought dead is refused, never counted twice.
* **Dead workers.** On RDB storages Optuna's heartbeat (``heartbeat_interval``, ``grace_period``) fails a
  silent trial and our stale-trial callback queues its retry. The runner also keeps its own sign of life, an
  ``alive_at`` stamp the running trial refreshes every interval (a user attribute, so it works on every
  storage): on journal storages, which have no Optuna heartbeats, a trial whose stamp is older than the grace
  period is failed by the next worker that looks; on RDB storages the stamp is only a backstop (twice the
  grace period) for a worker killed between its claim and the heartbeat thread's first beat. A worker killed
  between Optuna's ask and the claim leaves a trial with no claim, failed after the grace period (and
  re-queued if it was a retry). A worker killed after it failed a trial but before it queued the retry leaves a
  failed point with retries left: any worker queues it after the grace period (:meth:`_Worker.heal`).
* **Failures.** An exception in the objective is recorded (traceback in ``error``) and retried at most
  ``max_retries`` times per point, counting deaths and exceptions together. Ctrl-C or SIGTERM stop the
  worker cleanly: the running trial closes as PRUNED with ``interrupted`` set (not an attempt), its point is
  queued again, and the objective's own checkpoints in its run directory make the resumed run continue.
* **Diverged runs** are COMPLETE trials with ``status = "diverged"`` and value ``+inf``.

Results (rows, compressed) live in the trial's ``result`` user attribute, written just before the trial is
told COMPLETE; only COMPLETE trials are ever read as results.

``python -m deeplimit.sweep.worker --name NAME`` runs one worker; the storage URL comes from
``--storage`` or, so that no password shows in ``ps``, from ``$DEEPLIMIT_STORAGE_URL``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from deeplimit.errors import DeeplimitError
from deeplimit.runtime import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, set_threads
from deeplimit.sweep.create import KEY_ATTR, OBJECTIVE_ATTR, RUN_DIR_ATTR, enqueue_point, load_sweep
from deeplimit.sweep.storage import has_heartbeats, open_storage, resolve_storage, storage_error
from deeplimit.sweep.trial import (
    STATUSES,
    TrialContext,
    TrialResult,
    check_allow_list,
    load_objective,
    point_dir,
    require_allowed_objective,
    sweep_folder,
)

__all__ = ["WorkerReport", "run_worker", "check_worker_options", "add_worker_arguments", "worker_kwargs", "main",
           "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]

log = logging.getLogger("deeplimit.sweep")

CLAIM_ATTR = "worker"  # written by the trial that runs the point, once it has a heartbeat
ALIVE_ATTR = "alive_at"  # wall-clock time of the running trial's last sign of life


@dataclass
class WorkerReport:
    """What one worker did. ``gave_up``: points whose last retry failed in this worker."""

    trials: int = 0
    completed: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    gave_up: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    objective_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.gave_up else 0


def _json_default(x: Any) -> Any:
    # numpy / torch scalars and paths in rows or info: numbers as numbers, anything else as text.
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    raw = json.dumps([dict(r) for r in rows], default=_json_default).encode()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode_rows(text: str) -> list[dict[str, Any]]:
    return json.loads(zlib.decompress(base64.b64decode(text)))


class _Interrupted(Exception):
    """Raised inside the objective when a stop was requested before it started training."""


class _View:
    """One read of the study: trials by grid point, and what is queued or running."""

    def __init__(self, trials: Sequence[FrozenTrial]) -> None:
        self.trials = trials
        self.by_key: dict[str, list[FrozenTrial]] = {}
        for t in trials:
            key = t.user_attrs.get(KEY_ATTR)
            if key is not None:
                self.by_key.setdefault(key, []).append(t)
        self.waiting = sum(t.state == TrialState.WAITING for t in trials)
        self.running = [t for t in trials if t.state == TrialState.RUNNING]

    def fresh(self, keys: Sequence[str]) -> list[str]:
        """Points no trial has touched, except trials that stepped aside (PRUNED)."""
        return [k for k in keys if all(t.state == TrialState.PRUNED for t in self.by_key.get(k, ()))]

    def failures(self, key: str, exclude: int | None = None, closing: int | None = None) -> int:
        """Attempts of ``key`` that failed (interruptions are not attempts). ``closing``: the trial that queued
        the retry being counted for; a failing trial queues its retry before it is closed as failed, so while it
        still reads RUNNING it is a failure all the same (else the retry, popped at once by another worker,
        would count one attempt too few — and a point whose first attempt fails would fail its "first" twice)."""
        return sum(t.number != exclude and not t.user_attrs.get("interrupted")
                   and (t.state == TrialState.FAIL or (t.number == closing and t.state == TrialState.RUNNING))
                   for t in self.by_key.get(key, ()))


class _Lease:
    """Refreshes the ``alive_at`` stamp of a running trial every ``interval`` s.

    A failed write is logged and retried at the next interval: one hiccup must not make a live trial look dead.
    """

    def __init__(self, trial: optuna.Trial, interval: float | None) -> None:
        self.trial, self.interval = trial, interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Lease:
        if self.interval:
            self.thread = threading.Thread(target=self._run, name="deeplimit-lease", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        assert self.interval
        while not self.stop.wait(self.interval):
            try:
                self.trial.set_user_attr(ALIVE_ATTR, time.time())
            except Exception as exc:  # keep beating: the next one may succeed
                log.warning("liveness stamp of trial %d failed: %s", self.trial.number, exc)


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def check_worker_options(*, heartbeat_interval: int = 5, grace_period: int | None = None, max_retries: int = 2,
                         threads: int | None = 1, n_trials: int | None = None,
                         share: tuple[int, int] | None = None, **_: Any) -> None:
    """Refuse worker options that cannot work, before any process starts (each error names the fix)."""
    if not _whole(heartbeat_interval, 1):
        raise DeeplimitError(f"heartbeat interval must be a whole number of seconds ≥ 1, got {heartbeat_interval!r}; "
                             "without heartbeats a killed worker's point would stay 'running' for ever")
    if grace_period is not None and not (_whole(grace_period, 1) and grace_period > heartbeat_interval):
        raise DeeplimitError(f"grace period must be a whole number of seconds above the heartbeat interval "
                             f"({heartbeat_interval} s), got {grace_period!r}; e.g. --grace-period "
                             f"{3 * heartbeat_interval}")
    if not _whole(max_retries, 0):
        raise DeeplimitError(f"max_retries must be a whole number ≥ 0, got {max_retries!r}")
    if threads is not None and not _whole(threads, 0):
        raise DeeplimitError(f"threads must be a whole number ≥ 0 (0: torch's default), got {threads!r}")
    if n_trials is not None and not _whole(n_trials, 1):
        raise DeeplimitError(f"n_trials must be a whole number ≥ 1, got {n_trials!r}")
    if share is not None and not (isinstance(share, tuple) and len(share) == 2 and _whole(share[1], 1)
                                  and _whole(share[0], 0) and share[0] < share[1]):
        raise DeeplimitError(f"share must be (i, n) with 0 <= i < n, got {share!r}")


class _Worker:
    def __init__(self, url: str, name: str, *, heartbeat_interval: int, grace_period: int | None,
                 max_retries: int, run_dir: str | os.PathLike[str] | None, share: tuple[int, int] | None,
                 seed: int, allow_objectives: Sequence[str] = ()) -> None:
        check_worker_options(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                             max_retries=max_retries, share=share)
        self.url, self.name, self.max_retries = url, name, max_retries
        self.interval = heartbeat_interval
        self.grace = grace_period or 2 * heartbeat_interval
        self.storage = open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                    stale_trial_callback=self.on_stale, create=False)
        self.heartbeats = has_heartbeats(self.storage, heartbeat_interval)
        self.study, self.spec = load_sweep(self.storage, name, url)
        self.objective_path = self.study.user_attrs.get(OBJECTIVE_ATTR) or self.spec.objective
        # The storage names the code to run and the folder to write in: both are checked before either is used.
        require_allowed_objective(self.objective_path, url, name, allow_objectives)
        self.sweep_dir = sweep_folder(run_dir, self.study.user_attrs.get(RUN_DIR_ATTR))
        self.fn = load_objective(self.objective_path)
        self.points = {self.spec.run_key(p): p for p in self.spec.iter_points()}
        self.keys = list(self.points)
        self.rng = random.Random(seed)
        self.mine: set[str] = set()
        if share is not None:
            i, n = share
            self.mine = {k for j, k in enumerate(self.keys) if j % n == i}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.report = WorkerReport()
        self.stop_requested = False
        self.in_objective = False
        self.current: int | None = None  # number of the trial this worker is running
        self.last_view: _View | None = None
        self.races = 0  # consecutive ask() races lost (older Optuna, see _one_trial)
        self.outcome = ""
        self.next_due = math.inf  # wall-clock time a trial left running or unhealed may next need this worker
        self.poll = 1.0  # seconds between looks while waiting (set by run)

    # -- reading ---------------------------------------------------------------------------------------
    def view(self) -> _View:
        return _View(self.study.get_trials(deepcopy=False))

    def _reload_spec(self) -> None:
        _, self.spec = load_sweep(self.storage, self.name, self.url)
        self.points = {self.spec.run_key(p): p for p in self.spec.iter_points()}
        self.keys = list(self.points)

    def pick(self, view: _View) -> str | None:
        fresh = view.fresh(self.keys)
        own = [k for k in fresh if k in self.mine]
        pool = own or fresh
        return self.rng.choice(pool) if pool else None

    # -- retries and dead trials -----------------------------------------------------------------------
    def retry(self, trial: FrozenTrial) -> None:
        """Queue another attempt of ``trial``'s point if its budget allows (after its trial failed)."""
        key = trial.user_attrs.get(KEY_ATTR)
        if key is None:
            return  # died before it claimed a point: nothing to retry
        view = self.view()  # read after the trial was failed, so it counts itself
        base = int(trial.user_attrs.get("fail_base", 0))
        used = view.failures(key)
        if trial.user_attrs.get("interrupted") or used - base <= self.max_retries:
            enqueue_point(self.study, key, fail_base=base, retry_of=trial.number)
        else:
            log.error("point %s failed %d times; retries exhausted (%d), recorded as failed", key, used - base,
                      self.max_retries)

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's heartbeat-stale callback: the trial was just failed as stale; queue its retry."""
        log.warning("trial %d (%s) stopped beating (worker died?); failed as stale", trial.number,
                    trial.user_attrs.get(KEY_ATTR, "no point yet"))
        self.retry(trial)

    def _due(self, at: float, now: float) -> None:
        """Note that something may need this worker at wall-clock time ``at`` (a wake-up for the waiting loop)."""
        if at > now:
            self.next_due = min(self.next_due, at)

    def reap(self, view: _View) -> int:
        """Fail RUNNING trials of dead workers that Optuna's heartbeat cannot see (see the module doc); return
        how many were failed (their retries are queued: the caller reads the study again)."""
        now = time.time()
        reaped = 0
        for t in view.running:
            if t.number == self.current:
                continue
            claimed = CLAIM_ATTR in t.user_attrs
            start = t.datetime_start.timestamp() if t.datetime_start else now
            last = float(t.user_attrs.get(ALIVE_ATTR, start)) if claimed else start
            # With Optuna's heartbeats a claimed trial is theirs to fail; the stamp is only a backstop for a
            # worker killed between its claim and the heartbeat thread's first beat.
            limit = 2 * self.grace if claimed and self.heartbeats else self.grace
            if now - last <= limit:
                # Wake when this trial may be failed: by us, or (its heartbeats beat with the stamp) by Optuna.
                self._due(last + limit, now)
                if claimed and self.heartbeats:
                    # Past the grace period, Optuna fails it at the first look after its last heartbeat (which
                    # SQLite stores to the whole second) ages past the grace period: look four times a poll.
                    self._due(last + self.grace if now < last + self.grace else now + self.poll / 4, now)
                continue
            reason = ("worker died before it claimed a point" if not claimed else
                      f"worker {t.user_attrs.get(CLAIM_ATTR)} gave no sign of life for {now - last:.0f} s")
            try:
                self.study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # UpdateFinishedTrialError (a RuntimeError) in Optuna ≥ 4.x
                continue  # finished meanwhile, or another worker reaped it first
            log.warning("trial %d (%s): %s; failed", t.number, t.user_attrs.get(KEY_ATTR, "-"), reason)
            self.retry(t)
            reaped += 1
        return reaped

    def heal(self, view: _View) -> tuple[int, int]:
        """Queue the retry of failed points whose retry was never queued; return (queued, still waiting).

        The worker that fails a trial (its own, a stale one, a dead one) queues the retry right after; if that
        worker is killed in between, the point would stay failed with retries left. Any worker queues it once
        the failure is older than the grace period (until then it may still be queued by its owner).
        """
        queued = waiting = 0
        now = time.time()
        for key, trials in view.by_key.items():
            states = {t.state for t in trials}
            if TrialState.FAIL not in states or states & {TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING}:
                continue
            last = max((t for t in trials if t.state == TrialState.FAIL), key=lambda t: t.number)
            base = int(last.user_attrs.get("fail_base", 0))
            if last.user_attrs.get("gave_up") or view.failures(key) - base > self.max_retries:
                continue  # failed for good (create again re-queues it)
            done = last.datetime_complete.timestamp() if last.datetime_complete else now
            if now - done <= self.grace:
                waiting += 1
                self._due(done + self.grace, now)
                continue
            log.warning("point %s failed in trial %d and no retry was queued (its worker died?); queuing it", key,
                        last.number)
            enqueue_point(self.study, key, fail_base=base, retry_of=last.number)
            queued += 1
        return queued, waiting

    # -- the objective handed to Optuna ------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float:
        self.current, self.outcome = trial.number, "failed"
        key = trial.user_attrs.get(KEY_ATTR)
        if key is None:
            # The loop's read of a moment ago is fresh enough: a rival claim made since is caught below.
            key = self.pick(self.last_view or self.view())
            if key is None:
                trial.set_user_attr("skipped", "no grid point left when this trial started")
                self.outcome = "skipped"
                raise optuna.TrialPruned()
            trial.set_user_attr(KEY_ATTR, key)
        trial.set_user_attr(CLAIM_ATTR, self.worker_id)
        view = self.view()
        retry_of = trial.user_attrs.get("retry_of")
        for t in view.by_key.get(key, ()):
            if t.number == trial.number:
                continue
            state = t.state
            if state == TrialState.RUNNING and t.number == retry_of:
                continue  # the trial that queued this retry is being closed as failed
            if state in (TrialState.COMPLETE, TrialState.RUNNING):
                trial.set_user_attr("skipped", f"duplicate: {key} is {state.name.lower()} in trial {t.number}")
                self.outcome = "skipped"
                raise optuna.TrialPruned()
        if key not in self.points:
            self._reload_spec()  # the sweep was extended after this worker started
        if key not in self.points:
            raise DeeplimitError(f"run key {key!r} is not a point of the sweep's spec; the study was modified "
                                 "outside deeplimit")
        point = self.spec.full_point(self.points[key])
        attempt = (view.failures(key, exclude=trial.number, closing=retry_of)
                   - int(trial.user_attrs.get("fail_base", 0)) + 1)
        t0 = time.perf_counter()
        try:
            ctx = TrialContext(run_dir=point_dir(self.sweep_dir, self.name, key, self.objective_path, point),
                               sweep_dir=self.sweep_dir, study_name=self.name, run_key=key,
                               trial_number=trial.number, attempt=attempt, point=dict(self.points[key]))
            if self.stop_requested:
                raise _Interrupted()
            self.in_objective = True
            with _Lease(trial, self.interval):
                result = self.fn(dict(point), ctx)
            self.in_objective = False
            if not isinstance(result, TrialResult):
                if isinstance(result, int | float) and not isinstance(result, bool):
                    result = TrialResult(value=float(result))
                else:
                    raise DeeplimitError(f"objective returned {type(result).__name__}; return a TrialResult "
                                         "(or a float)")
        except BaseException as exc:
            self.in_objective = False
            self.report.objective_s += time.perf_counter() - t0
            self._record_failure(trial, key, attempt, exc)
            if isinstance(exc, KeyboardInterrupt | _Interrupted):
                # An interruption is not a failure: the trial closes as PRUNED (no traceback in the log, not
                # an attempt) and its point is already queued again.
                self.outcome = "interrupted"
                raise optuna.TrialPruned("interrupted") from None
            raise
        wall = time.perf_counter() - t0
        self.report.objective_s += wall
        payload = {"status": result.status, "wall_s": wall, "worker": self.worker_id, "attempt": attempt,
                   "info": result.info, "rows_z": encode_rows(result.rows)}
        trial.set_user_attr("result", json.dumps(payload, default=_json_default))
        trial.set_user_attr("status", result.status)
        self.outcome = result.status
        return result.value

    def _record_failure(self, trial: optuna.Trial, key: str, attempt: int, exc: BaseException) -> None:
        interrupted = isinstance(exc, KeyboardInterrupt | _Interrupted)
        error = f"worker {self.worker_id}\n" + (
            "interrupted (Ctrl-C or SIGTERM); queued again" if interrupted else traceback.format_exc()[-8000:])
        try:
            trial.set_user_attr("error", error)
            if interrupted:
                trial.set_user_attr("interrupted", True)
            # Queued before this trial is closed: a worker killed in between leaves this trial RUNNING, to be
            # failed as stale (its second retry then steps aside as a duplicate), never a point without a retry.
            if interrupted or attempt <= self.max_retries:
                enqueue_point(self.study, key, fail_base=int(trial.user_attrs.get("fail_base", 0)),
                              retry_of=trial.number)
                if not interrupted:
                    log.warning("trial %d (%s) raised %r; retry %d of %d queued", trial.number, key, exc, attempt,
                                self.max_retries)
            else:
                trial.set_user_attr("gave_up", True)
                self.report.gave_up += 1
                log.error("trial %d (%s) raised %r; retries exhausted (%d), recorded as failed", trial.number,
                          key, exc, self.max_retries)
        except Exception as store_exc:  # the storage itself is failing: the trial goes stale and is retried
            log.error("could not record the failure of trial %d: %s", trial.number, store_exc)

    # -- signals -----------------------------------------------------------------------------------------
    def on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_requested = True
        if self.in_objective:
            self.in_objective = False
            raise KeyboardInterrupt

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self, n_trials: int | None, wait_for_running: bool, poll: float) -> WorkerReport:
        report = self.report
        self.poll = poll
        t_start = time.perf_counter()
        while not self.stop_requested and (n_trials is None or report.trials < n_trials):
            view = self.last_view = self.view()
            self.next_due = math.inf
            reaped = self.reap(view)
            healed, unhealed = self.heal(view)
            if reaped or healed:
                continue  # read again: the queue changed (else the reaped trial's retry waited a whole poll)
            if view.waiting or view.fresh(self.keys):
                self._one_trial()
                continue
            if wait_for_running and (view.running or unhealed):
                # Other workers' trials may still die and come back as retries: keep watching.
                if self.heartbeats:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(self.study)
                # Sleep until the next look is due: a poll at most, less when a dead trial or an unqueued retry
                # comes due sooner (a whole poll late, every recovery waited up to one more second).
                time.sleep(max(0.01, min(poll, self.next_due + 0.01 - time.time())))
                continue
            break
        report.wall_s = time.perf_counter() - t_start
        return report

    def _one_trial(self) -> None:
        self.current, self.outcome = None, ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats, Optuna < 4
                self.study.optimize(self.objective, n_trials=1, catch=(Exception,), gc_after_trial=False,
                                    show_progress_bar=False)
        except KeyboardInterrupt:
            self.report.interrupted, self.stop_requested = True, True
            self.outcome = "interrupted"
        except Exception as exc:
            if self.current is None and isinstance(exc, RuntimeError):
                # Optuna < 5 lets ask() fail when the queued trial it picked was finished by another worker
                # meanwhile (it lists WAITING trials, then claims one): nothing happened here; read again.
                self.races += 1
                if self.races > 20:
                    raise storage_error(exc, self.url, opening=False) from None
                log.debug("ask() lost a race for a queued trial (%s); trying again", exc)
                return
            if self.current is None or not self._refused(self.current):
                raise storage_error(exc, self.url, opening=False) from None
            # Our heartbeat was late (machine overloaded, process stopped) and another worker declared this
            # trial dead: it is FAIL, its retry is queued, and our result is refused. Nothing is lost.
            self.report.refused += 1
            self.outcome = "refused"
            log.warning("trial %d finished elsewhere as stale (heartbeat later than the grace period); its "
                        "retry runs instead; raise --grace-period on loaded machines", self.current)
        self.races = 0
        if self.current is None:
            return
        report = self.report
        report.trials += 1
        report.completed += self.outcome in STATUSES
        report.diverged += self.outcome == "diverged"
        report.failed += self.outcome == "failed"
        report.skipped += self.outcome == "skipped"

    def _refused(self, number: int) -> bool:
        # Read the storage itself, not the study's cache (older Optuna caches the trials this process runs).
        try:
            study_id = self.storage.get_study_id_from_name(self.name)
            failed = self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
            return any(t.number == number for t in failed)
        except Exception:
            return False


def run_worker(storage: str, name: str, n_trials: int | None = None, *, heartbeat_interval: int = 5,
               grace_period: int | None = None, max_retries: int = 2, run_dir: str | None = None,
               threads: int | None = 1, wait_for_running: bool = True, poll_interval: float | None = None,
               share: tuple[int, int] | None = None, handle_signals: bool = True,
               allow_objectives: Sequence[str] = ()) -> WorkerReport:
    """Run grid points of sweep ``name`` until none is left (or ``n_trials`` trials were run).

    Args:
        storage: storage URL (see :func:`deeplimit.sweep.open_storage`).
        name: sweep name.
        n_trials: stop after this many trials (None: until every point is done or failed).
        heartbeat_interval: seconds (≥ 1) between heartbeats of the running trial.
        grace_period: seconds without a heartbeat after which a trial counts as dead (default 2× interval).
        max_retries: retries of a grid point whose worker died or whose objective raised.
        run_dir: where per-point directories live; defaults to the directory given at creation.
        threads: compute threads of the objective (:func:`deeplimit.runtime.set_threads`; 1 on the 2-core
            target; None: leave).
        wait_for_running: when nothing is left to start but other trials still run, keep watching so that a
            dead worker's trial is retried here instead of being left behind.
        poll_interval: seconds between looks while waiting (default: min(1 s, heartbeat interval)); a look comes
            sooner when a dead trial or a retry never queued is due, and every quarter of it while a trial
            whose heartbeat may be stale is still running.
        share: ``(i, n)`` for worker i of n started together: it claims every n-th point first.
        handle_signals: turn SIGINT/SIGTERM into a clean stop (main thread only): the running point is
            recorded as interrupted and queued again; ``report.interrupted`` is then True.
        allow_objectives: user objectives (``'package.module:function'``) this worker may run besides
            deeplimit's own; the storage names the objective, and whoever can write it must not choose the code
            (see docs/sweeps.md, "Trust").
    """
    check_worker_options(heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retries=max_retries,
                         threads=threads, n_trials=n_trials, share=share)
    allow = check_allow_list(allow_objectives)
    set_threads(threads)  # the environment first: a torch the objective imports starts with it
    try:
        worker = _Worker(storage, name, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                         max_retries=max_retries, run_dir=run_dir, share=share, seed=os.getpid() ^ time.time_ns(),
                         allow_objectives=allow)
    except KeyboardInterrupt:
        return WorkerReport(interrupted=True)
    set_threads(threads)  # the objective's module may just have imported torch
    poll = poll_interval or min(1.0, float(heartbeat_interval))
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, worker.on_signal)
    try:
        report = worker.run(n_trials, wait_for_running, poll)
    except KeyboardInterrupt:
        worker.report.interrupted = True
        report = worker.report
    except DeeplimitError:
        raise
    except Exception as exc:  # the loop itself only reads and writes the storage
        raise storage_error(exc, storage, opening=False) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if worker.stop_requested:
        report.interrupted = True
    return report


# ------------------------------------------------------------------------------------------------
# Command line of one worker process
# ------------------------------------------------------------------------------------------------
def _int_at_least(low: int, example: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; e.g. {example}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}; e.g. {example}")
        return value

    return parse


def _share(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= I < N, e.g. 1/4")
    return i, n


def add_worker_arguments(parser: argparse.ArgumentParser, *, share: bool = True) -> None:
    """Options shared by ``python -m deeplimit.sweep.worker``, ``deeplimit sweep worker`` and ``… launch``."""
    parser.add_argument("--n-trials", type=_int_at_least(1, "--n-trials 10"), default=None,
                        help="stop after this many trials (default: until no point is left)")
    parser.add_argument("--heartbeat-interval", type=_int_at_least(1, "--heartbeat-interval 5"), default=5,
                        help="seconds between heartbeats of a running point, ≥ 1 (default: %(default)s)")
    parser.add_argument("--grace-period", type=_int_at_least(1, "--grace-period 30"), default=None,
                        help="seconds without heartbeat before a point counts as dead (default: 2x interval)")
    parser.add_argument("--max-retries", type=_int_at_least(0, "--max-retries 2"), default=2,
                        help="retries of a point whose worker died or whose objective raised (default: "
                             "%(default)s)")
    parser.add_argument("--threads", type=_int_at_least(0, "--threads 1"), default=1,
                        help="torch threads per worker; 0 leaves torch's default (default: %(default)s)")
    if share:
        parser.add_argument("--share", type=_share, default=None, metavar="I/N",
                            help="worker I of N started together: claim every N-th point first")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit when no point is left to start even if other workers' points still run")
    parser.add_argument("--allow-objective", action="append", default=None, metavar="MODULE:FN",
                        help="run this user objective if the sweep names it (repeatable); without it workers run "
                             "only deeplimit's own objectives, since whoever can write the storage names the code")


def worker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`run_worker` from parsed :func:`add_worker_arguments` options."""
    return {"share": getattr(args, "share", None), "n_trials": args.n_trials,
            "heartbeat_interval": args.heartbeat_interval, "grace_period": args.grace_period,
            "max_retries": args.max_retries, "run_dir": getattr(args, "run_dir", None),
            "threads": args.threads or None, "wait_for_running": not args.no_wait,
            "allow_objectives": tuple(args.allow_objective or ())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeplimit.sweep.worker",
                                     description="Run one sweep worker. The storage URL comes from --storage "
                                                 "or $DEEPLIMIT_STORAGE_URL (which keeps passwords out of ps).")
    parser.add_argument("--storage", default=None, help="storage URL (default: $DEEPLIMIT_STORAGE_URL)")
    parser.add_argument("--name", required=True, help="sweep name")
    parser.add_argument("--run-dir", default=None, help="per-point directories (default: as created)")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        url = resolve_storage(args.storage, None)
        report = run_worker(url, args.name, **worker_kwargs(args))
    except DeeplimitError as exc:
        from deeplimit.secrets import STORAGE_ENV, redact_text

        print(f"deeplimit sweep worker: error: {redact_text(str(exc), args.storage, os.environ.get(STORAGE_ENV))}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before the worker's own handler was in place: nothing was claimed yet
        print("deeplimit sweep worker: interrupted while starting", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps({**asdict(report), "exit_code": report.exit_code}), flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

