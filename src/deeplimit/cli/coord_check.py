"""``deeplimit coord-check``: coordinate check over width or depth on real data, table + PNG + verdict."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from deeplimit.cli.common import add_mlp_args, add_rule_args
from deeplimit.diagnostics.coord_check import coord_check, log2_slopes, plot_coord_check
from deeplimit.errors import DeeplimitError
from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig

FLAT = 0.25  # |log2 slope| per doubling below which a coordinate counts as flat


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coord-check", help="coordinate check over width or depth (table, PNG, verdict)",
                       description="Train a few steps at several widths or depths and record per-site activation "
                                   "size (RMS, change from init). Flat curves = the rule transfers coordinates.")
    p.add_argument("--axis", choices=["width", "depth"], default="depth")
    p.add_argument("--widths", type=int, nargs="+", default=None, help="default: 64 128 256 512 1024 (axis=width)")
    p.add_argument("--depths", type=int, nargs="+", default=None, help="default: 4 8 16 32 64 (axis=depth)")
    p.add_argument("--width", type=int, default=64, help="fixed width for a depth check")
    p.add_argument("--depth", type=int, default=4, help="fixed depth for a width check")
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist, digits, or a .npz file with x, y")
    p.add_argument("--data-dir", default=None, help="directory holding the Fashion-MNIST IDX files")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw", "muon"])
    p.add_argument("--lr", type=float, default=2**-8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="runs/coord-check", help="output directory (CSV, JSON, PNG)")
    add_rule_args(p)
    add_mlp_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deeplimit.data import load_image_dataset

    torch.set_num_threads(1)
    x, y = load_image_dataset(args.data, split="train", data_dir=args.data_dir)
    x = x.reshape(len(x), -1)
    d_out = int(y.max()) + 1
    if args.axis == "depth":
        widths, depths = [args.width], args.depths or [4, 8, 16, 32, 64]
        base_width, base_depth = args.width, args.base_depth or min(depths)
    else:
        widths, depths = args.widths or [64, 128, 256, 512, 1024], [args.depth]
        base_width, base_depth = args.base_width or min(widths), args.depth
    if min(widths + depths) <= 0:
        raise DeeplimitError("widths and depths must be positive integers")

    def make(width: int, depth: int) -> MLPResNet:
        return MLPResNet(MLPResNetConfig(d_in=x.shape[1], d_out=d_out, width=width, depth=depth,
                                         activation=args.activation, block_depth=args.block_depth, block=args.block,
                                         mean_subtract=not args.no_mean_subtract, pre_ln=args.pre_ln))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = coord_check(make, args.rule, x, y, widths=widths, depths=depths, base_width=base_width,
                         base_depth=base_depth, optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                         seeds=range(args.seeds), batch_size=args.batch_size, alpha=args.alpha, gamma=args.gamma,
                         block_mult=args.block_mult)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "coord_check.csv", index=False)
    slopes = log2_slopes(df, args.axis)
    slopes.to_csv(out / "coord_check_slopes.csv", index=False)
    png = plot_coord_check(df, args.axis, str(out / "coord_check.png"))
    last = slopes[slopes["step"] == slopes["step"].max()].set_index("site")["slope"]
    worst = float(last.abs().max())
    verdict = "flat" if worst <= FLAT else "not flat"
    summary = {"rule": df["rule"].iloc[0], "axis": args.axis, "sizes": widths if args.axis == "width" else depths,
               "final_step": int(slopes["step"].max()), "log2_slope_of_change_per_site": last.round(3).to_dict(),
               "verdict": verdict, "threshold": FLAT}
    (out / "coord_check_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"coordinate check over {args.axis} for rule {summary['rule']}: change-from-init log2 slopes at step "
          f"{summary['final_step']}:")
    for site, s in last.items():
        print(f"  {site:12s} {s:+.3f}")
    print(f"verdict: {verdict} (max |slope| {worst:.3f}, threshold {FLAT}); table {out / 'coord_check.csv'}, "
          f"figure {png}")
    return 0
