"""Fixed-budget grid sweeps on Optuna: create, run workers, survive crashes, collect tidy results.

Design (ecosystem spec §4):

* The sweep is a grid, not a search: :func:`create_sweep` enqueues every grid point once as a WAITING
  trial carrying its axis values (``fixed_params``) and its run key (user attribute). Workers only pop
  enqueued trials; Optuna's sampler never chooses anything. No pruners: every run gets the full budget.
* The training function is referenced by a dotted path ``"package.module:function"`` stored in the study,
  so a worker on another machine needs only the storage URL and the study name.
* Crash recovery uses Optuna's heartbeats: a worker SIGKILLed mid-run stops beating, the trial becomes
  stale, another worker marks it FAIL and :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`
  re-enqueues it (at most ``max_retries`` times). Exceptions in the objective are recorded (traceback in
  the ``error`` user attribute) and re-enqueued by the engine under the same budget.
* De-duplication by run key: before training, a trial whose key already completed (or is being run by an
  older live trial) is closed as PRUNED with ``skipped`` set, never re-run. A trial that was already failed
  as stale cannot be completed (``UpdateFinishedTrialError``), so a zombie worker cannot add a second
  completion either.
* Workers run their own ask/tell loop on the storage (see :class:`_Store`) instead of ``study.optimize``,
  whose bookkeeping cost ≈ 30 ms per trial; on SQLite and PostgreSQL a trial's result, value and COMPLETE
  state commit together.
* Diverged runs are COMPLETE trials with ``user_attrs["status"] = "diverged"`` and value ``+inf``
  (Optuna stores ±inf exactly; only NaN is rejected).
* Results live in the storage (rows compressed in the ``rows_z`` user attribute), so they survive the
  worker and are readable from any machine: :func:`results_frame` builds the tidy long table.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha1
from pathlib import Path
from typing import Any, NamedTuple

import optuna
import pandas as pd
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec

__all__ = [
    "TrialResult",
    "TrialContext",
    "Sweep",
    "SweepStatus",
    "WorkerReport",
    "create_sweep",
    "run_worker",
    "launch_workers",
    "sweep_status",
    "results_frame",
    "write_results",
    "open_storage",
    "load_objective",
    "default_storage",
    "LONG_COLUMNS",
]

log = logging.getLogger("deeplimit.sweep")

SPEC_ATTR = "deeplimit_spec"
OBJECTIVE_ATTR = "deeplimit_objective"
RUN_DIR_ATTR = "deeplimit_run_dir"
STATUSES = ("ok", "diverged")

# Identifying columns of the long table in the order of ecosystem spec §5 / depth-mup spec §11.8; any
# other point field follows them, then the observation columns.
LONG_COLUMNS = [
    "experiment", "run_id", "preset", "alpha", "gamma", "width", "depth", "base_width", "base_depth",
    "block_depth", "activation", "train_io", "optimizer", "lr", "log2_lr", "seed",
]
OBS_COLUMNS = ["step", "metric", "value", "status", "wall_s"]


# ------------------------------------------------------------------------------------------------
# What a training function receives and returns
# ------------------------------------------------------------------------------------------------
@dataclass
class TrialResult:
    """What a training function returns.

    Attributes:
        value: the metric to minimise (e.g. mean train loss over the last 10% of steps). Non-finite values
            mark the run as diverged (depth-mup spec §11.1) and are stored as ``+inf``.
        status: ``"ok"`` or ``"diverged"``. A diverged run is a completed run, never retried.
        rows: tidy observations of this run, one dict per (step, metric): at least ``metric`` and
            ``value``, usually ``step``; extra keys become extra columns. The engine adds the point's
            identifying columns, so rows need not repeat them.
        info: free-form JSON-able details (timings, final norms, …), kept with the trial.
    """

    value: float
    status: str = "ok"
    rows: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise DeeplimitError(f"TrialResult.status is {self.status!r}; use one of {STATUSES} "
                                 "(raise an exception for a run that should be retried)")
        try:
            self.value = float(self.value)
        except (TypeError, ValueError):
            raise DeeplimitError(f"TrialResult.value must be a number, got {self.value!r}") from None
        if not math.isfinite(self.value):
            # §11.1: any non-finite loss means diverged; +inf keeps it out of every argmin.
            self.status, self.value = "diverged", math.inf
        if self.status == "diverged":
            self.value = math.inf
        if not isinstance(self.rows, list) or not all(isinstance(r, Mapping) for r in self.rows):
            raise DeeplimitError("TrialResult.rows must be a list of dicts (one per step and metric)")


@dataclass(frozen=True)
class TrialContext:
    """Where and what a run is: given to the training function alongside the point.

    ``run_dir`` is private to this grid point and survives retries: write checkpoints there (e.g.
    ``context.checkpoint_path``) and resume from them when ``attempt > 1``.
    """

    run_dir: Path
    sweep_dir: Path
    study_name: str
    run_key: str
    trial_number: int
    attempt: int
    point: dict[str, Any]

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"


Objective = Callable[[dict[str, Any], TrialContext], TrialResult]


def load_objective(path: str) -> Objective:
    """Import ``"package.module:function"``; the error names the missing piece and the fix."""
    if not isinstance(path, str) or ":" not in path:
        raise DeeplimitError(f"objective {path!r} must be a dotted path 'package.module:function', "
                             "e.g. 'deeplimit.sweep.demo:quadratic'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DeeplimitError(f"cannot import module {module_name!r} of objective {path!r} ({exc}); install "
                             "the package or put it on PYTHONPATH on every worker machine") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise DeeplimitError(f"module {module_name!r} has no attribute {attr!r}; check the objective "
                                 "path")
    if not callable(fn):
        raise DeeplimitError(f"objective {path!r} is not callable")
    return fn  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------------
def default_storage(run_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<run_dir>/sweep.db`` with an absolute path (so workers started elsewhere agree)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'sweep.db'}"


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retries: int | None = None, connect_timeout: int = 5) -> BaseStorage:
    """Open an Optuna storage from a URL, failing fast with a DeeplimitError if it is unreachable.

    ``sqlite:///PATH``, ``postgresql+psycopg2://…`` (any SQLAlchemy URL) or ``journal:PATH`` (a
    :class:`~optuna.storages.journal.JournalFileBackend` file; no heartbeats in Optuna 5.0, so a killed
    worker's trial is not retried there). With ``heartbeat_interval`` the RDB storage records heartbeats
    and retries stale trials up to ``max_retries`` times.
    """
    if not isinstance(url, str) or not url:
        raise DeeplimitError(f"storage URL {url!r} is empty; use sqlite:///PATH, postgresql+psycopg2://… "
                             "or journal:PATH")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        if not path.parent.is_dir():
            raise DeeplimitError(f"journal storage {url!r}: directory {path.parent} does not exist; "
                                 "create it")
        if heartbeat_interval:
            log.warning("journal storage has no heartbeats in Optuna 5.0: a killed worker's trial stays "
                        "RUNNING; use sqlite or postgresql for crash recovery")
        return JournalStorage(JournalFileBackend(str(path)))

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[-1]
        if db_path and db_path != ":memory:" and not Path(db_path).parent.is_dir():
            raise DeeplimitError(f"SQLite storage {url!r}: directory {Path(db_path).parent} does not exist; "
                                 "create it or pass --run-dir so the default storage is created there")
        # Two workers write to one file: wait for the lock instead of failing after SQLite's 5 s default.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        # Fail in seconds, not minutes, when the server is down; pre-ping survives server restarts.
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout}
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs = {
            "heartbeat_interval": int(heartbeat_interval),
            "grace_period": int(grace_period) if grace_period else None,
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat_interval:
                retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
                kwargs["heartbeat_stale_trial_callback"] = retry
            rdb = RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        if url.startswith("sqlite") and ":memory:" not in url:
            _sqlite_wal(rdb)
        return rdb
    except ModuleNotFoundError as exc:
        raise DeeplimitError(f"storage {_redact(url)!r} needs the database driver {exc.name!r}; install it "
                             "(for PostgreSQL: pip install psycopg2-binary)") from None
    except Exception as exc:  # SQLAlchemy raises OperationalError, ArgumentError, … depending on the URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("start the server (e.g. `deeplimit sweep postgres start --dir DIR`) and check host, port, "
                "user and database name" if url.startswith("postgresql") else
                "check the URL syntax (sqlite:///ABSOLUTE/PATH, postgresql+psycopg2://USER@HOST:PORT/DB)")
        raise DeeplimitError(f"cannot open storage {_redact(url)!r}: {first}; {hint}") from None


def _sqlite_wal(rdb: RDBStorage) -> None:
    """SQLite settings for several worker processes on one file.

    * ``BEGIN IMMEDIATE`` transactions. The sqlite3 driver starts a transaction only at the first write,
      so Optuna's check-then-set when popping a WAITING trial (read WAITING, write RUNNING) is not
      atomic on SQLite: two workers could both pop the same trial (seen: one worker then crashed on
      "Cannot tell a FAIL trial"). An immediate transaction takes the write lock up front and makes the
      pop atomic, as ``SELECT … FOR UPDATE`` does on PostgreSQL.
    * Write-ahead log with ``synchronous=NORMAL``: in the default rollback-journal mode every commit
      fsyncs (≈ 8 ms here) and a trial makes several commits, ≈ 100 ms per trial. WAL + NORMAL stays
      consistent when a process is killed (only an OS crash or power loss can drop the last commits).
      WAL needs a local filesystem, as SQLite's locking itself does (ecosystem spec §4); use PostgreSQL
      across machines.
    """
    from sqlalchemy import event

    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(rdb.engine, "connect", _on_connect)
    event.listen(rdb.engine, "begin", _on_begin)
    rdb.engine.dispose()  # connections opened during RDBStorage.__init__ lack these settings


def _load_study(storage: BaseStorage, name: str, url: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise DeeplimitError(f"no sweep named {name!r} in storage {_redact(url)!r}; create it first with "
                             "`deeplimit sweep create` (or create_sweep) or check --name/--storage") from None


def _spec_of(study: optuna.Study) -> SweepSpec:
    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        raise DeeplimitError(f"study {study.study_name!r} was not created by deeplimit (no {SPEC_ATTR!r} "
                             "attribute); create sweeps with create_sweep")
    return SweepSpec.from_json(text)


# ------------------------------------------------------------------------------------------------
# Creating a sweep
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """Handle returned by :func:`create_sweep`."""

    name: str
    storage: str
    run_dir: Path
    spec: SweepSpec
    points: int
    done: int
    requeued: int


def _key_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get("run_key")


def _by_key(trials: Sequence[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        key = _key_of(t)
        if key is not None:
            out.setdefault(key, []).append(t)
    return out


def create_sweep(name: str, spec: SweepSpec, objective: str | None = None, storage: str | None = None,
                 run_dir: str | os.PathLike[str] = "sweep", *, check_objective: bool = True) -> Sweep:
    """Create (or resume) the sweep ``name``: store the spec; workers then run every grid point once.

    Grid points are handed to workers through a short queue of WAITING trials that the workers keep
    topped up from the spec (see :func:`run_worker`): creating a sweep stays instant however large the grid
    (a trial costs ≈ 7 ms of ORM work to create), and points added by a grown spec join the same queue.

    Re-running it on an existing study resumes: completed, waiting and running points are left alone;
    points whose every attempt failed are enqueued again with a fresh retry budget. The spec may grow
    (e.g. the LR grid extended after an edge argmin) but not lose points or change fixed parameters: use
    a new name for a different experiment.

    Args:
        name: study name (one sweep per name in a storage).
        spec: the grid.
        objective: dotted path of the training function; defaults to ``spec.objective``.
        storage: storage URL; defaults to ``sqlite:///<run_dir>/sweep.db``.
        run_dir: directory for per-run checkpoints (``run_dir/runs/<key>``) and the default database.
        check_objective: import the objective now so a typo fails here, not in every worker.
    """
    objective = objective or spec.objective
    if not objective:
        raise DeeplimitError("no objective given; pass objective='package.module:function' or set it in "
                             "the spec")
    if check_objective:
        load_objective(objective)
    if spec.objective != objective:
        spec = dataclasses.replace(spec, objective=objective)
    if len(spec) == 0:  # SweepSpec already refuses empty axes; kept for subclasses
        raise DeeplimitError("the grid has no points; give every axis at least one value")
    run_path = Path(run_dir).resolve()
    run_path.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(run_path)
    st = open_storage(url)
    study = optuna.create_study(study_name=name, storage=st, direction="minimize", load_if_exists=True)

    old_text = study.user_attrs.get(SPEC_ATTR)
    if old_text is not None:
        old = SweepSpec.from_json(old_text)
        if old.objective != spec.objective or not spec.contains(old):
            raise DeeplimitError(
                f"sweep {name!r} already exists with a different spec (objective {old.objective!r}, "
                f"axes {old.to_dict()['axes']}, fixed {dict(old.fixed)}); a resumed sweep may only add grid "
                "points. Use a new --name for a different experiment.")
    study.set_user_attr(SPEC_ATTR, spec.to_json())
    study.set_user_attr(OBJECTIVE_ATTR, objective)
    study.set_user_attr(RUN_DIR_ATTR, str(run_path))

    by_key = _by_key(study.get_trials(deepcopy=False))
    done = requeued = 0
    for point in spec.iter_points():
        key = spec.run_key(point)
        states = {t.state for t in by_key.get(key, [])}
        if TrialState.COMPLETE in states:
            done += 1
        elif TrialState.FAIL in states and not states & {TrialState.WAITING, TrialState.RUNNING}:
            # Retries exhausted in an earlier session: the user resumes after fixing the cause.
            fails = sum(t.state == TrialState.FAIL for t in by_key[key])
            _enqueue(study, spec, point, key, fail_base=fails)
            requeued += 1
    log.info("sweep %s: %d points, %d done, %d failed points re-enqueued", name, len(spec), done, requeued)
    return Sweep(name=name, storage=url, run_dir=run_path, spec=spec, points=len(spec), done=done,
                 requeued=requeued)


def _enqueue(study: optuna.Study, spec: SweepSpec, point: Mapping[str, Any], key: str, fail_base: int,
             retry_of: int | None = None) -> int:
    """Add a WAITING trial for the grid point ``key``; return its trial id."""
    # Only the run key is stored (each attribute is one more storage write per trial); the point is
    # looked up in the spec by key.
    attrs: dict[str, Any] = {"run_key": key}
    if fail_base:
        attrs["fail_base"] = fail_base
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    # No Optuna params: each one costs a query and an insert per trial (≈ 8 ms together here, about 1% of
    # a 1 s run), and categorical choices could not grow with a resumed sweep. The grid coordinates are
    # in the run key and in results_frame().
    # What study.add_trial does (create_trial validates the template), but returning the id, so that a
    # worker can pop the trial it just queued without reading the queue again.
    template = optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=attrs)
    return study._storage.create_new_trial(study._study_id, template_trial=template)


# ------------------------------------------------------------------------------------------------
# Running trials
# ------------------------------------------------------------------------------------------------
def _safe_dirname(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", key.replace('"', ""))[:100]
    return f"{stem}-{sha1(key.encode()).hexdigest()[:8]}"


def _json_default(x: Any) -> Any:
    # numpy / torch scalars and paths in rows or info: store numbers as numbers, anything else as text.
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def _encode_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    raw = json.dumps([dict(r) for r in rows], default=_json_default).encode()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _decode_rows(text: str) -> list[dict[str, Any]]:
    return json.loads(zlib.decompress(base64.b64decode(text)))


class _Row(NamedTuple):
    trial_id: int
    number: int
    state: TrialState
    key: str | None


class _Store:
    """The storage steps of a worker's trial loop, through Optuna's storage API (any storage).

    Workers do not use ``study.optimize``: its ``ask()`` reloads every WAITING trial with all its
    relationships to pick one and then builds the trial again, and ``tell()`` reads it twice more — about
    30 SQL statements in 5 transactions per trial, most of the engine's bookkeeping. A worker already knows
    the queue (:meth:`rows`), so it pops a trial by id and closes it itself, under Optuna's own rules: a
    trial is popped only while WAITING (atomically, so two workers never pop the same one) and a finished
    trial is never updated (``UpdateFinishedTrialError``, e.g. for a trial already failed as stale).
    :class:`_SqlStore` does each step in one transaction on SQLite and PostgreSQL; this class is the path
    for other storages (journal, other databases) and the reference for what each step means.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.storage = study._storage
        self.heartbeats = is_heartbeat_enabled(self.storage)

    def rows(self) -> list[_Row]:
        """(trial id, number, state, run key or None) of every trial, by number; read fresh."""
        return [_Row(t._trial_id, t.number, t.state, _key_of(t)) for t in self.study.get_trials(deepcopy=False)]

    def start(self, trial_id: int) -> tuple[int, dict[str, Any]] | None:
        """Pop a WAITING trial: RUNNING, with a first heartbeat. Its number and user attributes, or None if
        another worker took it first."""
        try:
            if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        if self.heartbeats:
            self.beat(trial_id)
        trial = self.storage.get_trial(trial_id)
        return trial.number, dict(trial.user_attrs)

    def beat(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def finish(self, trial_id: int, state: TrialState, value: float | None, attrs: Mapping[str, Any]) -> None:
        """Store ``attrs`` (and the value) and close the trial as ``state``; raises
        ``UpdateFinishedTrialError`` if the trial is no longer RUNNING."""
        for key, v in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, v)
        self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])


