"""The trial contract: what an objective receives (a point and a :class:`TrialContext`) and returns.

An objective is any importable callable ``fn(point, context) -> TrialResult | float`` named by a dotted path
``"package.module:attribute"``, so a worker on another machine needs only that path. It may also offer
``fn.validate(point)``: :func:`deeplimit.sweep.create_sweep` then calls it on every grid point before
anything is written, so a bad grid fails at creation, not as retries at run time.

Each grid point gets a private directory (``TrialContext.run_dir``) that survives retries, for checkpoints.
Its name carries a hash of everything the run depends on — sweep name, objective and the full point (axes
and fixed parameters) — so a second sweep with other settings in the same ``--run-dir`` never resumes this
one's checkpoints; ``point.json`` in the directory records what it belongs to and is checked on every use.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write_json, ensure_dir, read_json, resolve_path

__all__ = ["TrialResult", "TrialContext", "Objective", "STATUSES", "load_objective", "validate_points",
           "point_dir", "PACKAGE_OBJECTIVES", "ALLOW_ENV", "trust_objective", "trusted_objectives",
           "require_allowed_objective", "check_allow_list", "sweep_folder"]

STATUSES = ("ok", "diverged")

# Trust model (docs/sweeps.md): a sweep's storage names its objective, and every worker imports and calls it,
# so whoever can write the storage could make every worker run code of their choice. Workers therefore run
# only objectives that deeplimit ships (below) or that the person starting them named: with --allow-objective
# (allow_objectives=), in $DEEPLIMIT_ALLOW_OBJECTIVES, or by creating the sweep in the same process.
PACKAGE_OBJECTIVES = frozenset({
    "deeplimit.transfer.objectives:train_objective",
    "deeplimit.transfer.demo:quadratic",
    "deeplimit.sweep.demo:burn",
})
ALLOW_ENV = "DEEPLIMIT_ALLOW_OBJECTIVES"
_created: dict[tuple[str, str], set[str]] = {}  # (storage URL, sweep name) -> objectives created in this process


def trust_objective(storage: str, name: str, objective: str) -> None:
    """Record that this process created sweep ``name`` in ``storage`` with ``objective`` (the user named it)."""
    _created.setdefault((storage, name), set()).add(objective)


def trusted_objectives(storage: str, name: str) -> list[str]:
    """User objectives this process created sweep ``name`` of ``storage`` with (handed on to its workers)."""
    return sorted(_created.get((storage, name), ()))


def check_allow_list(allow: Any) -> tuple[str, ...]:
    """``allow`` as a tuple of ``'package.module:function'`` strings, or a DeeplimitError naming the bad entry."""
    if allow is None:
        return ()
    if isinstance(allow, str):
        allow = [allow]
    out = []
    for item in allow:
        if not isinstance(item, str) or item.count(":") != 1 or not all(item.partition(":")[::2]):
            raise DeeplimitError(f"allowed objective {item!r} must look like package.module:function, e.g. "
                                 "--allow-objective mypkg.objectives:train")
        out.append(item.strip())
    return tuple(out)


def require_allowed_objective(path: str, storage: str, name: str, allow: Any = ()) -> None:
    """Refuse to run an objective named by a sweep's storage unless deeplimit ships it or the user allowed it.

    Allowed: :data:`PACKAGE_OBJECTIVES`; ``allow`` (``--allow-objective``); the comma-separated list in
    ``$DEEPLIMIT_ALLOW_OBJECTIVES``; an objective this process created the sweep with (:func:`trust_objective`).
    Checked before anything is imported.
    """
    env = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]
    allowed = PACKAGE_OBJECTIVES | set(check_allow_list(allow)) | set(env) | set(trusted_objectives(storage, name))
    if isinstance(path, str) and path in allowed:
        return
    shown = path if isinstance(path, str) else repr(path)
    raise DeeplimitError(f"sweep {name!r}: its storage names the objective {shown[:200]!r}, which deeplimit does not "
                         "ship and you did not allow; whoever can write a sweep's storage chooses the code its "
                         f"workers run, so a user objective runs only when named where the workers start: pass "
                         f"--allow-objective {shown[:200]} (allow_objectives=[...] in Python, or ${ALLOW_ENV}) if you "
                         "trust it")


def sweep_folder(given: str | os.PathLike[str] | None, stored: Any) -> Path:
    """The folder a worker writes in: ``given`` (the user's ``--run-dir``), else the one the storage records.

    A folder read from the storage is used only if it is a plain absolute path (no ``..``) that exists already:
    a storage edited by someone else cannot make workers create or write folders elsewhere.
    """
    if given:
        return ensure_dir(resolve_path(given, "run folder"), "run folder")
    if not isinstance(stored, str) or not stored:
        raise DeeplimitError("the sweep's storage records no run folder; pass --run-dir DIR (run_dir= in Python)")
    text = stored[:300]
    if ("\0" in stored or not os.path.isabs(stored) or ".." in Path(stored).parts
            or os.path.normpath(stored) != stored.rstrip("/") or stored.startswith("//")):
        raise DeeplimitError(f"the run folder {text!r} recorded in the sweep's storage is not a plain absolute "
                             "path (the storage was changed outside deeplimit); workers write only where you "
                             "say: pass --run-dir DIR (run_dir= in Python)")
    path = resolve_path(stored, "run folder recorded in the storage")
    if not path.is_dir():
        raise DeeplimitError(f"the run folder {text} recorded in the sweep's storage is not a folder on this "
                             "machine; pass --run-dir DIR (the folder given to create, as this machine sees it)")
    return ensure_dir(path, "run folder")


@dataclass
class TrialResult:
    """What an objective returns.

    Attributes:
        value: the number to minimise. A non-finite value marks the run as diverged and is stored as ``+inf``.
        status: ``"ok"`` or ``"diverged"``. A diverged run is a completed run, never retried.
        rows: tidy observations of this run, one dict per (step, metric): at least ``metric`` and
            ``value``, usually ``step``; extra keys become extra columns. The runner adds the point's
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
            # Any non-finite value means diverged; +inf keeps it out of every argmin (Optuna stores ±inf,
            # never NaN).
            self.status, self.value = "diverged", math.inf
        if self.status == "diverged":
            self.value = math.inf
        if not isinstance(self.rows, list) or not all(isinstance(r, Mapping) for r in self.rows):
            raise DeeplimitError("TrialResult.rows must be a list of dicts (one per step and metric)")


@dataclass(frozen=True)
class TrialContext:
    """Where and what a run is: given to the objective alongside the point.

    ``run_dir`` is private to this grid point of this sweep and survives retries: write checkpoints there
    (e.g. ``context.checkpoint_path``) and resume from them when ``attempt > 1``.
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


Objective = Callable[[dict[str, Any], TrialContext], "TrialResult | float"]


def load_objective(path: str) -> Objective:
    """Import ``"package.module:attribute"``; the error names the missing piece and the fix."""
    if not isinstance(path, str) or ":" not in path:
        raise DeeplimitError(f"objective {path!r} must be a dotted path 'package.module:function', "
                             "e.g. 'deeplimit.transfer.demo:quadratic'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DeeplimitError(f"cannot import module {module_name!r} of objective {path!r} ({exc}); install "
                             "the package or put it on PYTHONPATH on every worker machine") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise DeeplimitError(f"module {module_name!r} has no attribute {attr!r}; check the objective "
                                 "path")
    if not callable(fn):
        raise DeeplimitError(f"objective {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def validate_points(objective: Objective, points: list[dict[str, Any]], labels: list[str] | None = None) -> None:
    """Call ``objective.validate(point)`` on every full point (if the objective has one).

    The first bad point stops it with its own message, prefixed by which point it was (``labels[i]``, e.g. its
    run key, or the point itself).
    """
    validate = getattr(objective, "validate", None)
    if validate is None:
        return
    for i, point in enumerate(points):
        try:
            validate(dict(point))
        except DeeplimitError as exc:
            shown = labels[i] if labels else ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise DeeplimitError(f"grid point {shown} is invalid: {exc}") from None


def _json_scalar(x: Any) -> Any:
    return x if isinstance(x, str | int | float | bool) or x is None else str(x)


def config_hash(study_name: str, objective: str, full_point: Mapping[str, Any]) -> str:
    """Hex digest of everything a run depends on (what its checkpoints may be reused for)."""
    blob = json.dumps({"sweep": study_name, "objective": objective,
                       "point": {k: _json_scalar(v) for k, v in sorted(full_point.items())}},
                      sort_keys=True, allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def point_dir(sweep_dir: Path, study_name: str, run_key: str, objective: str,
              full_point: Mapping[str, Any]) -> Path:
    """The private directory of one grid point, created (and checked) here.

    ``sweep_dir/runs/<readable key>-<hash of sweep, objective and full point>``: the readable part is for
    people, the hash keeps other sweeps and other settings out. ``point.json`` inside records the point; if
    it disagrees (a hash collision or a hand-edited folder) the run is refused rather than resumed.
    """
    digest = config_hash(study_name, objective, full_point)
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", run_key.replace('"', ""))[:80]
    run_dir = ensure_dir(Path(sweep_dir) / "runs" / f"{stem}-{digest[:12]}", "run directory")
    record = {"sweep": study_name, "objective": objective, "run_key": run_key, "config_hash": digest,
              "point": {k: _json_scalar(v) for k, v in full_point.items()}}
    marker = run_dir / "point.json"
    if marker.exists():
        old = read_json(marker, "run record")
        if not isinstance(old, dict) or old.get("config_hash") != digest:
            raise DeeplimitError(f"run directory {run_dir} belongs to another run ({marker} records a different "
                                 "sweep, objective or point); delete that folder or use another --run-dir")
    else:
        atomic_write_json(marker, record)
    return run_dir
