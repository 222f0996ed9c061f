"""``deeplimit reproduce``: the main job — both papers' key results as one HTML report."""

from __future__ import annotations

import argparse

from deeplimit.report.reproduce import SECTIONS, reproduce


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce both papers' key results at CPU scale (HTML report)",
                       description="Runs the Shaped-Transformer SDE checks, the Depth-muP/CompleteP transfer sweeps "
                                   "and the diagnostics, and writes one self-contained HTML report. Re-running "
                                   "resumes from the cached sweeps and tables.")
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--full", action="store_const", const="full", dest="tier", help="the long version (hours)")
    tier.add_argument("--smoke", action="store_const", const="smoke", dest="tier", help="a tiny version (CI)")
    p.set_defaults(tier="quick")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--workers", type=int, default=2, help="sweep worker processes (one per core)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under --out)")
    p.add_argument("--only", nargs="+", default=None, choices=sorted(SECTIONS), help="run only these sections")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = reproduce(args.out, args.tier, args.workers, args.storage, args.only)
    print(f"report: {path}")
    return 0
