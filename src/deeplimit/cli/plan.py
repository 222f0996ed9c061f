"""``deeplimit plan``: print (or write as JSON) the resolved plan of a built-in model, of any model
(``--model pkg.module:factory``) or of a Hugging Face model built from a tiny config (``--hf MODEL_TYPE``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from deeplimit.cli.common import (
    add_mlp_args,
    add_model_source_args,
    add_rule_args,
    check_factory_fits,
    model_factory,
    rule_kwargs,
)
from deeplimit.diagnostics.coordinates import call_factory
from deeplimit.nn.registry import MODELS, build_model
from deeplimit.scaling.plan import make_plan
from deeplimit.scaling.rules import OPTIMIZERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print the resolved per-parameter plan (which table? this one)",
                       description="Resolve a rule for a built-in model and print, per parameter: role, shape, "
                                   "init std, forward multiplier, learning rate, Adam eps and weight decay.")
    p.add_argument("--model", default="mlp-resnet",
                   help=f"one of {', '.join(sorted(MODELS))}, or pkg.module:factory (a callable (width, depth) -> "
                        "nn.Module)")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--d-in", type=int, default=784)
    p.add_argument("--d-out", type=int, default=10)
    p.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS),
                   help="muon: hidden matrices on torch.optim.Muon, the rest on AdamW (docs/optimizers.md)")
    p.add_argument("--lr", type=float, default=1e-3, help="base learning rate eta")
    p.add_argument("--eps", type=float, default=1e-8, help="base Adam epsilon")
    p.add_argument("--weight-decay", type=float, default=None, help="base weight decay lambda (default 0)")
    p.add_argument("--wd-timescale", type=float, default=None,
                   help="weight decay as an EMA timescale tau in steps: lambda = 1/(lr_group*tau) per tensor")
    p.add_argument("--wd-timescale-fraction", type=float, default=None,
                   help="the timescale as a fraction of the run (needs --total-steps)")
    p.add_argument("--total-steps", type=int, default=None, help="optimizer steps of the run")
    p.add_argument("--muon-lr-ratio", type=float, default=1.0, help="Muon base LR over the base LR (muon only)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the plan as JSON (to FILE, or stdout when no FILE is given)")
    add_model_source_args(p)
    add_rule_args(p)
    add_mlp_args(p)
    p.set_defaults(func=run)


def model_kwargs(args: argparse.Namespace) -> dict:
    if args.model.replace("_", "-") == "mlp-resnet":
        return dict(d_in=args.d_in, d_out=args.d_out, width=args.width, depth=args.depth,
                    activation=args.activation, block_depth=args.block_depth, block=args.block,
                    mean_subtract=not args.no_mean_subtract, pre_ln=args.pre_ln)
    return dict(width=args.width, depth=args.depth)


def run(args: argparse.Namespace) -> int:
    factory = model_factory(args)
    if factory is not None:
        check_factory_fits(factory, args.width, args.depth)  # sizes and memory before the real build
        model = call_factory(factory, args.width, args.depth)
    else:
        model = build_model(args.model, **model_kwargs(args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes are printed with the table instead
        plan = make_plan(model, args.rule, optimizer=args.optimizer, base_width=args.base_width,
                         base_depth=args.base_depth, muon_lr_ratio=args.muon_lr_ratio, **rule_kwargs(args))
    decay = dict(weight_decay=args.weight_decay, wd_timescale=args.wd_timescale,
                 wd_timescale_fraction=args.wd_timescale_fraction, total_steps=args.total_steps)
    if args.json is None:
        print(plan.table(lr=args.lr, eps=args.eps, **decay))
        return 0
    blob = plan.to_dict()
    blob["resolved"] = plan.rows(lr=args.lr, eps=args.eps, **decay)
    blob["base"] = {"lr": args.lr, "eps": args.eps, **decay}
    text = json.dumps(blob, indent=1)
    if args.json == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.json, "w") as fh:
            fh.write(text)
        print(f"plan written to {args.json}")
    return 0