class _SqlStore(_Store):
    """SQLite and PostgreSQL: each step of the trial loop as one short transaction.

    * :meth:`rows`: one query on Optuna's ``trials`` / ``trial_user_attributes`` tables (≈ 1 ms, instead of
      ``get_trials()``, which loads every unfinished trial with all its relationships through the ORM).
    * :meth:`start`: the pop and the first heartbeat commit together, so no trial is ever RUNNING without a
      beat (Optuna never considers such a trial stale: a worker killed in between would leave it RUNNING
      for good).
    * :meth:`finish`: result attributes, value and final state commit together, so a killed worker leaves
      either a completed trial with its result or a RUNNING one that is failed as stale and retried.

    Trials are read and updated through Optuna's own ORM model, so its conventions (UTC datetimes, enum
    and value encodings) apply unchanged; the row is locked before its state is checked (``FOR UPDATE`` on
    PostgreSQL; the whole file on SQLite, where every transaction is ``BEGIN IMMEDIATE``), as Optuna does.
    Attributes and heartbeats are upserts, as in Optuna's storage.
    """

    def __init__(self, study: optuna.Study, rdb: RDBStorage) -> None:
        super().__init__(study)
        from optuna.storages._rdb import models
        from sqlalchemy import and_, select
        from sqlalchemy.dialects import postgresql, sqlite

        self.engine = rdb.engine
        self.models = models
        self._insert = sqlite.insert if self.engine.name == "sqlite" else postgresql.insert
        trials, attrs = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
        self._attrs = attrs
        self._beats = models.TrialHeartbeatModel.__table__
        self._rows_query = (
            select(trials.c.trial_id, trials.c.number, trials.c.state, attrs.c.value_json)
            .select_from(trials.outerjoin(attrs, and_(attrs.c.trial_id == trials.c.trial_id,
                                                      attrs.c.key == "run_key")))
            .where(trials.c.study_id == study._study_id)
            .order_by(trials.c.number))
        self._attrs_query = select(attrs.c.key, attrs.c.value_json)

    @staticmethod
    def supports(rdb: BaseStorage) -> bool:
        if not isinstance(rdb, RDBStorage):
            return False
        if rdb.engine.name == "sqlite":
            import sqlite3

            return sqlite3.sqlite_version_info >= (3, 24, 0)  # INSERT … ON CONFLICT
        return rdb.engine.name == "postgresql"

    def rows(self) -> list[_Row]:
        with self.engine.connect() as conn:
            result = conn.execute(self._rows_query).all()
        return [_Row(int(tid), int(n), state, json.loads(v) if v is not None else None)
                for tid, n, state, v in result]

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self.engine)

    def _upsert_beat(self, session: Any, trial_id: int) -> None:
        from sqlalchemy import func

        stmt = self._insert(self._beats).values(trial_id=trial_id)  # heartbeat defaults to the server's now
        session.execute(stmt.on_conflict_do_update(index_elements=[self._beats.c.trial_id],
                                                   set_={"heartbeat": func.current_timestamp()}))

    def start(self, trial_id: int) -> tuple[int, dict[str, Any]] | None:
        with self._session() as session, session.begin():
            trial = session.get(self.models.TrialModel, trial_id, with_for_update=True)
            if trial is None or trial.state != TrialState.WAITING:
                return None
            trial.state = TrialState.RUNNING
            trial.datetime_start = datetime.now()
            if self.heartbeats:
                self._upsert_beat(session, trial_id)
            attrs = session.execute(self._attrs_query.where(self._attrs.c.trial_id == trial_id)).all()
            return trial.number, {k: json.loads(v) for k, v in attrs}

    def beat(self, trial_id: int) -> None:
        with self._session() as session, session.begin():
            self._upsert_beat(session, trial_id)

    def finish(self, trial_id: int, state: TrialState, value: float | None, attrs: Mapping[str, Any]) -> None:
        models = self.models
        with self._session() as session, session.begin():
            trial = session.get(models.TrialModel, trial_id, with_for_update=True)
            if trial is None or trial.state != TrialState.RUNNING:
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {trial_id} is {trial.state.name if trial else 'gone'}; it cannot be updated")
            if attrs:
                stmt = self._insert(self._attrs).values(
                    [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()])
                session.execute(stmt.on_conflict_do_update(index_elements=[self._attrs.c.trial_id,
                                                                           self._attrs.c.key],
                                                           set_={"value_json": stmt.excluded.value_json}))
            if value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                session.add(models.TrialValueModel(trial_id=trial_id, objective=0, value=stored, value_type=kind))
            trial.state = state
            trial.datetime_complete = datetime.now()


