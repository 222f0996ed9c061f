"""``deeplimit train``: one training run from a config (flags or ``--set key=value``), tidy CSV out."""

from __future__ import annotations

import argparse
import ast
import json
import warnings
from pathlib import Path

import pandas as pd
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.train import train
from deeplimit.transfer.objectives import config_from_point


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model (any rule, any data) and write its loss table",
                       description="Train one run. Every option of the trainer can be given with --set KEY=VALUE "
                                   "(e.g. --set activation=abs --set block_mult=0.35); see deeplimit.train.")
    p.add_argument("--model", default="mlp-resnet", help="mlp-resnet, transformer, shaped-transformer")
    p.add_argument("--data", default=None, help="fashion-mnist, digits, a .npz file; for transformers: "
                                                "shakespeare, stdlib or a text file")
    p.add_argument("--rule", default="depth_mup")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--base-width", type=int, default=None)
    p.add_argument("--base-depth", type=int, default=None)
    p.add_argument("--optimizer", default=None, help="sgd, adam, adamw (default adam; adamw for transformers)")
    p.add_argument("--lr", type=float, default=2**-8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other trainer option")
    p.add_argument("--run-dir", default=None, help="checkpoint here and resume if a checkpoint exists")
    p.add_argument("--out", default=None, help="write the tidy loss table (CSV) and a JSON summary here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    text = args.model.replace("_", "-") in ("transformer", "shaped-transformer")
    point = {"model": args.model, "preset": args.rule, "width": args.width, "depth": args.depth,
             "lr": args.lr, "steps": args.steps, "seed": args.seed,
             "data": args.data or ("shakespeare" if text else "fashion-mnist"),
             "optimizer": args.optimizer or ("adamw" if text else "adam")}
    if text:
        point.update(batch_size=16, seq_len=64, betas=(0.9, 0.95), warmup_frac=0.05, min_window=20)
    if args.batch_size:
        point["batch_size"] = args.batch_size
    for name in ("base_width", "base_depth"):
        if getattr(args, name) is not None:
            point[name] = getattr(args, name)
    for item in args.set:
        if "=" not in item:
            raise DeeplimitError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        point[k.strip().replace("-", "_")] = _value(v)
    cfg = config_from_point(point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(cfg, args.run_dir, progress=True)
    summary = {"status": res.status, "window_loss": res.window_loss, "eval_loss": res.eval_loss,
               "step0_loss": res.step0_loss, "steps": res.steps_done, "wall_s": round(res.wall_s, 2),
               "reason": res.reason}
    if text:
        from deeplimit.train import cached_text_data

        summary["unigram_entropy_nats"] = cached_text_data(cfg.data, cfg.data_dir).unigram_entropy("train")
    print(json.dumps(summary, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(res.rows).to_csv(out / "rows.csv", index=False)
        (out / "summary.json").write_text(json.dumps({"config": cfg.to_dict(), **summary}, indent=1))
    return 0
