"""``deeplimit reproduce``: the main job — both papers' key results as one HTML report."""

from __future__ import annotations

import argparse

from deeplimit.cli._args import parse_value, positive_int

# Section keys, kept here so that building the parser never imports the report (and torch, pandas, optuna).
SECTIONS = ("sde", "rank-collapse", "stopping", "depth-transfer", "activation", "block-depth", "width-transfer",
            "coord-check", "coord-check-width", "feature-diversity", "transformer-depth", "shaped-vs-preln",
            "sde-convergence", "muon-transfer")

DESCRIPTION = """\
Runs the Shaped-Transformer SDE checks, the Depth-muP/CompleteP transfer sweeps and the diagnostics, and writes
one self-contained HTML report (<out>/<tier>/report.html). Re-running resumes from the cached sweeps and
tables (a cached table is reused only for the same settings). A section that crashes is marked "failed" in the
report, the other sections still run, and the command exits with status 1.

Examples:

    deeplimit reproduce --smoke --out runs/ci
    deeplimit reproduce --only sde stopping --set stopping.paths=64
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce both papers' key results at CPU scale (HTML report)",
                       description=DESCRIPTION)
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--smoke", action="store_const", const="smoke", dest="tier", help="a tiny version (CI)")
    tier.add_argument("--standard", action="store_const", const="standard", dest="tier",
                      help="the documented evidence runs (1-2 h)")
    tier.add_argument("--full", action="store_const", const="full", dest="tier", help="the long version (hours)")
    p.set_defaults(tier="quick")
    p.add_argument("--out", default="runs/reproduce", help="output folder (a subfolder per tier)")
    p.add_argument("--workers", type=positive_int, default=2, help="sweep worker processes (one per core)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL for the sweeps (default: SQLite under --out); shown redacted")
    p.add_argument("--only", nargs="+", default=None, choices=SECTIONS, metavar="SECTION",
                   help=f"run only these sections: {', '.join(SECTIONS)}")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change a setting of a non-sweep section, e.g. stopping.paths=64; repeatable")
    p.add_argument("--fresh", action="store_true",
                   help="ignore every cache and recompute the chosen sections (sweeps get a new name)")
    p.add_argument("--seeds", choices=("confirmation", "pilot"), default="confirmation",
                   help="the protocol's seed set: confirmation (decides verdicts, the default) or pilot (tunes "
                        "settings; its verdicts are exploratory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _overrides(items: list[str]) -> dict[str, dict]:
    from deeplimit.errors import DeeplimitError

    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not section or not name:
            raise DeeplimitError(f"--set expects SECTION.KEY=VALUE, got {item!r}; e.g. --set stopping.paths=64")
        out.setdefault(section, {})[name.replace("-", "_")] = parse_value(value)
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    import optuna

    from deeplimit.report.reproduce import reproduce

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the report's progress, not Optuna's INFO lines

    report = reproduce(args.out, args.tier, args.workers, args.storage, args.only, overrides=_overrides(args.set),
                       progress=not args.quiet, fresh=args.fresh, seed_set=args.seeds)
    print(f"report: {report.path} (and {report.path.with_name('report.json')})")
    if report.failed:
        print(f"deeplimit reproduce: {len(report.failed)} section(s) failed: {', '.join(report.failed)} (their "
              f"errors are in the report)", file=sys.stderr)
        return 1
    return 0