def _open_store(study: optuna.Study) -> _Store:
    backend = getattr(study._storage, "_backend", study._storage)  # load_study wraps RDB in a cache
    return _SqlStore(study, backend) if _SqlStore.supports(backend) else _Store(study)


class _Heartbeat:
    """Beats every ``interval`` s for a running trial in a background thread (:meth:`_Store.start` recorded
    the first beat). A failed beat is logged and retried at the next interval instead of ending the
    thread: one database hiccup must not make a live trial look dead."""

    def __init__(self, store: _Store, trial_id: int, interval: float | None) -> None:
        self.store, self.trial_id, self.interval = store, trial_id, interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self.thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial_id}", daemon=True)
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
                self.store.beat(self.trial_id)
            except Exception as exc:  # keep beating: the next beat may succeed
                log.warning("heartbeat of trial %d failed: %s", self.trial_id, exc)


class _TrialRunner:
    """Runs one popped (RUNNING) trial: de-duplication, the objective under heartbeats, the record."""

    def __init__(self, study: optuna.Study, store: _Store, spec: SweepSpec, fn: Objective, run_dir: Path,
                 max_retries: int, heartbeat_interval: float | None) -> None:
        self.study, self.store, self.spec, self.fn, self.run_dir = study, store, spec, fn, run_dir
        self.max_retries = max_retries
        self.heartbeat_interval = heartbeat_interval
        self.points = {spec.run_key(p): p for p in spec.iter_points()}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.objective_s = 0.0

    def _same_key(self, key: str, number: int,
                  retry_of: int | None = None) -> tuple[list[tuple[int, TrialState]], str | None]:
        """Trials of ``key`` other than ``number`` and, if this run must be skipped, why.

        Read fresh, after this trial became RUNNING: two workers may have queued the same point. Any other
        COMPLETE or RUNNING trial of the key wins. Both trials commit RUNNING before they check, so the
        later checker always sees the earlier one: at most one of them trains. If both see each other,
        both step aside and the point, having only skipped (PRUNED) trials, is queued again by the next
        refill. A RUNNING trial of a dead worker is failed by the heartbeat check and retried, so skipping
        never loses a point. The trial that queued this one as a retry after an exception (``retry_of``)
        may still read RUNNING for a moment before it is marked FAIL: it counts as failed, not as a rival.
        """
        others = [(r.number, TrialState.FAIL if r.number == retry_of and r.state == TrialState.RUNNING
                   else r.state)
                  for r in self.store.rows() if r.number != number and r.key == key]
        for n, st in others:
            if st == TrialState.COMPLETE:
                return others, f"duplicate: {key} already completed in trial {n}"
        for n, st in others:
            if st == TrialState.RUNNING:
                return others, f"duplicate: {key} is running in trial {n}"
        return others, None

    def _point(self, key: str) -> dict[str, Any]:
        if key not in self.points:
            # The sweep was extended (create_sweep with a larger grid) after this worker started.
            self.spec = _spec_of(optuna.load_study(study_name=self.study.study_name,
                                                   storage=self.study._storage))
            self.points = {self.spec.run_key(p): p for p in self.spec.iter_points()}
        if key not in self.points:
            raise DeeplimitError(f"run key {key!r} is not a point of the sweep's spec; the study was "
                                 "modified outside deeplimit")
        return dict(self.points[key])

    def _error(self) -> str:
        return f"worker {self.worker}\n" + traceback.format_exc()[-8000:]

    def run(self, trial_id: int, number: int, attrs: Mapping[str, Any]) -> str:
        """Run the trial and close it; return what became of it: its status, ``"failed"`` or ``"skipped"``.

        Raises ``UpdateFinishedTrialError`` if the trial was failed as stale meanwhile (see run_worker).
        """
        try:
            return self._run(trial_id, number, attrs)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise
        except Exception:
            # A fault around the objective, not in it (e.g. a run key missing from the spec): recorded as
            # failed, as Optuna's optimize(catch=Exception) did, and the worker goes on.
            self.store.finish(trial_id, TrialState.FAIL, None, {"error": self._error()})
            return "failed"

    def _run(self, trial_id: int, number: int, attrs: Mapping[str, Any]) -> str:
        key = attrs.get("run_key")
        if key is None:
            # Not a grid point (e.g. a trial enqueued by hand): close it untouched.
            self.store.finish(trial_id, TrialState.PRUNED, None, {"skipped": "not a grid point (no run_key)"})
            return "skipped"
        retry_of = attrs.get("retry_of")
        others, skip = self._same_key(key, number, int(retry_of) if retry_of is not None else None)
        if skip:
            self.store.finish(trial_id, TrialState.PRUNED, None, {"skipped": skip})
            return "skipped"

        point = self._point(key)
        fails = sum(st == TrialState.FAIL for _, st in others)
        fail_base = int(attrs.get("fail_base", 0))
        attempt = fails - fail_base + 1
        run_dir = self.run_dir / "runs" / _safe_dirname(key)
        run_dir.mkdir(parents=True, exist_ok=True)
        ctx = TrialContext(run_dir=run_dir, sweep_dir=self.run_dir, study_name=self.study.study_name,
                           run_key=key, trial_number=number, attempt=attempt, point=dict(point))
        t0 = time.perf_counter()
        try:
            with _Heartbeat(self.store, trial_id, self.heartbeat_interval):
                result = self.fn(self.spec.full_point(point), ctx)
            if not isinstance(result, TrialResult):
                if isinstance(result, int | float):
                    result = TrialResult(value=float(result))
                else:
                    raise DeeplimitError(f"objective returned {type(result).__name__}; return a TrialResult "
                                         "(or a float)")
        except BaseException as exc:
            # KeyboardInterrupt too: the run is recorded and retried like a killed one, then the worker stops.
            self.objective_s += time.perf_counter() - t0
            record: dict[str, Any] = {"error": self._error()}
            if attempt <= self.max_retries:
                # Queued before this trial is closed: a worker killed in between leaves this trial RUNNING, to be
                # failed as stale (its second retry then skips as a duplicate), never a point without a retry.
                _enqueue(self.study, self.spec, point, key, fail_base=fail_base, retry_of=number)
                log.warning("trial %d (%s) raised %r; retry %d of %d enqueued", number, key, exc, attempt,
                            self.max_retries)
            else:
                record["gave_up"] = True
                log.error("trial %d (%s) raised %r; retries exhausted (%d), recorded as failed", number, key,
                          exc, self.max_retries)
            if not isinstance(exc, Exception):
                # Interrupted: stop the worker even if the record cannot be written (the trial then goes stale).
                with contextlib.suppress(Exception):
                    self.store.finish(trial_id, TrialState.FAIL, None, record)
                raise
            self.store.finish(trial_id, TrialState.FAIL, None, record)
            return "failed"
        wall = time.perf_counter() - t0
        self.objective_s += wall
        # Everything the results need in one attribute; status also on its own so that dashboards and
        # queries can filter on it. Both commit together with the value and the COMPLETE state.
        payload = {"status": result.status, "wall_s": wall, "worker": self.worker, "attempt": attempt,
                   "info": result.info, "rows_z": _encode_rows(result.rows)}
        self.store.finish(trial_id, TrialState.COMPLETE, result.value,
                          {"result": json.dumps(payload, default=_json_default), "status": result.status})
        return result.status


