"""deeplimit sweep {create,launch,worker,status,results,analyze,slurm,postgres}: grid sweeps on Optuna.

A local session (SQLite under the run directory, two single-thread workers):

  deeplimit sweep create  --name demo --run-dir runs/demo --grid demo-quadratic --set seeds=2
  deeplimit sweep launch  --name demo --run-dir runs/demo --workers 2
  deeplimit sweep status  --name demo --run-dir runs/demo --table
  deeplimit sweep analyze --name demo --run-dir runs/demo --group rule --size depth

Several machines: start PostgreSQL (deeplimit sweep postgres start --dir DIR prints how), put the URL in
$DEEPLIMIT_STORAGE_URL (keeps the password off command lines), create the sweep once and run
deeplimit sweep worker --name NAME on each machine, or deeplimit sweep slurm --name NAME --array 32 on a
Slurm cluster. Ctrl-C stops cleanly; running the same command again resumes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from deeplimit.errors import DeeplimitError
from deeplimit.runtime import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line naming the fix (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _clean(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Quiet Optuna's INFO lines, and turn Ctrl-C outside a worker loop into a one-line exit."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        import os

        import optuna

        from deeplimit.secrets import STORAGE_ENV, redact_text

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return fn(args)
        except KeyboardInterrupt:
            print("deeplimit sweep: interrupted; run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        except DeeplimitError as exc:
            # The last guard before a terminal: whatever a message quotes (a URL, a path made from it), no
            # password in it is shown, however malformed the URL was.
            raise DeeplimitError(redact_text(str(exc), getattr(args, "storage", None),
                                             os.environ.get(STORAGE_ENV))) from None

    return run


# ------------------------------------------------------------------------------------------------
# Argument types (each error names the fix)
# ------------------------------------------------------------------------------------------------
def _int_range(low: int, high: int | None, example: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; e.g. {example}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"≥ {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}; e.g. {example}")
        return value

    return parse


def _positive_float(example: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; e.g. {example}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}; e.g. {example}")
        return value

    return parse


def _text(example: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty; e.g. {example}")
        return text

    return parse


def _storage(args: argparse.Namespace) -> str:
    from deeplimit.sweep.storage import resolve_storage

    return resolve_storage(args.storage, args.run_dir)


def _common(p: argparse.ArgumentParser, run_dir_help: str = "sweep folder; its sweep.db is the default storage, "
            "its runs/ the per-point folders (default: as given to create)") -> None:
    p.add_argument("--storage", default=None, type=_text("--storage sqlite:////abs/path/sweep.db"),
                   help="storage URL: sqlite:///PATH, postgresql+psycopg2://USER@HOST:PORT/DB or journal:PATH "
                        "(default: $DEEPLIMIT_STORAGE_URL, else RUN_DIR/sweep.db); prefer the environment "
                        "variable for URLs with a password")
    p.add_argument("--name", required=True, type=_text("--name depth"), help="sweep (Optuna study) name (required)")
    p.add_argument("--run-dir", default=None, type=_text("--run-dir runs/depth"), help=run_dir_help)


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------------------------------
# Commands: parse, call one library function, print
# ------------------------------------------------------------------------------------------------
@_clean
def _cmd_create(args: argparse.Namespace) -> int:
    if args.set and args.grid is None:  # before the imports below (pandas, Optuna: about 2 s of CPU)
        raise DeeplimitError("--set changes a named grid (--grid NAME); edit the JSON spec file instead")
    import os

    from deeplimit.cli._args import parse_sets
    from deeplimit.secrets import STORAGE_ENV
    from deeplimit.transfer.grids import grid_fields
    from deeplimit.transfer.sweeps import create_transfer_sweep

    overrides = parse_sets(args.set, grid_fields(args.grid)) if args.set else None
    sweep = create_transfer_sweep(args.name, grid=args.grid, overrides=overrides, spec_file=args.spec,
                                  objective=args.objective, storage=args.storage or os.environ.get(STORAGE_ENV),
                                  run_dir=args.run_dir or "sweep")
    print(sweep)  # the storage URL is shown redacted
    return 0


@_clean
def _cmd_worker(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from deeplimit.sweep.worker import run_worker, worker_kwargs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    report = run_worker(_storage(args), args.name, **worker_kwargs(args))
    print(json.dumps({**asdict(report), "exit_code": report.exit_code}))
    if report.interrupted:
        print("deeplimit sweep worker: interrupted; the running point was queued again; run the same command "
              "to resume", file=sys.stderr)
    return report.exit_code


def _failures(status: Any, limit: int = 5) -> list[str]:
    table = status.table
    if table.empty or "state" not in table:
        return []
    failed = table[table["state"] == "failed"]
    return [f"  {row.run_key}: {row.last_error}" for row in failed.head(limit).itertuples()]


@_clean
def _cmd_launch(args: argparse.Namespace) -> int:
    from deeplimit.sweep.launch import launch_workers
    from deeplimit.sweep.worker import worker_kwargs

    kwargs = worker_kwargs(args)
    kwargs.pop("share", None)  # launch gives each worker its share
    report = launch_workers(_storage(args), args.name, args.workers, quiet=args.quiet, **kwargs)
    print(report.status)
    if report.interrupted:
        print("interrupted: every worker recorded its running point and stopped; run the same command again to "
              "resume (finished points are kept)", file=sys.stderr)
    elif report.exit_code:
        lines = _failures(report.status)
        if lines:
            print(f"{report.status.failed} point(s) failed after all retries:", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
        bad = [f"worker {i}: exit {c}" for i, c in enumerate(report.codes) if c]
        if bad:
            print("workers: " + ", ".join(bad) + f"; logs in {report.log_dir}", file=sys.stderr)
        print("fix the cause, then `deeplimit sweep create` again (same arguments) re-queues failed points",
              file=sys.stderr)
    return report.exit_code


@_clean
def _cmd_status(args: argparse.Namespace) -> int:
    from deeplimit.sweep.launch import watch
    from deeplimit.sweep.results import sweep_status

    if args.watch:
        try:
            st = watch(_storage(args), args.name, poll_s=args.poll, quiet=args.quiet)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    else:
        st = sweep_status(_storage(args), args.name)
    print(st)
    if args.table and not st.table.empty:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
            print(st.table.drop(columns=["run_key"]).to_string(index=False))
    if args.json:
        print(json.dumps(st.counts()))
    return 0


@_clean
def _cmd_results(args: argparse.Namespace) -> int:
    from deeplimit.sweep.results import sweep_status, write_results
    from deeplimit.transfer.table import transfer_results

    out = args.out or str(Path(args.run_dir or ".") / "results")
    storage = _storage(args)
    frame = transfer_results(storage, args.name)
    if frame.empty:
        # An empty table written with exit 0 reads as success; say why there is nothing instead.
        status = sweep_status(storage, args.name)
        lines = _failures(status, limit=1)
        raise DeeplimitError(f"sweep {args.name!r} has no completed runs ({status}); nothing was written"
                             + (f"; first failure:{lines[0]}" if lines else "")
                             + ("; see `deeplimit sweep status --table`, fix the cause, then `deeplimit sweep create` "
                                "again (same arguments) re-queues failed points" if status.failed else
                                "; run workers first (deeplimit sweep launch)"))
    paths = write_results(frame, out)
    runs = frame["run_id"].nunique() if len(frame) else 0
    print(f"{len(frame)} rows from {runs} runs -> " + ", ".join(str(p) for p in paths.values()))
    return 0


@_clean
def _cmd_analyze(args: argparse.Namespace) -> int:
    from deeplimit.transfer.sweeps import analyze_sweep

    out = args.out or Path(args.run_dir or ".") / "analysis"
    res = analyze_sweep(_storage(args), args.name, out, group=args.group.split(","), size=args.size,
                        metric=args.metric, n_boot=args.n_boot, ylabel=args.ylabel)
    for text in res.analysis.drift["verdict_text"]:
        print(text)
    print("written: " + ", ".join(str(p) for p in res.paths))
    return 0


@_clean
def _cmd_slurm(args: argparse.Namespace) -> int:
    from deeplimit.sweep.slurm import submit_workers
    from deeplimit.sweep.worker import worker_kwargs

    kwargs = worker_kwargs(args)
    kwargs.pop("share", None)
    storage = _storage(args)
    folder = args.folder or str(Path(args.run_dir or ".") / "slurm")
    jobs = submit_workers(storage, args.name, args.array, folder=folder, executor=args.executor,
                          timeout_min=args.time, partition=args.partition, cpus_per_task=args.cpus_per_task,
                          mem_gb=args.mem_gb, max_parallel=args.max_parallel, **kwargs)
    print(f"submitted {len(jobs)} worker task(s) of sweep {args.name!r} ({args.executor}): job "
          f"{jobs[0].job_id.split('_')[0] if jobs else '-'}; logs and pickles in {folder}")
    if not args.wait:
        print(f"follow them with: deeplimit sweep status --name {args.name} --watch")
        return 0
    from deeplimit.sweep.launch import watch

    status = watch(storage, args.name, quiet=args.quiet)
    codes = []
    for job in jobs:
        try:
            codes.append(int(job.result().get("exit_code", 0)))
        except Exception as exc:  # the task itself crashed (its log is in the folder)
            print(f"task {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}",
                  file=sys.stderr)
            codes.append(EXIT_BAD_INPUT)  # as a worker that could not start reports itself
    print(status)
    bad = [c for c in codes if c not in (0, EXIT_FAILED)]
    return bad[0] if bad else (EXIT_FAILED if status.failed or any(codes) else 0)


@_clean
def _cmd_postgres(args: argparse.Namespace) -> int:
    from deeplimit.secrets import STORAGE_ENV, redact_url
    from deeplimit.sweep.postgres import start_cluster, stop_cluster

    if args.action == "start":
        cluster = start_cluster(args.dir, port=args.port, database=args.database)
        print(f"PostgreSQL on 127.0.0.1:{cluster.port}, database {cluster.database!r}, password login\n"
              f"URL: {redact_url(cluster.url)}\n"
              f"the full URL is in {cluster.url_file} (readable by you only); use it with\n"
              f"  export {STORAGE_ENV}=\"$(cat {cluster.url_file})\"")
    else:
        stop_cluster(args.dir, remove=args.remove)
        print(f"stopped the cluster in {args.dir}" + (" and removed it" if args.remove else ""))
    return 0


# ------------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> dict[str, argparse.ArgumentParser]:
    """Add ``deeplimit sweep …`` to the top-level parser; return its sub-command parsers by name."""
    from deeplimit.sweep.worker import add_worker_arguments

    sweep = subparsers.add_parser("sweep", help="grid sweeps on Optuna: create, launch, status, analyze, Slurm",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("create", help="create or resume a sweep from a named grid or a JSON spec",
                       description="Create (or resume) a sweep. Every grid point is validated before anything is "
                                   "written.")
    _common(p, "sweep folder: per-point run folders and the default storage RUN_DIR/sweep.db (default: ./sweep)")
    p.add_argument("--grid", default=None, type=_text("--grid depth-transfer"),
                   help="named experiment grid (deeplimit.transfer.grids.EXPERIMENT_GRIDS), e.g. depth-transfer, "
                        "width-transfer, demo-quadratic")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="grid argument or setting, repeatable, read as its type (names with - or _): --set "
                        "tier=quick --set depth=8,16 --set log2_lr=-10:-5:0.5 --set train_io=true")
    p.add_argument("--spec", default=None, type=_text("--spec grid.json"),
                   help="JSON spec file: {axes, fixed, objective, metric} (instead of --grid)")
    p.add_argument("--objective", default=None, type=_text("--objective pkg.module:function"),
                   help="override the objective 'package.module:function' (default: the spec's)")
    p.set_defaults(func=_cmd_create)

    p = sub.add_parser("launch", help="run N local worker processes until the sweep is done (one progress bar)")
    _common(p)
    p.add_argument("--workers", type=_int_range(1, 256, "--workers 2"), default=2,
                   help="worker processes (default: %(default)s)")
    add_worker_arguments(p, share=False)
    _add_quiet(p)
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("worker", help="run one worker in this process (one per core or machine)")
    _common(p)
    add_worker_arguments(p)
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("status", help="done / running / failed / left grid points; --watch for a live bar")
    _common(p)
    p.add_argument("--table", action="store_true", help="also print one line per grid point")
    p.add_argument("--json", action="store_true", help="also print the counts as JSON")
    p.add_argument("--watch", action="store_true", help="show a progress bar with ETA until the sweep is finished")
    p.add_argument("--poll", type=_positive_float("--poll 2"), default=2.0,
                   help="seconds between reads with --watch (default: %(default)s)")
    _add_quiet(p)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("results", help="write the tidy long table (CSV, and Parquet with pyarrow)")
    _common(p)
    p.add_argument("--out", default=None, type=_text("--out runs/depth/results"),
                   help="output folder (default: RUN_DIR/results)")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser("analyze", help="eta* per size, drift and verdict; summary/drift CSVs and plots")
    _common(p)
    p.add_argument("--out", default=None, type=_text("--out runs/depth/analysis"),
                   help="output folder (default: RUN_DIR/analysis)")
    p.add_argument("--metric", default=None, type=_text("--metric window_loss"),
                   help="metric to minimise (default: the spec's metric)")
    p.add_argument("--group", default="rule", type=_text("--group rule"),
                   help="comma-separated grouping columns (default: %(default)s)")
    p.add_argument("--size", default="depth", type=_text("--size depth"),
                   help="size column: depth or width (default: %(default)s)")
    p.add_argument("--n-boot", type=_int_range(1, 1_000_000, "--n-boot 1000"), default=1000,
                   help="bootstrap resamples over seeds (default: %(default)s)")
    p.add_argument("--ylabel", default="train loss (cross-entropy, nats)",
                   help="loss axis label (default: %(default)s)")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("slurm", help="submit workers as a Slurm job array (submitit)",
                       description="Submit ARRAY workers of a created sweep as one Slurm job array. Use PostgreSQL "
                                   "or journal:/shared/disk/FILE as storage; see docs/cluster.md.")
    _common(p)
    p.add_argument("--array", required=True, type=_int_range(1, 100_000, "--array 32"), help="number of workers")
    p.add_argument("--executor", choices=["slurm", "local", "debug"], default="slurm",
                   help="slurm, or local processes / this process to try it out (default: %(default)s)")
    p.add_argument("--folder", default=None, type=_text("--folder /shared/runs/depth/slurm"),
                   help="submitit folder for job files and logs, on a shared disk (default: RUN_DIR/slurm)")
    p.add_argument("--partition", default=None, type=_text("--partition cpu"),
                   help="Slurm partition (default: the cluster's)")
    p.add_argument("--time", type=_int_range(1, 525_600, "--time 240"), default=1440,
                   help="wall-time limit per worker in minutes (default: %(default)s)")
    p.add_argument("--cpus-per-task", type=_int_range(1, 1024, "--cpus-per-task 1"), default=1,
                   help="CPUs per worker (default: %(default)s)")
    p.add_argument("--mem-gb", type=_positive_float("--mem-gb 4"), default=None,
                   help="memory per worker in GB (default: the cluster's)")
    p.add_argument("--max-parallel", type=_int_range(1, 100_000, "--max-parallel 16"), default=None,
                   help="at most this many workers at once (default: no limit)")
    p.add_argument("--wait", action="store_true", help="wait for the workers, with a progress bar")
    add_worker_arguments(p, share=False)
    _add_quiet(p)
    p.set_defaults(func=_cmd_slurm)

    p = sub.add_parser("postgres", help="start/stop a private PostgreSQL server on 127.0.0.1 (password login)")
    p.add_argument("action", choices=["start", "stop"], help="start (initialising if new) or stop")
    p.add_argument("--dir", required=True, type=_text("--dir /var/tmp/deeplimit-pg"),
                   help="cluster folder: new, empty, or one made by this command (reachable by user postgres when "
                        "run as root)")
    p.add_argument("--port", type=_int_range(1024, 65535, "--port 5433"), default=None,
                   help="port (default: a free one)")
    p.add_argument("--database", default="deeplimit",
                   help="database to create (letters, digits, _; default: %(default)s)")
    p.add_argument("--remove", action="store_true", help="with stop: delete the cluster folder")
    p.set_defaults(func=_cmd_postgres)
    return dict(sub.choices)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m deeplimit.cli.sweep``), as ``deeplimit sweep`` runs it."""
    parser = _Parser(prog="deeplimit")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except DeeplimitError as exc:
        print(f"deeplimit sweep: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
