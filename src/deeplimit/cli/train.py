"""``deeplimit train``: one training run from flags (and ``--set key=value``); summary JSON on stdout."""

from __future__ import annotations

import argparse

from deeplimit.cli._args import add_run_options, parse_sets, rule_arg

DESCRIPTION = """\
Train one run and print its summary as JSON on stdout (progress goes to stderr). Every option of the trainer
can be given with --set KEY=VALUE (e.g. --set activation=abs block_mult=0.35 train_io=false); see
deeplimit.train.TrainConfig.

Any model: a built-in one (--model mlp-resnet, transformer, shaped-transformer), a Hugging Face causal LM built
from a small config of its model type (--hf llama; --set hidden_size=64 num_hidden_layers=2 or --width/--depth,
and any config field with --set; trained on text), or your own factory (--model pkg.module:factory or
--model path/to/file.py:factory, a callable (width, depth, **options) -> nn.Module; --set passes the options,
and it gets d_in, d_out, vocab_size, max_seq_len from the data where its signature takes them).

With --run-dir the run checkpoints there (every quarter of the run or 30 s, at most once a second, at the end
and on Ctrl-C) and a second call with the same options resumes it; a checkpoint of different options is refused
unless --fresh is given.

Examples:

    deeplimit train --data digits --width 64 --depth 8 --steps 300 --out runs/one
    deeplimit train --model transformer --data stdlib --width 64 --depth 4 --steps 200 --run-dir runs/lm
    deeplimit train --hf llama --set hidden_size=64 num_hidden_layers=2 --data stdlib --steps 100
    deeplimit train --model mymodels.py:make --set bias=false --data digits --steps 100
"""

# Old flag spellings → the one spelling (the flag named after the trainer option); they still work, with a note.
DEPRECATED_FLAGS = {"--heads": "--n-heads", "--freeze-io": "--no-train-io"}


def register(sub: argparse._SubParsersAction) -> None:
    from deeplimit.scaling.rules import OPTIMIZERS, rule_names

    p = sub.add_parser("train", help="train one model (any rule, any data, any model) and write its loss table",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="mlp-resnet (default), transformer, shaped-transformer, or your own: pkg.module:factory or "
                        "path/to/file.py:factory")
    g.add_argument("--hf", default=None, metavar="TYPE",
                   help="a Hugging Face model type (llama, mistral, qwen2, gpt2, gpt_neox, ...): a causal LM built "
                        "from a small config, trained on text (pip install deeplimit[hf])")
    g.add_argument("--width", type=int, default=None, help="hidden width n (default 64; hidden_size of --hf)")
    g.add_argument("--depth", type=int, default=None,
                   help="number of residual blocks L (default 4; num_hidden_layers of --hf)")
    g.add_argument("--n-heads", type=int, default=None,
                   help="attention heads of a transformer or --hf model (head_dim grows with width)")
    g.add_argument("--heads", type=int, default=None, dest="old_heads", help=argparse.SUPPRESS)
    g.add_argument("--train-io", action=argparse.BooleanOptionalAction, default=None,
                   help="train the input and readout layers (default); --no-train-io freezes them (TP6 §10.2)")
    g.add_argument("--freeze-io", action="store_true", dest="old_freeze_io", help=argparse.SUPPRESS)
    p.add_argument("--data", default=None,
                   help="fashion-mnist, digits or an .npz file (x, y); for token models shakespeare, stdlib or a "
                        "text file (default: fashion-mnist; shakespeare for transformers and --hf)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: the usual places)")
    r = p.add_argument_group("parametrization")
    r.add_argument("--rule", default="depth_mup", type=rule_arg,
                   help=f"one of {', '.join(rule_names())} (dashes allowed)")
    r.add_argument("--alpha", type=float, default=None, help="branch exponent α (turns the rule into 'custom')")
    r.add_argument("--gamma", type=float, default=None, help="LR exponent γ (default 1 − α)")
    r.add_argument("--base-width", type=int, default=None, help="base width n0 the LR was tuned at (default: width)")
    r.add_argument("--base-depth", type=int, default=None, help="base depth L0 the LR was tuned at (default: depth)")
    o = p.add_argument_group("optimization")
    o.add_argument("--optimizer", default=None, metavar="{" + ",".join(OPTIMIZERS) + "}",
                   help="sgd, adam, adamw, or muon (Muon on the hidden matrices, AdamW on the rest) (default: adam; "
                        "adamw for transformers and --hf)")
    o.add_argument("--lr", type=float, default=2**-8, help="base learning rate")
    o.add_argument("--steps", type=int, default=400, help="optimizer steps")
    o.add_argument("--batch-size", type=int, default=None,
                   help="examples per step (default: 128; 16 for transformers and --hf)")
    o.add_argument("--seed", type=int, default=0, help="seed of the initialization and the batch order (≥ 0)")
    # nargs="+" with extend: --set a=1 b=2 and --set a=1 --set b=2 are the same
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any other trainer, plan or model option (a --hf config field, a factory keyword)")
    p.add_argument("--run-dir", default=None, help="checkpoint here and resume a checkpoint of the same options")
    p.add_argument("--fresh", action="store_true", help="discard a checkpoint already in --run-dir and start over")
    p.add_argument("--out", default=None, help="write the tidy loss table rows.csv and summary.json here")
    add_run_options(p)
    p.set_defaults(func=run)