@dataclass
class WorkerReport:
    """What one worker did."""

    trials: int = 0
    completed: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    objective_s: float = 0.0


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    # Environment first, so a torch imported later by the objective starts single-threaded too.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class _Queue:
    """Keeps a few WAITING trials in the study, drawn from the grid points no trial has touched yet.

    Each worker draws points in its own random order, so two workers topping up at once rarely pick the
    same point; when they do, the run-key check in :class:`_TrialRunner` skips the duplicate. The queue
    is kept at about (running trials + 2), i.e. ahead of every active worker.
    """

    def __init__(self, study: optuna.Study, store: _Store, spec: SweepSpec, seed: int,
                 share: tuple[int, int] | None = None) -> None:
        self.study, self.store, self.spec = study, store, spec
        self.points = {spec.run_key(p): p for p in spec.iter_points()}
        self.rng = random.Random(seed)
        # Worker i of n (known when launch_workers started us) prefers every n-th point, so workers
        # started together do not queue the same points; the others are taken once its share is used up.
        self.mine: set[str] = set()
        if share is not None:
            i, n = share
            self.mine = {k for j, k in enumerate(self.points) if j % n == i}

    def refill(self) -> tuple[list[int], int]:
        """Top up the queue; return the WAITING trial ids (oldest first) and the number of RUNNING trials."""
        rows = self.store.rows()
        waiting = [r.trial_id for r in rows if r.state == TrialState.WAITING]
        running = sum(r.state == TrialState.RUNNING for r in rows)
        if len(waiting) < running + 2:
            # A point whose trials were all skipped as duplicates (PRUNED) is queued again.
            seen = {r.key for r in rows if r.key is not None and r.state != TrialState.PRUNED}
            fresh = [k for k in self.points if k not in seen]
            own = [k for k in fresh if k in self.mine]
            # Only this worker's share while it lasts: other workers fill theirs, so nothing collides.
            pool = own or fresh
            for key in self.rng.sample(pool, min(2, len(pool))):
                waiting.append(_enqueue(self.study, self.spec, self.points[key], key, fail_base=0))
        return waiting, running


