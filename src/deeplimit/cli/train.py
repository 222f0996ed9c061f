"""``deeplimit train``: one training run from flags (and ``--set key=value``); summary JSON on stdout."""

from __future__ import annotations

import argparse

from deeplimit.cli._args import add_run_options, parse_sets

DESCRIPTION = """\
Train one run and print its summary as JSON on stdout (progress goes to stderr). Every option of the trainer
can be given with --set KEY=VALUE (e.g. --set activation=abs --set block_mult=0.35 --set train_io=false);
see deeplimit.train.TrainConfig.

With --run-dir the run checkpoints there (every quarter of the run or 30 s, and on Ctrl-C) and a second call
with the same options resumes it; a checkpoint of different options is refused unless --fresh is given.

Examples:

    deeplimit train --data digits --width 64 --depth 8 --steps 300 --out runs/one
    deeplimit train --model transformer --data stdlib --width 64 --depth 4 --steps 200 --run-dir runs/lm
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model (any rule, any data) and write its loss table",
                       description=DESCRIPTION)
    p.add_argument("--model", default="mlp-resnet", help="mlp-resnet, transformer or shaped-transformer")
    p.add_argument("--data", default=None,
                   help="fashion-mnist, digits or an .npz file (x, y); for transformers shakespeare, stdlib or a "
                        "text file (default: fashion-mnist; shakespeare for transformers)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: the usual places)")
    p.add_argument("--rule", default="depth_mup", help="parametrization rule, see deeplimit plan --help")
    p.add_argument("--width", type=int, default=64, help="hidden width n")
    p.add_argument("--depth", type=int, default=4, help="number of residual blocks L")
    p.add_argument("--base-width", type=int, default=None, help="base width n0 the LR was tuned at (default: width)")
    p.add_argument("--base-depth", type=int, default=None, help="base depth L0 the LR was tuned at (default: depth)")
    p.add_argument("--optimizer", default=None, help="sgd, adam or adamw (default: adam; adamw for transformers)")
    p.add_argument("--lr", type=float, default=2**-8, help="base learning rate")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default: 128; 16 for transformers)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialization and the batch order (≥ 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other trainer option; repeatable")
    p.add_argument("--run-dir", default=None, help="checkpoint here and resume a checkpoint of the same options")
    p.add_argument("--fresh", action="store_true", help="discard a checkpoint already in --run-dir and start over")
    p.add_argument("--out", default=None, help="write the tidy loss table rows.csv and summary.json here")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import warnings

    from deeplimit.cli._args import set_threads
    from deeplimit.train import BOOL_KEYS, config_from_point, family_defaults, train_and_save

    point = family_defaults(args.model)
    point.update(model=args.model, preset=args.rule, width=args.width, depth=args.depth, lr=args.lr,
                 steps=args.steps, seed=args.seed)
    for name in ("data", "data_dir", "optimizer", "batch_size", "base_width", "base_depth"):
        if getattr(args, name) is not None:
            point[name] = getattr(args, name)
    sets = parse_sets(args.set, bools=BOOL_KEYS)
    point.update(sets)
    if "rule" in sets:
        point.pop("preset")
    if "log2_lr" in sets:
        point.pop("lr")
    cfg = config_from_point(point)
    set_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule warnings (spec §9) are expected in ablations
        summary = train_and_save(cfg, run_dir=args.run_dir, out=args.out, fresh=args.fresh, progress=not args.quiet)
    print(json.dumps(summary, indent=1))
    return 0
