"""Workers as a Slurm job array, through submitit (``deeplimit sweep slurm --name … --array 32``).

Each array task runs one :func:`deeplimit.sweep.worker.run_worker` against a shared storage: PostgreSQL, or
a journal file on a disk every node mounts (``journal:/shared/sweeps/NAME.journal``). SQLite is refused on
Slurm: its locks do not work across machines. Task i of n claims every n-th grid point first, so tasks
started together do not collide; a task that dies (preempted, out of time, node failure) leaves its point to
be retried by the others, and SIGTERM — which Slurm sends before it kills a task — stops the task cleanly.

The storage URL (which may hold a password) reaches the tasks through the environment
(:data:`deeplimit.secrets.STORAGE_ENV`), which ``sbatch`` exports to the job by default; it is never part
of the pickled job, the job script or a command line.

``executor="local"`` runs the same array as local processes (submitit's LocalExecutor; used by the tests),
``executor="debug"`` runs it in this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.runtime import THREAD_VARS
from deeplimit.secrets import STORAGE_ENV, redact_url
from deeplimit.sweep.create import OBJECTIVE_ATTR, load_sweep
from deeplimit.sweep.launch import worker_env
from deeplimit.sweep.storage import open_storage
from deeplimit.sweep.trial import check_allow_list, require_allowed_objective, trusted_objectives
from deeplimit.sweep.worker import check_worker_options

__all__ = ["submit_workers", "array_task", "EXECUTORS"]

EXECUTORS = ("slurm", "local", "debug")


def array_task(name: str, index: int, count: int, worker_options: dict[str, Any]) -> dict[str, Any]:
    """Body of array task ``index`` of ``count``: one worker on the storage named by ``$DEEPLIMIT_STORAGE_URL``."""
    import optuna

    from deeplimit.sweep.worker import run_worker

    url = os.environ.get(STORAGE_ENV)
    if not url:
        raise DeeplimitError(f"${STORAGE_ENV} is not set in this job; submit with `deeplimit sweep slurm`, which "
                             "exports it (check that your site does not run sbatch with --export=NONE)")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s task {index}/{count} %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run_worker(url, name, share=(index, count), **worker_options)
    return {**asdict(report), "exit_code": report.exit_code, "task": index}


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in this process while submitting (submitit and sbatch copy the environment), then restore."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def submit_workers(storage: str, name: str, array: int, *, folder: str | os.PathLike[str],
                   executor: str = "slurm", timeout_min: int = 24 * 60, partition: str | None = None,
                   cpus_per_task: int = 1, mem_gb: float | None = None, max_parallel: int | None = None,
                   slurm_options: dict[str, Any] | None = None, **worker_options: Any) -> list[Any]:
    """Submit ``array`` workers of sweep ``name`` as one job array; return submitit's jobs.

    Args:
        storage: the sweep's storage URL (PostgreSQL or ``journal:PATH`` on a shared disk for Slurm).
        name: the sweep (created beforehand with :func:`deeplimit.sweep.create_sweep`).
        array: number of array tasks (workers).
        folder: submitit's folder for job scripts, pickles and logs (on a shared disk).
        executor: ``"slurm"``, ``"local"`` (local processes) or ``"debug"`` (in this process).
        timeout_min: wall-time limit per task in minutes.
        partition, cpus_per_task, mem_gb: Slurm resources per task.
        max_parallel: at most this many tasks at once (``--array=…%K``).
        slurm_options: further submitit Slurm parameters (e.g. ``{"slurm_account": "proj"}``).
        worker_options: options of :func:`run_worker` (``heartbeat_interval``, ``max_retries``, ``threads``, …).
    """
    if executor not in EXECUTORS:
        raise DeeplimitError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if isinstance(array, bool) or not isinstance(array, int) or not 1 <= array <= 100_000:
        raise DeeplimitError(f"--array must be a whole number from 1 to 100000, got {array!r}; e.g. --array 32")
    if executor == "slurm" and storage.startswith("sqlite"):
        raise DeeplimitError(f"storage {redact_url(storage)!r} is SQLite, which cannot be shared by tasks on several "
                             "nodes; use PostgreSQL (--storage postgresql+psycopg2://…) or a journal file on a "
                             "shared disk (--storage journal:/shared/path/NAME.journal)")
    for what, value in (("--time", timeout_min), ("--cpus-per-task", cpus_per_task)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeeplimitError(f"{what} must be a whole number ≥ 1, got {value!r}")
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise DeeplimitError(f"--max-parallel must be a whole number ≥ 1, got {max_parallel!r}")
    check_worker_options(**worker_options)
    study, spec = load_sweep(open_storage(storage, create=False), name, storage)  # fail here, not in every task
    allow = (*check_allow_list(worker_options.get("allow_objectives")), *trusted_objectives(storage, name))
    require_allowed_objective(study.user_attrs.get(OBJECTIVE_ATTR) or spec.objective, storage, name, allow)
    worker_options = {**worker_options, "allow_objectives": tuple(dict.fromkeys(allow))}
    try:
        import submitit
    except ImportError:
        raise DeeplimitError("Slurm job arrays need submitit; install it (pip install submitit)") from None
    folder = Path(folder).resolve()
    try:
        # -P: the folder a task starts in (the submission folder) is kept off its import path, as for local
        # workers (see launch.worker_command).
        python = f"{shlex.quote(sys.executable)} -P"
        ex = submitit.AutoExecutor(folder=folder, cluster=executor, slurm_python=python, local_python=python)
    except Exception as exc:  # no sbatch on this machine, unknown cluster, …
        raise DeeplimitError(f"cannot submit to {executor!r}: {exc}; on a machine without Slurm try --executor "
                             "local") from None
    params: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task,
                              "name": f"deeplimit-{name}"[:64]}
    if mem_gb is not None:
        params["mem_gb"] = mem_gb
    if executor == "slurm":
        if partition:
            params["slurm_partition"] = partition
        if max_parallel:
            params["slurm_array_parallelism"] = max_parallel
        params.update(slurm_options or {})
    try:
        ex.update_parameters(**params)
    except Exception as exc:
        raise DeeplimitError(f"bad Slurm option: {exc}") from None
    env = {k: v for k, v in worker_env(storage, worker_options.get("threads", 1)).items()
           if k in (STORAGE_ENV, "PYTHONPATH", *THREAD_VARS)}
    with _environment(env):
        try:
            return ex.map_array(array_task, [name] * array, list(range(array)), [array] * array,
                                [dict(worker_options)] * array)
        except Exception as exc:  # sbatch refused the job (partition, account, limits …)
            raise DeeplimitError(f"submitting the job array failed: {str(exc).strip().splitlines()[0]}; check the "
                                 "Slurm options (--partition, --time, --mem-gb)") from None