def run_worker(storage: str, name: str, n_trials: int | None = None, *, heartbeat_interval: int = 5,
               grace_period: int | None = None, max_retries: int = 2, run_dir: str | None = None,
               threads: int | None = 1, wait_for_running: bool = True,
               poll_interval: float | None = None, share: tuple[int, int] | None = None) -> WorkerReport:
    """Run grid points of sweep ``name`` until none is left (or ``n_trials`` were run).

    Args:
        storage: storage URL (see :func:`open_storage`).
        name: sweep name.
        n_trials: stop after this many trials (None: until every point is done or failed).
        heartbeat_interval: seconds between heartbeats of the running trial (RDB storages).
        grace_period: seconds without heartbeat after which a trial counts as dead (default 2× interval).
        max_retries: retries of a grid point whose worker died or whose objective raised.
        run_dir: where per-run directories live; defaults to the directory given at creation.
        threads: ``torch.set_num_threads`` for the objective (1 on the 2-core target; None: leave).
        wait_for_running: when nothing is left to start but other trials still run, keep polling so that
            a dead worker's trial is retried here instead of being left behind.
        poll_interval: seconds between polls while waiting (default: min(1 s, heartbeat interval)).
        share: ``(i, n)`` for worker i of n started together: it queues every n-th point first.
    """
    _set_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      max_retries=max_retries)
    study = _load_study(st, name, storage)
    spec = _spec_of(study)
    fn = load_objective(study.user_attrs.get(OBJECTIVE_ATTR, spec.objective))
    _set_threads(threads)  # the objective's module may just have imported torch
    sweep_dir = Path(run_dir or study.user_attrs.get(RUN_DIR_ATTR) or ".").resolve()
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeeplimitError(f"cannot create run directory {sweep_dir} ({exc}); pass --run-dir with a "
                             "writable directory on this machine") from None
    store = _open_store(study)
    heartbeats = store.heartbeats
    runner = _TrialRunner(study, store, spec, fn, sweep_dir, max_retries,
                          heartbeat_interval if heartbeats else None)
    queue = _Queue(study, store, spec, seed=os.getpid() ^ time.time_ns(), share=share)
    report = WorkerReport()
    # Polling is one cheap read; a short interval lets an idle worker pick up a retry, or finish, promptly.
    poll = poll_interval or min(1.0, heartbeat_interval or 1.0)
    next_stale_check = 0.0
    t_start = time.perf_counter()
    while n_trials is None or report.trials < n_trials:
        waiting, running = queue.refill()
        if heartbeats and running and (not waiting or time.monotonic() >= next_stale_check):
            # Trials of dead workers become FAIL and the retry callback re-enqueues them (up to max_retries).
            # Optuna's optimize() checks before every trial; a trial turns stale only after a grace period
            # of at least one heartbeat interval, so while busy once per interval is as prompt and cheaper.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            next_stale_check = time.monotonic() + heartbeat_interval
            if not waiting:
                waiting, running = queue.refill()
        if waiting:
            # The oldest trial no other worker has popped meanwhile; if they took them all, top up again.
            popped = next(((tid, got) for tid in waiting if (got := store.start(tid)) is not None), None)
            if popped is None:
                continue
            trial_id, (number, attrs) = popped
            try:
                state = runner.run(trial_id, number, attrs)
            except optuna.exceptions.UpdateFinishedTrialError as exc:
                # Our heartbeat was late (machine overloaded, process stopped) and another worker declared
                # this trial dead: it is FAIL, its retry is queued, and our result is refused. The point is
                # not lost; carry on with the next one.
                state = "failed"
                log.warning("trial finished elsewhere as stale (heartbeat later than the grace period): %s; "
                            "its retry runs instead — raise --grace-period on loaded machines", exc)
            report.trials += 1
            report.completed += state in STATUSES
            report.diverged += state == "diverged"
            report.failed += state == "failed"
            report.skipped += state == "skipped"
            continue
        if wait_for_running and heartbeats and running:
            time.sleep(poll)
            continue
        break
    report.wall_s = time.perf_counter() - t_start
    report.objective_s = runner.objective_s
    return report


