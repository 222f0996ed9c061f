"""``deeplimit coord-check``: coordinate check over width or depth on real data, table + PNG + verdict.

Built-in MLP-ResNet by default; ``--model pkg.module:factory`` (an installed module, or one in the current
folder) or ``--model path/to/file.py:factory`` for any ``(width, depth) -> nn.Module``, and ``--hf MODEL_TYPE``
for a Hugging Face model built from a tiny config. The data follows what the model eats: token models get
byte windows of a text corpus (Shakespeare by default), others Fashion-MNIST. The verdict is flat, grows or
shrinks, with the slope per doubling.
"""

from __future__ import annotations

import argparse
import warnings

from deeplimit.cli._args import MAX_SEED, set_threads
from deeplimit.cli.common import (
    add_mlp_args,
    add_model_source_args,
    add_rule_args,
    check_factory_fits,
    model_factory,
    rule_kwargs,
)
from deeplimit.diagnostics.coordinates import FLAT, call_factory, coord_data, data_for, direction, run_coord_check
from deeplimit.errors import DeeplimitError
from deeplimit.nn._validate import MAX_DEPTH, MAX_WIDTH, check_fits
from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig

MAX_STEPS = 100_000
MAX_BATCH = 2**16


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coord-check", help="coordinate check over width or depth (table, PNG, verdict)",
                       description="Train a few steps at several widths or depths and record per-site activation "
                                   "size (RMS, change from init). Flat curves = the rule transfers coordinates; the "
                                   "verdict says flat, grows or shrinks, with the log2 slope per doubling. "
                                   "--model names code to import and run: an installed module, a module in the "
                                   "current folder, or a .py file.")
    p.add_argument("--model", default=None, metavar="pkg.module:factory",
                   help="any model: a callable (width, depth) -> nn.Module, as pkg.module:factory or "
                        "path/to/file.py:factory (default: the built-in MLP-ResNet)")
    p.add_argument("--axis", choices=["width", "depth"], default=None,
                   help="the size that varies (default: width if only --widths is given, else depth)")
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="default: 64 128 256 512 1024 (MLP), 32 64 128 256 (--model/--hf)")
    p.add_argument("--depths", type=int, nargs="+", default=None,
                   help="default: 4 8 16 32 64 (MLP), 2 4 8 16 (--model/--hf)")
    p.add_argument("--width", type=int, default=None, help="fixed width for a depth check (default 64)")
    p.add_argument("--depth", type=int, default=None, help="fixed depth for a width check (default 4 MLP, 2 other)")
    p.add_argument("--data", default=None, help="fashion-mnist, digits, an .npz with x, y, or a text corpus "
                                                "(shakespeare, stdlib, a text file) for token models (default: "
                                                "what the model eats: shakespeare for token models, else "
                                                "fashion-mnist)")
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


def _positive(flag: str, value: int | None, limit: int) -> None:
    """None (not given) passes; anything else must be an integer in 1..limit (0 is never 'use the default')."""
    if value is not None and not 1 <= value <= limit:
        raise DeeplimitError(f"{flag} must be an integer in 1..{limit:,}, got {value}")


