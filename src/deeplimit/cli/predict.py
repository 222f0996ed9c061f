"""``deeplimit predict``: the transfer oracle — the optimal LR (and batch size, weight decay) at a target scale,
with an interval, fitted on any table of runs (:mod:`deeplimit.transfer.oracle`)."""

from __future__ import annotations

import argparse

HELP = "predict the optimal LR (and batch size) at a target scale from runs"

DESCRIPTION = """\
Fit log2 eta* = a + sum_i b_i log2 x_i (and log2 B* likewise with --batch) over groups of runs and predict at
targets. Each group is one combination of the --x size variables; its optimum is the report's estimator (a
weighted quadratic in log2 LR around the grid argmin, per seed, then the mean over seeds). The interval is a
prediction interval: it widens with the distance from the fitted sizes. With --batch-estimator critical a
group's B* is its critical batch: the largest batch whose best loss over the LR stays within --batch-tolerance
(relative) of the best, for losses flat over the small batches, where the argmin is seed noise.

Examples:

    deeplimit predict runs.csv --x N D --lr lr --loss loss --at N=1.07e9,D=2e10 --json
    deeplimit predict runs.parquet --x N D --batch bs --fix batch:N=0 --at N=1e9,D=2e10
    deeplimit predict runs.csv --x D --batch bs --batch-estimator critical --batch-tolerance 0.02 --evaluate
    deeplimit predict runs.csv --x width depth --fix width=0 --where "rule == 'mup'" --evaluate
    deeplimit predict depth-transfer --storage sweeps.db --x depth --loss objective --at depth=256
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help=HELP, description=DESCRIPTION)
    p.add_argument("runs", metavar="RUNS", help="a .csv or .parquet table of runs (one row per run, or a sweep's "
                   "long table); with --storage, the name of a sweep")
    p.add_argument("--x", nargs="+", required=True, metavar="COL", help="size variables (columns), e.g. N D")
    p.add_argument("--lr", default="lr", metavar="COL", help="learning-rate column (natural units)")
    p.add_argument("--loss", default="loss", metavar="COL",
                   help="final-loss column (in a sweep's long table: the metric's name)")
    p.add_argument("--batch", default=None, metavar="COL", help="batch-size column, swept inside each group")
    p.add_argument("--batch-estimator", default=None, choices=["argmin", "critical"],
                   help="how a seed's B* is read off the best loss over the LR per batch: argmin (default; the "
                        "quadratic around the lowest) or critical (the largest batch within --batch-tolerance of "
                        "the lowest, interpolated in log2 batch; needs --batch)")
    p.add_argument("--batch-tolerance", default=None, type=float, metavar="FRAC",
                   help="the critical batch's relative tolerance: within (1 + FRAC) x the best loss (required with, "
                        "and only with, --batch-estimator critical); choose it above the loss's seed-to-seed noise")
    p.add_argument("--wd", default=None, metavar="COL",
                   help="weight-decay (or timescale tau) column, swept inside each group")
    p.add_argument("--group", nargs="+", default=[], metavar="COL",
                   help="label columns: one set of laws per value (e.g. the rule)")
    p.add_argument("--seed", default="seed", metavar="COL", help="seed column (when the table has one)")
    p.add_argument("--where", default=None, metavar="EXPR",
                   help="keep rows matching COL OP VALUE [and ...], OP one of == != < <= > >=")
    p.add_argument("--at", action="append", default=[], metavar="X=V,...",
                   help="a target, e.g. N=1.07e9,D=2e10 (repeat for several; group columns may be named too)")
    p.add_argument("--fix", action="append", default=[], metavar="[LAW:]X=B",
                   help="hold an exponent fixed, e.g. width=0 (the lr law) or batch:N=0")
    p.add_argument("--level", type=float, default=0.8, help="level of the prediction intervals")
    p.add_argument("--interval", choices=["t", "bootstrap"], default="t",
                   help="t: Student-t prediction interval; bootstrap: residual bootstrap over groups")
    p.add_argument("--evaluate", action="store_true",
                   help="hold out the groups at the largest value of the first --x, fit on the rest, and score "
                        "the forecast there (mean |log2 error|, regret, interval coverage) beside the naive one")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="read the runs from this sweep storage (RUNS is then the sweep's name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def parse_fix(items: list[str], axes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``["width=0", "batch:N=0"]`` → ``{"lr": {"width": 0.0}, "batch": {"N": 0.0}}``."""
    from deeplimit.errors import DeeplimitError

    out: dict[str, dict[str, float]] = {}
    for item in items:
        head, eq, value = item.partition("=")
        law, colon, var = head.partition(":")
        if not colon:
            law, var = "lr", head
        law, var = law.strip(), var.strip()
        try:
            b = float(value)
        except ValueError:
            b = float("nan")
        if not eq or not var or b != b or abs(b) == float("inf"):
            raise DeeplimitError(f"--fix {item!r}: expected [LAW:]X=EXPONENT, e.g. --fix width=0 or --fix batch:N=0")
        if law not in axes:
            raise DeeplimitError(f"--fix {item!r}: no {law!r} law is fitted (laws: {', '.join(axes)}); "
                                 + ("add --batch COL" if law == "batch" else "name one of those"))
        out.setdefault(law, {})[var] = b
    return out