def _child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    # Children import exactly what this process can import (source checkouts, test helpers).
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + env.get("PYTHONPATH", "").split(os.pathsep)))
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


def worker_command(storage: str, name: str, *, heartbeat_interval: int = 5, grace_period: int | None = None,
                   max_retries: int = 2, run_dir: str | None = None, threads: int | None = 1,
                   n_trials: int | None = None, share: tuple[int, int] | None = None) -> list[str]:
    """The command line of one worker process (``python -m deeplimit.sweep.worker …``)."""
    cmd = [sys.executable, "-m", "deeplimit.sweep.worker", "--storage", storage, "--name", name,
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
    return cmd


def spawn_workers(storage: str, name: str, n_workers: int = 2, **kwargs: Any) -> list[subprocess.Popen]:
    """Start ``n_workers`` worker processes and return them without waiting."""
    if n_workers < 1:
        raise DeeplimitError(f"n_workers must be at least 1, got {n_workers}")
    env = _child_env(kwargs.get("threads", 1))
    return [subprocess.Popen(worker_command(storage, name, share=(i, n_workers), **kwargs), env=env)
            for i in range(n_workers)]


def launch_workers(storage: str, name: str, n_workers: int = 2, *, timeout: float | None = None,
                   **kwargs: Any) -> list[int]:
    """Run the sweep with ``n_workers`` local worker processes; wait for them and return exit codes.

    Keyword arguments: ``heartbeat_interval``, ``grace_period``, ``max_retries``, ``run_dir``,
    ``threads``, ``n_trials`` (per worker), as for :func:`run_worker`. Worker i of n gets the share
    ``(i, n)`` of the grid, so workers started together queue disjoint points.
    Separate processes rather than threads: each gets its own interpreter and one BLAS thread, which is
    the fastest layout on the 2-core target (ecosystem spec §7).
    """
    procs = spawn_workers(storage, name, n_workers, **kwargs)
    deadline = None if timeout is None else time.monotonic() + timeout
    codes: list[int] = []
    try:
        for p in procs:
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            codes.append(p.wait(timeout=left))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        raise DeeplimitError(f"workers of sweep {name!r} did not finish within {timeout} s; they were "
                             "terminated (their trials will be retried); raise the timeout") from None
    return codes


# ------------------------------------------------------------------------------------------------
# Status and results
# ------------------------------------------------------------------------------------------------
@dataclass
class SweepStatus:
    """Counts over grid points (not trials) and a per-key table."""

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
        return self.total - self.done

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "done": self.done, "diverged": self.diverged, "running": self.running,
                "waiting": self.waiting, "failed": self.failed, "pending": self.pending, "left": self.left}

    def __str__(self) -> str:
        c = self.counts()
        return ("{done}/{total} done ({diverged} diverged), {running} running, {waiting} waiting, "
                "{failed} failed, {pending} pending (not yet queued), {left} left").format(**c)


