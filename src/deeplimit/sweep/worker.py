"""One sweep worker process: ``python -m deeplimit.sweep.worker --storage URL --name NAME``.

:func:`deeplimit.sweep.engine.launch_workers` starts these; on other machines start them by hand (or with
``deeplimit sweep worker``), pointing at the same PostgreSQL URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from deeplimit.errors import DeeplimitError


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by this module and ``deeplimit sweep worker``."""
    parser.add_argument("--n-trials", type=int, default=None, help="stop after this many trials")
    parser.add_argument("--heartbeat-interval", type=int, default=5,
                        help="seconds between heartbeats (default 5)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="seconds without heartbeat before a trial counts as dead (default 2x interval)")
    parser.add_argument("--max-retries", type=int, default=2,
                        help="retries of a grid point whose worker died or whose objective raised")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (0: leave)")
    parser.add_argument("--share", default=None, metavar="I/N",
                        help="worker I of N started together: queue every N-th grid point first")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit when the queue is empty even if other workers' trials still run")


def _share(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DeeplimitError(f"--share {text!r} must look like I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise DeeplimitError(f"--share {text!r}: need 0 <= I < N")
    return i, n


def worker_kwargs(args: argparse.Namespace) -> dict:
    return {"share": _share(args.share), "n_trials": args.n_trials,
            "heartbeat_interval": args.heartbeat_interval,
            "grace_period": args.grace_period, "max_retries": args.max_retries,
            "run_dir": getattr(args, "run_dir", None), "threads": args.threads or None,
            "wait_for_running": not args.no_wait}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeplimit.sweep.worker")
    parser.add_argument("--storage", required=True, help="storage URL")
    parser.add_argument("--name", required=True, help="sweep name")
    parser.add_argument("--run-dir", default=None, help="per-run directories (default: as created)")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    from deeplimit.sweep.engine import run_worker

    try:
        report = run_worker(args.storage, args.name, **worker_kwargs(args))
    except DeeplimitError as exc:
        print(f"deeplimit sweep worker: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
