"""``deeplimit coord-check``: coordinate check over width or depth on real data, table + PNG + verdict.

Built-in MLP-ResNet by default; ``--model pkg.module:factory`` for any ``(width, depth) -> nn.Module`` and
``--hf MODEL_TYPE`` for a Hugging Face model built from a tiny config (token ids from Shakespeare, images from
Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import warnings

import torch

from deeplimit.cli.common import add_mlp_args, add_model_source_args, add_rule_args, model_factory
from deeplimit.diagnostics.coord_check import FLAT, call_factory, coord_data, data_for, run_coord_check
from deeplimit.errors import DeeplimitError
from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coord-check", help="coordinate check over width or depth (table, PNG, verdict)",
                       description="Train a few steps at several widths or depths and record per-site activation "
                                   "size (RMS, change from init). Flat curves = the rule transfers coordinates.")
    p.add_argument("--model", default=None, metavar="pkg.module:factory",
                   help="any model: a callable (width, depth) -> nn.Module (default: the built-in MLP-ResNet)")
    p.add_argument("--axis", choices=["width", "depth"], default="depth")
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="default: 64 128 256 512 1024 (MLP), 32 64 128 256 (--model/--hf)")
    p.add_argument("--depths", type=int, nargs="+", default=None,
                   help="default: 4 8 16 32 64 (MLP), 2 4 8 16 (--model/--hf)")
    p.add_argument("--width", type=int, default=None, help="fixed width for a depth check (default 64)")
    p.add_argument("--depth", type=int, default=None, help="fixed depth for a width check (default 4 MLP, 2 other)")
    p.add_argument("--data", default=None, help="fashion-mnist, digits, an .npz with x, y, or a text corpus "
                                                "(shakespeare, stdlib, a .txt file) for token models")
    p.add_argument("--data-dir", default=None, help="directory holding the Fashion-MNIST IDX files")
    p.add_argument("--seq-len", type=int, default=32, help="tokens per example for language models")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw", "muon"])
    p.add_argument("--lr", type=float, default=2**-8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds to average over, a list as in deeplimit signal (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (MLP), 16 (--model/--hf)")
    p.add_argument("--freeze-io", action="store_true",
                   help="freeze the input and readout layers (TP6's depth protocol): the change is the blocks' "
                        "alone, so the depth LR exponent shows")
    p.add_argument("--threshold", type=float, default=FLAT, help="largest |log2 slope| per doubling called flat")
    p.add_argument("--out", default="runs/coord-check", help="output directory (CSV, JSON, PNG)")
    add_model_source_args(p)
    add_rule_args(p)
    add_mlp_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    factory = model_factory(args)
    if args.model not in (None, "mlp-resnet") and factory is None:
        raise DeeplimitError(f"--model {args.model!r}: coord-check takes pkg.module:factory (the built-in MLP-ResNet "
                             "is the default; use --hf for Hugging Face models)")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise DeeplimitError(f"--seeds takes distinct non-negative seeds (e.g. --seeds 0 1 2), got {args.seeds}")
    generic = factory is not None
    width = args.width or 64
    depth = args.depth or (2 if generic else 4)
    batch_size = args.batch_size or (16 if generic else 64)
    if args.axis == "depth":
        sizes = args.depths or ([2, 4, 8, 16] if generic else [4, 8, 16, 32, 64])
    else:
        sizes = args.widths or ([32, 64, 128, 256] if generic else [64, 128, 256, 512, 1024])
    if generic:
        first = call_factory(factory, min(sizes) if args.axis == "width" else width,
                             min(sizes) if args.axis == "depth" else depth)
        x, y, source = data_for(first, args.data, n=batch_size * (max(args.steps, 0) + 2),
                                seq_len=args.seq_len, data_dir=args.data_dir)
    else:
        source = args.data or "fashion-mnist"
        x, y = coord_data(source, kind="features", n=60_000, data_dir=args.data_dir)

        def factory(w: int, d: int) -> MLPResNet:
            return MLPResNet(MLPResNetConfig(d_in=x.shape[1], d_out=int(y.max()) + 1, width=w, depth=d,
                                             activation=args.activation, block_depth=args.block_depth,
                                             block=args.block, mean_subtract=not args.no_mean_subtract,
                                             pre_ln=args.pre_ln))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_coord_check(factory, args.rule, x, y, axis=args.axis, sizes=sizes, width=width, depth=depth,
                                 base_width=args.base_width, base_depth=args.base_depth, seeds=args.seeds,
                                 steps=args.steps, lr=args.lr, threshold=args.threshold, optimizer=args.optimizer,
                                 batch_size=batch_size, alpha=args.alpha, gamma=args.gamma,
                                 block_mult=args.block_mult, **({"train_io": False} if args.freeze_io else {}))
    paths = result.save(args.out)
    v = result.verdict
    print(f"coordinate check over {v.axis} for rule {v.rule} on {source}: change-from-init log2 slopes at step "
          f"{v.step}:")
    for site, s in v.slopes.items():
        why = ("frozen (--freeze-io)" if site == "input" and args.freeze_io else
               "one block's share of the stream, O(L^-alpha) by design")
        print(f"  {site:12s} {s:+.3f}" + ("" if site in v.judged else f"  (not judged: {why})"))
    print(f"{v.line()}; table {paths['table']}, figure {paths['figure']}")
    return 0