def _open_for_reading(storage: str, name: str) -> tuple[optuna.Study, SweepSpec]:
    study = _load_study(open_storage(storage), name, storage)
    return study, _spec_of(study)


def sweep_status(storage: str, name: str) -> SweepStatus:
    """Where the sweep stands: per grid point ``done | running | waiting | failed | pending``."""
    study, spec = _open_for_reading(storage, name)
    by_key: dict[str, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        key = _key_of(t)
        if key is not None:
            by_key.setdefault(key, []).append(t)
    rows = []
    for point in spec.iter_points():
        key = spec.run_key(point)
        trials = by_key.get(key, [])
        states = {t.state for t in trials}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            state = "done"
        elif TrialState.RUNNING in states:
            state = "running"
        elif TrialState.WAITING in states:
            state = "waiting"
        elif TrialState.FAIL in states:
            state = "failed"
        else:
            state = "pending"
        status = complete[0].user_attrs.get("status", "ok") if complete else ""
        error = ""
        fails = [t for t in trials if t.state == TrialState.FAIL]
        if fails:
            last = fails[-1].user_attrs.get("error")
            error = last.strip().splitlines()[-1] if last else "worker died (stale heartbeat)"
        rows.append({"run_key": key, **point, "state": state, "status": status,
                     "value": complete[0].value if complete else math.nan,
                     "trial": complete[0].number if complete else (trials[-1].number if trials else -1),
                     "attempts": sum(t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)
                                     for t in trials),
                     "last_error": error})
    table = pd.DataFrame(rows)
    st = table["state"]
    return SweepStatus(total=len(table), done=int((st == "done").sum()),
                       diverged=int(((st == "done") & (table["status"] == "diverged")).sum()),
                       running=int((st == "running").sum()), waiting=int((st == "waiting").sum()),
                       failed=int((st == "failed").sum()), pending=int((st == "pending").sum()), table=table)


