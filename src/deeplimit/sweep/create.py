"""Creating (or resuming) a sweep: validate every point, then store the spec in an Optuna study.

The sweep is a grid, not a search: the study holds the spec (a user attribute) and workers pick grid points
that no trial has touched yet (see :mod:`deeplimit.sweep.worker`); Optuna's sampler never chooses anything
and no pruner stops a run early. Creating a sweep therefore costs the same for 10 points or 10,000.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from deeplimit.errors import DeeplimitError
from deeplimit.io import ensure_dir, resolve_path
from deeplimit.secrets import redact_url
from deeplimit.sweep.grid import SweepSpec
from deeplimit.sweep.storage import check_url, creation_lock, default_storage, open_storage, storage_error
from deeplimit.sweep.trial import load_objective, trust_objective, validate_points

__all__ = ["Sweep", "create_sweep", "load_sweep", "enqueue_point", "SPEC_ATTR", "OBJECTIVE_ATTR", "RUN_DIR_ATTR"]

log = logging.getLogger("deeplimit.sweep")

SPEC_ATTR = "deeplimit_spec"
OBJECTIVE_ATTR = "deeplimit_objective"
RUN_DIR_ATTR = "deeplimit_run_dir"
KEY_ATTR = "run_key"


@dataclass(frozen=True)
class Sweep:
    """Handle returned by :func:`create_sweep`. ``storage`` is the real URL: show it with ``redact_url``."""

    name: str
    storage: str
    run_dir: Path
    spec: SweepSpec
    points: int
    done: int
    requeued: int

    def __str__(self) -> str:
        return (f"sweep {self.name!r}: {self.points} points, {self.done} done, {self.requeued} failed points "
                f"re-queued\nstorage: {redact_url(self.storage)}\nrun dir: {self.run_dir}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise DeeplimitError(f"sweep name {name!r} is empty; pass --name NAME")
    if len(name) > 200 or any(c in name for c in "\n\r\t\0"):
        raise DeeplimitError(f"sweep name {name[:40]!r}… is too long or has control characters; use a short "
                             "plain name")


def load_sweep(storage: optuna.storages.BaseStorage, name: str, url: str) -> tuple[optuna.Study, SweepSpec]:
    """The study ``name`` and its spec; a DeeplimitError if there is none or it is not a deeplimit sweep."""
    try:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=0))
    except KeyError:
        raise DeeplimitError(f"no sweep named {name!r} in storage {redact_url(url)!r}; create it first with "
                             "`deeplimit sweep create` (or create_sweep), or check --name/--storage") from None
    except Exception as exc:  # an unreachable or broken database
        raise storage_error(exc, url) from None
    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        raise DeeplimitError(f"study {name!r} was not created by deeplimit (no {SPEC_ATTR!r} attribute); create "
                             "sweeps with `deeplimit sweep create`")
    return study, SweepSpec.from_json(text)


def _by_key(trials: Sequence[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        key = t.user_attrs.get(KEY_ATTR)
        if key is not None:
            out.setdefault(key, []).append(t)
    return out


def enqueue_point(study: optuna.Study, key: str, *, fail_base: int = 0, retry_of: int | None = None) -> None:
    """Queue a WAITING trial for the grid point ``key`` (a retry, or a point re-queued by ``create``).

    Only the run key and the retry bookkeeping are stored: no Optuna parameters (a grid has no
    distributions to sample from, and categorical choices could not grow with a resumed sweep).
    """
    attrs: dict[str, Any] = {KEY_ATTR: key}
    if fail_base:
        attrs["fail_base"] = fail_base
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=attrs))


def create_sweep(name: str, spec: SweepSpec, objective: str | None = None, storage: str | None = None,
                 run_dir: str | os.PathLike[str] = "sweep", *, check_objective: bool = True) -> Sweep:
    """Create (or resume) the sweep ``name``: validate the grid, store the spec; workers then run each point once.

    Everything is checked before anything is written: the name, the objective (imported), every grid point
    (through the objective's ``validate``, if it has one), the run directory and the storage URL.

    Re-running it on an existing study resumes: completed, waiting and running points are left alone; points
    whose every attempt failed are queued again with a fresh retry budget. The spec may grow (e.g. the grid
    extended after an edge optimum) but not lose points or change fixed parameters: use a new name for a
    different experiment.

    Args:
        name: study name (one sweep per name in a storage).
        spec: the grid.
        objective: dotted path of the objective; defaults to ``spec.objective``.
        storage: storage URL; defaults to ``sqlite:///<run_dir>/sweep.db``.
        run_dir: directory for per-point run directories (``run_dir/runs/…``) and the default database.
        check_objective: import the objective and validate every point now (recommended).
    """
    _check_name(name)
    if not isinstance(spec, SweepSpec):
        raise DeeplimitError(f"spec must be a SweepSpec, got {type(spec).__name__}")
    objective = objective or spec.objective
    if not objective:
        raise DeeplimitError("no objective given; pass objective='package.module:function' or set it in the spec")
    if spec.objective != objective:
        spec = dataclasses.replace(spec, objective=objective)
    if check_objective:
        fn = load_objective(objective)
        points = spec.points()
        validate_points(fn, [spec.full_point(p) for p in points], [spec.run_key(p) for p in points])
    run_path = resolve_path(run_dir, "run directory")
    if run_path.exists() and not run_path.is_dir():
        raise DeeplimitError(f"run directory {run_path} is a file, not a folder; pass another --run-dir")
    url = storage or default_storage(run_path)
    if storage:
        check_url(storage)
    created = not run_path.exists()
    ensure_dir(run_path, "run directory")
    try:
        sweep = _create(name, spec, objective, url, run_path)
    except BaseException:
        if created and run_path.is_dir() and not any(run_path.iterdir()):
            shutil.rmtree(run_path, ignore_errors=True)  # nothing half-made is left behind
        raise
    # The user named this objective: workers started from this process may run it (see trial.py, trust model).
    trust_objective(url, name, objective)
    return sweep


def _create(name: str, spec: SweepSpec, objective: str, url: str, run_path: Path) -> Sweep:
    st = open_storage(url)
    with creation_lock(url):
        try:
            study = optuna.create_study(study_name=name, storage=st, direction="minimize", load_if_exists=True)
        except Exception as exc:
            raise storage_error(exc, url) from None
        old_text = study.user_attrs.get(SPEC_ATTR)
        if old_text is not None:
            old = SweepSpec.from_json(old_text)
            if old.objective != spec.objective or not spec.contains(old):
                raise DeeplimitError(
                    f"sweep {name!r} already exists with a different spec (objective {old.objective!r}, axes "
                    f"{old.to_dict()['axes']}, fixed {dict(old.fixed)}); a resumed sweep may only add grid "
                    "points. Use a new --name for a different experiment.")
        elif study.user_attrs:
            raise DeeplimitError(f"study {name!r} exists but was not created by deeplimit; use another --name")
        for key, value in ((SPEC_ATTR, spec.to_json()), (OBJECTIVE_ATTR, objective), (RUN_DIR_ATTR, str(run_path))):
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)

        by_key = _by_key(study.get_trials(deepcopy=False))
        done = requeued = 0
        for point in spec.iter_points():
            key = spec.run_key(point)
            states = {t.state for t in by_key.get(key, [])}
            if TrialState.COMPLETE in states:
                done += 1
            elif TrialState.FAIL in states and not states & {TrialState.WAITING, TrialState.RUNNING}:
                # Retries exhausted in an earlier session: the user resumes after fixing the cause.
                fails = sum(t.state == TrialState.FAIL and not t.user_attrs.get("interrupted") for t in by_key[key])
                enqueue_point(study, key, fail_base=fails)
                requeued += 1
    log.info("sweep %s: %d points, %d done, %d failed points re-queued", name, len(spec), done, requeued)
    return Sweep(name=name, storage=url, run_dir=run_path, spec=spec, points=len(spec), done=done,
                 requeued=requeued)


def spec_attrs(study: optuna.Study) -> Mapping[str, Any]:
    """The deeplimit attributes of a sweep's study (spec JSON, objective path, run directory)."""
    return {k: study.user_attrs.get(k) for k in (SPEC_ATTR, OBJECTIVE_ATTR, RUN_DIR_ATTR)}
