"""``deeplimit signal``: gradient norms of W^V, W^Q per layer at init and attention entropy during training,
for shaped vs Pre-LN vs Post-LN transformers (Noci et al. 2023, Figs. 2 and 6)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pandas as pd
import torch

from deeplimit.data import ByteCorpus
from deeplimit.diagnostics.signal import (
    grad_norms_at_init,
    plot_entropy,
    plot_grad_norms,
    plot_token_correlation,
    token_correlation_vs_layer,
)
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM
from deeplimit.scaling.apply import parametrize
from deeplimit.train import train
from deeplimit.transfer.objectives import config_from_point

VARIANTS = {
    "shaped": dict(SHAPED),
    # unshaped softmax attention with the same λ/γ residual and no LayerNorm: the rank-collapse baseline
    "softmax": dict(norm="none", attention="softmax", logit_scale="sqrt", activation="relu", residual="shaped"),
    "pre_ln": dict(norm="pre_ln", logit_scale="sqrt"),
    "post_ln": dict(norm="post_ln", logit_scale="sqrt"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signal", help="gradient norms at init and attention entropy in training (shaped vs LN)",
                       description="Per-layer gradient norms of W^V and W^Q at initialization on real text, and "
                                   "mean attention entropy per layer during a short training run, for the shaped "
                                   "transformer and Pre-/Post-LN baselines.")
    p.add_argument("--variants", nargs="+", default=["shaped", "softmax", "pre_ln", "post_ln"],
                   choices=list(VARIANTS))
    p.add_argument("--residual-gamma", type=float, default=2**-1.5, help="γ of the λ/γ residual (1/sqrt(8))")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--corpus", default="shakespeare", help="shakespeare, stdlib or a text file")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the gradient norms")
    p.add_argument("--train-steps", type=int, default=200, help="0 skips the entropy run")
    p.add_argument("--lr", type=float, default=2**-7)
    p.add_argument("--out", default="runs/signal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = ByteCorpus.load(args.corpus)
    frames, corr = [], []
    for variant in args.variants:
        for seed in range(args.seeds):
            idx, tgt = corpus.get_batch("train", 8, 64, torch.Generator().manual_seed(seed))
            model = TransformerLM(TransformerConfig(width=args.width, depth=args.depth,
                                                    residual_gamma=args.residual_gamma, **VARIANTS[variant]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parametrize(model, "mup", base_width=args.width, base_depth=args.depth, seed=seed)
            c = token_correlation_vs_layer(model, idx)
            c["variant"], c["seed"] = variant, seed
            corr.append(c)
            df = grad_norms_at_init(model, idx, tgt)
            df["variant"], df["seed"] = variant, seed
            frames.append(df)
    corr = pd.concat(corr, ignore_index=True)
    corr.to_csv(out / "token_correlation.csv", index=False)
    plot_token_correlation(corr, out / "token_correlation.png")
    grads = pd.concat(frames, ignore_index=True)
    grads.to_csv(out / "grad_norms.csv", index=False)
    plot_grad_norms(grads, out / "grad_norms.png")
    ratio = {}
    for (v, p), g in grads.groupby(["variant", "param"]):
        per_layer = g.groupby("layer")["grad_norm"].mean()
        ratio[f"{v} {p}"] = float(per_layer.iloc[-1] / per_layer.iloc[0])
    last = corr[corr["layer"] == corr["layer"].max()].groupby("variant")["mean_abs_rho"].mean()
    summary = {"grad_norm_last_over_first_layer": ratio,
               "mean_abs_rho_at_last_layer": {k: round(float(v), 4) for k, v in last.items()}}
    if args.train_steps:
        rows = []
        for variant in args.variants:
            if variant in ("post_ln", "softmax"):
                continue
            cfg = config_from_point({"model": "transformer", "preset": "mup", "width": args.width,
                                     "depth": min(args.depth, 6), "lr": args.lr, "steps": args.train_steps,
                                     "optimizer": "adamw", "batch_size": 16, "seq_len": 64, "data": args.corpus,
                                     "warmup_frac": 0.05, "entropy_every": max(1, args.train_steps // 10),
                                     "min_window": 20, **VARIANTS[variant]})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = train(cfg)
            rows += [{**r, "variant": variant} for r in res.rows if r["metric"] == "attn_entropy"]
        ent = pd.DataFrame(rows)
        ent.to_csv(out / "attention_entropy.csv", index=False)
        plot_entropy(ent, out / "attention_entropy.png")
    (out / "signal.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"tables and figures in {out}")
    return 0
