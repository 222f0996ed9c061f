"""``deeplimit feature-diversity``: κ of trained MLP-ResNets per rule (TP6 Fig. 17), table + PNG."""

from __future__ import annotations

import argparse

from deeplimit.cli._args import add_run_options, rule_arg

DESCRIPTION = """\
Train MLP-ResNets under several rules and measure d(du), the distance between residual-stream layers at
fraction u and u+du of the depth; kappa = 1 - slope of log d on log du. Depth-muP: kappa = 1/2; alpha = 1 (ode):
kappa -> 0 after training (TP6 §7). Writes distances.csv, kappa.csv, feature_diversity.png and
feature_diversity.json under --out.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feature-diversity", help="feature diversity exponent kappa of trained MLP-ResNets",
                       description=DESCRIPTION)
    p.add_argument("--rules", nargs="+", type=rule_arg, default=["depth_mup", "ode"],
                   help="rules to train, one run each (- or _ alike: depth-mup is depth_mup)")
    p.add_argument("--width", type=int, default=128, help="hidden width n")
    p.add_argument("--depth", type=int, default=64, help="number of residual blocks L (≥ 2)")
    p.add_argument("--base-width", type=int, default=None, help="base width n0 (default: width)")
    p.add_argument("--base-depth", type=int, default=4, help="base depth L0")
    p.add_argument("--lr", type=float, default=2**-8, help="base LR (use the base-depth optimum)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--measure-at", type=int, nargs="+", default=[0, 100, 300],
                   help="steps at which kappa is measured (0 = init; each ≤ --steps)")
    p.add_argument("--activation", default="relu", help="relu, abs, identity, tanh or gelu")
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist, digits or an .npz file (x, y)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialization and the batch order (≥ 0)")
    p.add_argument("--out", default="runs/feature-diversity", help="output folder")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deeplimit.cli._args import check_seeds, set_threads
    from deeplimit.training_studies import feature_diversity_study

    check_seeds("seed", args.seed)
    set_threads(args.threads)
    res = feature_diversity_study(args.rules, width=args.width, depth=args.depth, base_width=args.base_width,
                                  base_depth=args.base_depth, lr=args.lr, steps=args.steps,
                                  measure_at=args.measure_at, activation=args.activation, data=args.data,
                                  seed=args.seed, out=args.out, progress=not args.quiet)
    kap = res.tables["kappa"]
    print(kap[kap["u"] == 0.5].pivot(index="rule", columns="step", values="kappa").round(3).to_string())
    print(f"wrote {', '.join(str(f) for f in res.files)}")
    return 0
