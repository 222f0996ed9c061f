"""``deeplimit reproduce``: the main job — both papers' key results as one HTML report."""

from __future__ import annotations

import argparse
import typing
from typing import Any

from deeplimit.cli._args import parse_sets, positive_int, setting_key

# Section keys, kept here so that building the parser never imports the report (and torch, pandas, optuna).
SECTIONS = ("sde", "rank-collapse", "stopping", "depth-transfer", "activation", "block-depth", "width-transfer",
            "coord-check", "coord-check-width", "feature-diversity", "transformer-depth", "shaped-vs-preln",
            "sde-convergence", "muon-transfer", "oracle", "oracle-lm", "oracle-lm-mup",
            "oracle-width")

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
    p.add_argument("--workers", type=positive_int, default=2,
                   help="sweep worker processes (one per core; with 1 the sweeps run in this process)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL for the sweeps (default: SQLite under --out); shown redacted")
    p.add_argument("--only", nargs="+", default=None, choices=SECTIONS, metavar="SECTION",
                   help=f"run only these sections: {', '.join(SECTIONS)}")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change a setting of a non-sweep section, read as its type (names with - or _), e.g. "
                        "stopping.paths=64 or coord-check.train_io=true; repeatable")
    p.add_argument("--fresh", action="store_true",
                   help="ignore every cache and recompute the chosen sections (sweeps get a new name)")
    p.add_argument("--seeds", choices=("confirmation", "pilot"), default="confirmation",
                   help="the protocol's seed set: confirmation (decides verdicts, the default) or pilot (tunes "
                        "settings; its verdicts are exploratory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _fields() -> dict[str, Any]:
    """Every ``SECTION.KEY`` a ``--set`` may change, typed by its value at the smoke tier (a list of numbers
    may also be ``none`` where a tier has no grid); the section checks ranges when it runs."""
    from deeplimit.report.context import SECTION_SETTINGS
    from deeplimit.sweep.grid import value_type

    out: dict[str, Any] = {}
    for section, settings in SECTION_SETTINGS.items():
        for key, value in settings("smoke").items():
            tp = value_type([value])
            out[f"{section}.{key}"] = tp | None if typing.get_origin(tp) is list else tp
    return out


def _overrides(items: list[str]) -> dict[str, dict]:
    from deeplimit.errors import DeeplimitError
    from deeplimit.report.context import SECTION_SETTINGS
    from deeplimit.report.reproduce import check_overrides

    sections = {setting_key(name): name for name in SECTION_SETTINGS}
    named = set()
    for item in items:
        key, eq, _ = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not section or not name:
            raise DeeplimitError(f"--set expects SECTION.KEY=VALUE, got {item!r}; e.g. --set stopping.paths=64")
        if setting_key(section) not in sections:
            check_overrides({section: {}})  # says which sections have settings (and where a sweep's are)
        named.add(sections[setting_key(section)])
    fields = {k: tp for k, tp in _fields().items() if k.partition(".")[0] in named}  # an error lists these only
    out: dict[str, dict] = {}
    for key, value in parse_sets(items, fields).items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    import optuna

    from deeplimit.report.reproduce import reproduce

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the report's progress, not Optuna's INFO lines

    report = reproduce(args.out, args.tier, workers=args.workers, storage=args.storage, only=args.only,
                       overrides=_overrides(args.set),
                       progress=not args.quiet, fresh=args.fresh, seed_set=args.seeds)
    print(f"report: {report.path} (and {report.path.with_name('report.json')})")
    if report.failed:
        print(f"deeplimit reproduce: {len(report.failed)} section(s) failed: {', '.join(report.failed)} (their "
              f"errors are in the report)", file=sys.stderr)
        return 1
    return 0