def results_frame(storage: str, name: str) -> pd.DataFrame:
    """Tidy long table of every completed run: one row per (run, step, metric).

    Columns: the identifying columns of ecosystem spec §5 that the sweep has (``experiment`` = sweep name
    unless a fixed parameter says otherwise, ``run_id`` = run key, then ``preset, …, seed``), any other
    point field, the rows' own extra keys, then ``step, metric, value, status, wall_s``. Each run also
    gets one row with ``metric = spec.metric`` holding the objective value (``inf`` if diverged) at the
    run's last step. ``lr``/``log2_lr`` are filled from each other when only one is an axis.
    """
    study, spec = _open_for_reading(storage, name)
    points = {spec.run_key(p): p for p in spec.iter_points()}
    records: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = _key_of(t)
        payload_text = t.user_attrs.get("result")
        if key is None or payload_text is None:
            continue
        payload = json.loads(payload_text)
        if key not in points:
            continue  # not a point of the current spec (should not happen: specs only grow)
        point = spec.full_point(points[key])
        ident: dict[str, Any] = {"experiment": name, "run_id": key, **point, "trial": t.number}
        if "lr" in ident and "log2_lr" not in ident:
            ident["log2_lr"] = math.log2(float(ident["lr"]))
        elif "log2_lr" in ident and "lr" not in ident:
            ident["lr"] = 2.0 ** float(ident["log2_lr"])
        status, wall = payload["status"], payload["wall_s"]
        rows = _decode_rows(payload["rows_z"])
        steps = [r["step"] for r in rows if isinstance(r.get("step"), int | float)]
        for r in rows:
            records.append({**ident, "status": status, "wall_s": wall, **r})
        records.append({**ident, "step": max(steps) if steps else math.nan, "metric": spec.metric,
                        "value": t.value if t.value is not None else math.inf, "status": status,
                        "wall_s": wall})
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["experiment", "run_id", *spec.axis_names, *OBS_COLUMNS])
    first = [c for c in LONG_COLUMNS if c in frame.columns]
    last = [c for c in OBS_COLUMNS if c in frame.columns]
    middle = [c for c in frame.columns if c not in first and c not in last]
    frame = frame[first + middle + last]
    return frame.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)


def write_results(frame: pd.DataFrame, out_dir: str | os.PathLike[str],
                  stem: str = "long") -> dict[str, Path]:
    """Write ``stem.csv`` (always) and ``stem.parquet`` (when pyarrow is installed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv"}
    frame.to_csv(paths["csv"], index=False)
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
                pq[col] = pq[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v))
                                      else str(v))
    paths["parquet"] = out / f"{stem}.parquet"
    pq.to_parquet(paths["parquet"], index=False)
    return paths