def _note(text: str) -> None:
    import sys

    print(f"deeplimit train: {text}", file=sys.stderr)


def model_spec(args: argparse.Namespace) -> str:
    """``TrainConfig.model`` from ``--model`` / ``--hf`` (one of them)."""
    from deeplimit.errors import DeeplimitError

    if args.hf is not None:
        if args.model is not None:
            raise DeeplimitError("give either --hf TYPE or --model NAME, not both")
        if not args.hf.strip() or ":" in args.hf:
            raise DeeplimitError(f"--hf takes a Hugging Face model type such as llama or gpt2, got {args.hf!r}")
        return f"hf:{args.hf.strip()}"
    return args.model or "mlp-resnet"


def _typed_sets(pairs: list[str] | None, model: str) -> dict:
    """``--set`` read by the one typed grammar (:func:`deeplimit.cli._args.parse_sets`) over the trainer's fields.

    A Hugging Face type or a factory takes its own options too (config fields, factory keywords): those names
    are read as Python literals (else text) and checked against the config or the factory's signature when the
    model is built, so a misspelt one is still refused in one line."""
    import typing

    if not pairs:  # nothing to read: the field types (the models' configs, so torch) are not needed
        return {}

    from deeplimit.cli._args import setting_key
    from deeplimit.train.config import DEPRECATED_KEYS
    from deeplimit.transfer.objectives import point_fields

    fields = point_fields()
    # old spellings (heads, freeze_io): typed as the fields they stand for; config_from_point maps them and warns
    fields.update({old: fields[new] for old, (new, _) in DEPRECATED_KEYS.items()})
    if model.startswith("hf:") or ":" in model:
        known = {setting_key(name) for name in fields}
        fields.update({item.partition("=")[0].strip(): typing.Any for item in pairs or []
                       if setting_key(item.partition("=")[0]) not in known and "=" in item})
    return parse_sets(pairs, fields)


def point_from_args(args: argparse.Namespace) -> dict:
    """The flat point (:func:`deeplimit.train.config_from_point`) the flags describe; old spellings noted."""
    from deeplimit.errors import DeeplimitError
    from deeplimit.train.config import family_defaults

    model = model_spec(args)
    point = family_defaults(model)
    point.update(model=model, rule=args.rule, lr=args.lr, steps=args.steps, seed=args.seed)
    for name in ("width", "depth", "data", "data_dir", "optimizer", "batch_size", "base_width", "base_depth",
                 "alpha", "gamma", "n_heads", "train_io"):
        if getattr(args, name) is not None:
            point[name] = getattr(args, name)
    if args.old_heads is not None:
        _note(f"--heads is deprecated: write {DEPRECATED_FLAGS['--heads']} {args.old_heads} (same meaning)")
        if args.n_heads is not None:
            raise DeeplimitError("give --n-heads only (--heads is its old spelling), not both")
        point["n_heads"] = args.old_heads
    if args.old_freeze_io:
        _note(f"--freeze-io is deprecated: write {DEPRECATED_FLAGS['--freeze-io']} (same meaning)")
        if args.train_io:
            raise DeeplimitError("--freeze-io and --train-io contradict each other; give --no-train-io to freeze")
        point["train_io"] = False
    sets = _typed_sets(args.set, model)
    for key in ("width", "depth"):  # an explicit flag and an --set of the same option must agree
        if key in sets and getattr(args, key) is not None and sets[key] != getattr(args, key):
            raise DeeplimitError(f"--{key} {getattr(args, key)} and --set {key}={sets[key]} disagree; give one")
    point.update(sets)
    if "log2_lr" in sets:
        point.pop("lr")
    return point


def run(args: argparse.Namespace) -> int:
    import json
    import warnings

    from deeplimit.cli._args import set_threads
    from deeplimit.train.config import config_from_point  # no torch: a bad command line is refused before it

    point = point_from_args(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        cfg = config_from_point(point)
    for w in caught:  # old spellings in --set: one line each; any other warning as Python shows it
        if issubclass(w.category, FutureWarning):
            _note(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    from deeplimit.train.loop import train_and_save

    set_threads(args.threads)  # after torch is loaded, so its thread pool is set too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule warnings (spec §9) are expected in ablations
        summary = train_and_save(cfg, run_dir=args.run_dir, out=args.out, fresh=args.fresh, progress=not args.quiet)
    print(json.dumps(summary, indent=1))
    return 0