def _check_args(args: argparse.Namespace) -> None:
    """Every size and count before any work: one line naming the flag and its range."""
    _positive("--width", args.width, MAX_WIDTH)
    _positive("--depth", args.depth, MAX_DEPTH)
    _positive("--batch-size", args.batch_size, MAX_BATCH)
    _positive("--seq-len", args.seq_len, 2**16)
    _positive("--heads", args.heads, MAX_WIDTH)
    _positive("--block-depth", args.block_depth, 1024)
    for flag, sizes, limit in (("--widths", args.widths, MAX_WIDTH), ("--depths", args.depths, MAX_DEPTH)):
        for v in sizes or ():
            _positive(flag, v, limit)
    if not 1 <= args.steps <= MAX_STEPS:
        raise DeeplimitError(f"steps must be >= 1 (the change from init is 0 at step 0) and at most {MAX_STEPS:,}, "
                             f"got {args.steps}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0 or max(args.seeds) > MAX_SEED:
        raise DeeplimitError(f"--seeds takes distinct seeds in 0..{MAX_SEED:,} (e.g. --seeds 0 1 2), got "
                             f"{args.seeds}")


def _axis(axis: str | None, widths: list[int] | None, depths: list[int] | None) -> str:
    """The axis the sizes vary along; a size list for the other axis is an error, never silently ignored."""
    if axis is None:
        if widths and depths:
            raise DeeplimitError("--widths and --depths both given: a coordinate check varies one size; pass "
                                 "--axis width (with --depth for the fixed depth) or --axis depth (with --width)")
        return "width" if widths else "depth"
    other_axis, other_sizes = ("depth", depths) if axis == "width" else ("width", widths)
    if other_sizes:
        raise DeeplimitError(f"--{other_axis}s does not apply to --axis {axis}; drop it (a {axis} check's fixed "
                             f"{other_axis} is --{other_axis} N), or pass --axis {other_axis}")
    return axis


def run(args: argparse.Namespace) -> int:
    set_threads(1)
    _check_args(args)
    args.axis = _axis(args.axis, args.widths, args.depths)
    factory = model_factory(args)
    if args.model not in (None, "mlp-resnet") and factory is None:
        raise DeeplimitError(f"--model {args.model!r}: coord-check takes pkg.module:factory or path/to/file.py:factory "
                             "(the built-in MLP-ResNet is the default; use --hf for Hugging Face models)")
    generic = factory is not None
    width = args.width if args.width is not None else 64
    depth = args.depth if args.depth is not None else (2 if generic else 4)
    batch_size = args.batch_size if args.batch_size is not None else (16 if generic else 64)
    if args.axis == "depth":
        sizes = args.depths or ([2, 4, 8, 16] if generic else [4, 8, 16, 32, 64])
    else:
        sizes = args.widths or ([32, 64, 128, 256] if generic else [64, 128, 256, 512, 1024])
    widths, depths = (sizes, [depth]) if args.axis == "width" else ([width], sizes)
    if generic:
        check_factory_fits(factory, max(widths), max(depths), copies=4, fix="lower --widths/--depths")
        first = call_factory(factory, min(widths), min(depths))
        x, y, source = data_for(first, args.data, n=batch_size * (args.steps + 2), seq_len=args.seq_len,
                                data_dir=args.data_dir)
        del first
    else:
        source = args.data or "fashion-mnist"
        # the largest model, with Adam's state, must fit before anything trains (closed form, nothing built)
        big = MLPResNetConfig(width=max(widths), depth=max(depths), block_depth=args.block_depth,
                              activation=args.activation, block=args.block, pre_ln=args.pre_ln)
        check_fits(f"the largest model (width {max(widths)}, depth {max(depths)})", big.n_params(),
                   big.n_modules(), copies=4, fix="lower --widths/--depths")
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
                                 batch_size=batch_size, **rule_kwargs(args),
                                 **({"train_io": False} if args.freeze_io else {}))
    paths = result.save(args.out)
    v = result.verdict
    print(f"coordinate check over {v.axis} for rule {v.rule} on {source}: change-from-init log2 slopes per "
          f"doubling of {v.axis} at step {v.step}:")
    for site, s in v.slopes.items():
        why = ("frozen (--freeze-io)" if site == "input" and args.freeze_io else
               "one block's share of the stream, O(L^-alpha) by design")
        trend = f"  {direction(s, v.threshold)}" if site in v.judged else ""
        print(f"  {site:12s} {s:+.3f}" + (trend if site in v.judged else f"  (not judged: {why})"))
    print(f"{v.line()}; table {paths['table']}, figure {paths['figure']}")
    return 0

