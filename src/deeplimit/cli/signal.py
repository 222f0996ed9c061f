"""``deeplimit signal``: gradient norms of W^V, W^Q per layer at init and attention entropy during training,
for shaped vs Pre-LN vs Post-LN transformers (Noci et al. 2023, Figs. 1 left, 2 and 6)."""

from __future__ import annotations

import argparse

from deeplimit.cli._args import add_run_options

DESCRIPTION = """\
Per-layer gradient norms of W^V and W^Q and token correlations at initialization on real text, and mean
attention entropy per layer during a short training run, for the shaped transformer and softmax, Pre-LN and
Post-LN baselines. Writes CSV tables, PNG figures and signal.json under --out.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signal", help="gradient norms at init and attention entropy in training (shaped vs LN)",
                       description=DESCRIPTION)
    p.add_argument("--variants", nargs="+", default=["shaped", "softmax", "pre_ln", "post_ln"],
                   choices=["shaped", "softmax", "pre_ln", "post_ln"], help="transformer variants to compare")
    p.add_argument("--residual-gamma", type=float, default=2**-1.5, help="γ of the λ/γ residual (1/sqrt(8))")
    p.add_argument("--width", type=int, default=64, help="hidden width n")
    p.add_argument("--depth", type=int, default=12, help="layers at init (the entropy run uses at most 6)")
    p.add_argument("--data", default="shakespeare", help="shakespeare, stdlib or a text file")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for the measurements at init")
    p.add_argument("--train-steps", type=int, default=200, help="steps of the entropy run (0 skips it)")
    p.add_argument("--lr", type=float, default=2**-7, help="base LR of the entropy run")
    p.add_argument("--out", default="runs/signal", help="output folder")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from deeplimit.cli._args import check_seeds, set_threads
    from deeplimit.training_studies import signal_study

    check_seeds("seeds", *args.seeds)
    set_threads(args.threads)
    res = signal_study(args.variants, residual_gamma=args.residual_gamma, width=args.width, depth=args.depth,
                       data=args.data, seeds=args.seeds, train_steps=args.train_steps, lr=args.lr, out=args.out,
                       progress=not args.quiet)
    print(json.dumps({k: v for k, v in res.summary.items() if k != "settings"}, indent=1))
    print(f"wrote {', '.join(str(f) for f in res.files)}")
    return 0
