"""``deeplimit feature-diversity``: κ of trained MLP-ResNets per rule (TP6 Fig. 17), table + PNG."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd
import torch

from deeplimit.diagnostics.feature_diversity import kappa, plot_feature_diversity, residual_stream, stream_distances
from deeplimit.train import TrainConfig, cached_image_data, train


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feature-diversity", help="feature diversity exponent kappa of trained MLP-ResNets",
                       description="Train MLP-ResNets under several rules and measure d(du) = distance between "
                                   "residual-stream layers at fraction u and u+du; kappa = 1 - slope. Depth-muP: "
                                   "kappa = 1/2; alpha = 1 (ode): kappa -> 0 (TP6 §7).")
    p.add_argument("--rules", nargs="+", default=["depth_mup", "ode"])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=64)
    p.add_argument("--base-width", type=int, default=None)
    p.add_argument("--base-depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=2**-8, help="base LR (use the base-depth optimum)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--measure-at", type=int, nargs="+", default=[0, 100, 300])
    p.add_argument("--activation", default="relu")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/feature-diversity")
    p.set_defaults(func=run)


def measure(rules, *, width, depth, base_width, base_depth, lr, steps, measure_at, activation="relu",
            data="fashion-mnist", seed=0, batch=256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train one run per rule and return (distances, κ) tables with ``rule`` and ``step`` columns."""
    torch.set_num_threads(1)
    _, _, xte, _ = cached_image_data(data, None)
    held_out = xte[:batch]
    dist_frames, kap_frames = [], []

    for rule in rules:
        def hook(t, model, rule=rule):
            if t in measure_at:
                d = stream_distances(residual_stream(model, held_out))
                d["rule"], d["step"] = rule, t
                k = kappa(d)
                k["rule"], k["step"] = rule, t
                dist_frames.append(d)
                kap_frames.append(k)
            return None

        cfg = TrainConfig(width=width, depth=depth, base_width=base_width or width, base_depth=base_depth, rule=rule,
                          lr=lr, steps=steps, data=data, seed=seed, train_io=False,
                          model_kwargs={"activation": activation})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(cfg, hook=hook)
    return pd.concat(dist_frames, ignore_index=True), pd.concat(kap_frames, ignore_index=True)


def run(args: argparse.Namespace) -> int:
    dist, kap = measure(args.rules, width=args.width, depth=args.depth, base_width=args.base_width,
                        base_depth=args.base_depth, lr=args.lr, steps=args.steps, measure_at=set(args.measure_at),
                        activation=args.activation, data=args.data, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dist.to_csv(out / "distances.csv", index=False)
    kap.to_csv(out / "kappa.csv", index=False)
    png = plot_feature_diversity(dist, str(out / "feature_diversity.png"),
                                 f"feature diversity, width {args.width}, {args.depth} blocks")
    print(kap[kap["u"] == 0.5].pivot(index="rule", columns="step", values="kappa").round(3).to_string())
    print(f"kappa table {out / 'kappa.csv'}, figure {png}")
    return 0
