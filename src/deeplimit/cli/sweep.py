"""``deeplimit sweep {create,worker,launch,status,results,analyze,postgres}``.

Typical local session (SQLite under the run directory, two single-thread workers)::

    deeplimit sweep create  --name demo --run-dir runs/demo --preset demo-quadratic --set seeds=2
    deeplimit sweep launch  --name demo --run-dir runs/demo --workers 2
    deeplimit sweep status  --name demo --run-dir runs/demo
    deeplimit sweep analyze --name demo --run-dir runs/demo --group preset --size depth

Several machines: ``deeplimit sweep postgres start --dir /var/tmp/pg`` (or any PostgreSQL), then pass
``--storage postgresql+psycopg2://…`` to ``create`` and run ``deeplimit sweep worker`` on each machine.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from deeplimit.errors import DeeplimitError


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise DeeplimitError(f"--set {item!r} must look like key=value (e.g. --set seeds=2)")
        key, _, raw = item.partition("=")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw  # plain strings need no quotes
    return out


def _storage(args: argparse.Namespace) -> str:
    from deeplimit.sweep.engine import default_storage

    if args.storage:
        return args.storage
    if args.run_dir:
        return default_storage(args.run_dir)
    raise DeeplimitError("give --storage URL or --run-dir DIR (whose sweep.db is the default storage)")


def _common(p: argparse.ArgumentParser, run_dir_help: str = "sweep directory (default storage: DIR/sweep.db)"
            ) -> None:
    p.add_argument("--storage", default=None, help="storage URL: sqlite:///PATH, postgresql+psycopg2://…, "
                   "journal:PATH")
    p.add_argument("--name", required=True, help="sweep (study) name")
    p.add_argument("--run-dir", default=None, help=run_dir_help)


def _cmd_create(args: argparse.Namespace) -> int:
    from deeplimit.sweep.engine import create_sweep
    from deeplimit.sweep.grid import SweepSpec
    from deeplimit.sweep.presets import build_preset

    if bool(args.preset) == bool(args.spec):
        raise DeeplimitError("give exactly one of --preset NAME or --spec FILE.json")
    if args.preset:
        spec = build_preset(args.preset, **_parse_sets(args.set))
    else:
        path = Path(args.spec)
        if not path.exists():
            raise DeeplimitError(f"spec file {path} does not exist")
        spec = SweepSpec.from_json(path.read_text())
    run_dir = args.run_dir or "sweep"
    sweep = create_sweep(args.name, spec, objective=args.objective, storage=args.storage, run_dir=run_dir)
    print(f"sweep {sweep.name!r}: {sweep.points} points, {sweep.done} done, {sweep.requeued} failed points "
          f"re-queued\nstorage: {sweep.storage}\nrun dir: {sweep.run_dir}")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from deeplimit.sweep.engine import run_worker
    from deeplimit.sweep.worker import worker_kwargs

    report = run_worker(_storage(args), args.name, **worker_kwargs(args))
    print(json.dumps(asdict(report)))
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from deeplimit.sweep.engine import launch_workers, sweep_status
    from deeplimit.sweep.worker import worker_kwargs

    kwargs = worker_kwargs(args)
    kwargs.pop("wait_for_running")
    kwargs.pop("share")  # launch gives each worker its share
    codes = launch_workers(_storage(args), args.name, args.workers, **kwargs)
    print(sweep_status(_storage(args), args.name))
    return 0 if all(c == 0 for c in codes) else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from deeplimit.sweep.engine import sweep_status

    st = sweep_status(_storage(args), args.name)
    print(st)
    if args.table:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
            print(st.table.drop(columns=["run_key"]).to_string(index=False))
    if args.json:
        print(json.dumps(st.counts()))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from deeplimit.sweep.engine import results_frame, write_results

    frame = results_frame(_storage(args), args.name)
    out = args.out or str(Path(args.run_dir or ".") / "results")
    paths = write_results(frame, out)
    print(f"{len(frame)} rows from {frame['run_id'].nunique() if len(frame) else 0} runs -> "
          + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from deeplimit.sweep.analysis import analyze
    from deeplimit.sweep.engine import _open_for_reading, results_frame, write_results
    from deeplimit.sweep.plots import plot_analysis

    storage = _storage(args)
    _, spec = _open_for_reading(storage, args.name)
    frame = results_frame(storage, args.name)
    if frame.empty:
        raise DeeplimitError(f"sweep {args.name!r} has no completed runs yet; run workers first")
    group = [g.strip() for g in args.group.split(",")]
    result = analyze(frame, metric=args.metric or spec.metric, group=group, size=args.size,
                     n_boot=args.n_boot)
    out = Path(args.out or Path(args.run_dir or ".") / "analysis")
    write_results(frame, out, "long")
    result.summary.to_csv(out / "summary.csv", index=False)
    result.drift.to_csv(out / "drift.csv", index=False)
    plots = plot_analysis(result, out, ylabel=args.ylabel)
    for text in result.drift["verdict_text"]:
        print(text)
    print("written: " + ", ".join(str(p) for p in [out / "summary.csv", out / "drift.csv", *plots]))
    return 0


def _cmd_postgres(args: argparse.Namespace) -> int:
    from deeplimit.sweep.postgres import start_cluster, stop_cluster

    if args.action == "start":
        cluster = start_cluster(args.dir, port=args.port, database=args.database)
        print(cluster.url)
    else:
        stop_cluster(args.dir, remove=args.remove)
        print(f"stopped the cluster in {args.dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``deeplimit sweep …`` to the top-level parser."""
    from deeplimit.sweep.worker import add_worker_arguments

    sweep = subparsers.add_parser("sweep", help="LR-transfer sweeps on Optuna (create, run, analyze)",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("create", help="create or resume a sweep from a preset or a JSON spec")
    _common(p, "sweep directory: per-run checkpoints and the default storage DIR/sweep.db (default ./sweep)")
    p.add_argument("--preset", default=None, help="named preset (deeplimit.sweep.presets.PRESETS)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="preset argument (repeatable)")
    p.add_argument("--spec", default=None, help="JSON spec file: {axes, fixed, objective, metric}")
    p.add_argument("--objective", default=None, help="override the objective 'package.module:function'")
    p.set_defaults(func=_cmd_create)

    p = sub.add_parser("worker", help="run one worker in this process (start one per core / machine)")
    _common(p)
    add_worker_arguments(p)
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("launch", help="run N local worker processes until the sweep is done")
    _common(p)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    add_worker_arguments(p)
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("status", help="counts of done / running / failed / left grid points")
    _common(p)
    p.add_argument("--table", action="store_true", help="also print one line per grid point")
    p.add_argument("--json", action="store_true", help="also print the counts as JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("results", help="write the tidy long table (CSV, and Parquet if pyarrow)")
    _common(p)
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/results)")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser("analyze", help="eta* per size, drift and verdict; summary/drift CSVs and plots")
    _common(p)
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/analysis)")
    p.add_argument("--metric", default=None, help="metric to minimise (default: the spec's metric)")
    p.add_argument("--group", default="preset", help="comma-separated grouping columns (default preset)")
    p.add_argument("--size", default="depth", help="size column: depth or width (default depth)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over seeds")
    p.add_argument("--ylabel", default="train loss (cross-entropy, nats)", help="loss axis label")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("postgres", help="start/stop a private PostgreSQL cluster on 127.0.0.1")
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", required=True, help="cluster directory (must be reachable by user postgres)")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.add_argument("--database", default="deeplimit", help="database to create (default deeplimit)")
    p.add_argument("--remove", action="store_true", help="with stop: delete the cluster directory")
    p.set_defaults(func=_cmd_postgres)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m deeplimit.cli.sweep``) until the top-level CLI lists this module."""
    parser = argparse.ArgumentParser(prog="deeplimit")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except DeeplimitError as exc:
        print(f"deeplimit sweep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