def check_batch_args(args: argparse.Namespace) -> str:
    """Validate --batch-estimator and --batch-tolerance before any table is read (the oracle's own
    :func:`~deeplimit.transfer.oracle_fit.check_batch_estimator`, plus the flag they need); returns the
    estimator."""
    from deeplimit.errors import DeeplimitError
    from deeplimit.transfer.oracle_fit import check_batch_estimator

    if not args.batch and (args.batch_estimator or args.batch_tolerance is not None):
        flag = "--batch-estimator" if args.batch_estimator else "--batch-tolerance"
        raise DeeplimitError(f"{flag} reads the batch axis: name the batch-size column with --batch COL")
    estimator = args.batch_estimator or "argmin"
    check_batch_estimator(estimator, args.batch_tolerance)
    return estimator


def run(args: argparse.Namespace) -> int:
    import json

    from deeplimit.errors import DeeplimitError
    from deeplimit.transfer.oracle import fit_oracle, load_runs, parse_at, runs_from_sweep
    from deeplimit.transfer.oracle_eval import evaluate_oracle

    if not args.at and not args.evaluate:
        raise DeeplimitError("give a target with --at X=V,... (e.g. --at N=1.07e9,D=2e10) or --evaluate")
    if not 0 < args.level < 1:
        raise DeeplimitError(f"--level must be in (0, 1), got {args.level}; e.g. 0.8")
    estimator = check_batch_args(args)
    targets = [parse_at(a) for a in args.at]  # before the fit: a typo fails fast
    runs = runs_from_sweep(args.storage, args.runs) if args.storage else load_runs(args.runs)
    axes = ("lr", *(a for a in ("batch", "wd") if getattr(args, a)))
    opts = dict(x=args.x, lr=args.lr, loss=args.loss, batch=args.batch, wd=args.wd, group=args.group,
                seed=args.seed, where=args.where, fixed=parse_fix(args.fix, axes), level=args.level,
                interval=args.interval, batch_estimator=estimator, batch_tolerance=args.batch_tolerance)
    out: dict = {}
    lines: list[str] = []
    if args.at:
        oracle = fit_oracle(runs, **opts)
        preds = [p for at in targets for p in oracle.predict(at)]
        out["predictions"] = [p.to_dict() for p in preds]
        out["fit"] = oracle.fit_dict()
        lines += [oracle.text(), *(p.text() for p in preds)]
    if args.evaluate:
        ev = evaluate_oracle(runs, **opts)
        out["evaluation"] = ev.to_dict()
        lines.append(ev.text())
    print(json.dumps(out, indent=1, allow_nan=False) if args.json else "\n".join(lines))
    return 0
