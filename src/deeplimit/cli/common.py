"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.rules import rule_names


def add_rule_args(p: argparse.ArgumentParser, default: str = "depth_mup") -> None:
    g = p.add_argument_group("parametrization")
    g.add_argument("--rule", default=default, help=f"one of {', '.join(rule_names())} (dashes allowed)")
    g.add_argument("--alpha", type=float, default=None, help="branch exponent (turns the rule into 'custom')")
    g.add_argument("--gamma", type=float, default=None, help="LR exponent (default 1 - alpha)")
    g.add_argument("--base-width", type=int, default=None, help="base width n0 the hyperparameters were tuned at")
    g.add_argument("--base-depth", type=int, default=None, help="base depth L0 (number of residual blocks)")
    g.add_argument("--eps-scope", choices=["consistent", "blocks", "all", "none"], default=None)
    g.add_argument("--weight-decay-mode", choices=["mup", "torch", "independent"], default=None)
    g.add_argument("--block-mult", type=float, default=1.0, help="block multiplier a (tuned at the base shape)")


def rule_kwargs(args: argparse.Namespace) -> dict:
    return dict(alpha=args.alpha, gamma=args.gamma, eps_scope=args.eps_scope,
                weight_decay_mode=args.weight_decay_mode, block_mult=args.block_mult)


def add_mlp_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MLP-ResNet")
    g.add_argument("--activation", default="relu", help="relu, abs, identity, tanh, gelu")
    g.add_argument("--block-depth", type=int, default=1, help="weight matrices per residual branch (k)")
    g.add_argument("--block", choices=["post", "pre"], default="post", help="phi(Wx) or W phi(x)")
    g.add_argument("--no-mean-subtract", action="store_true", help="drop MS after phi (TP6 §6.3 ablation)")
    g.add_argument("--pre-ln", action="store_true", help="LayerNorm before each block's first matrix")


def add_model_source_args(p: argparse.ArgumentParser) -> None:
    """``--model pkg.module:factory`` and ``--hf MODEL_TYPE``: any model, not only the built-in ones."""
    g = p.add_argument_group("model (any model)")
    g.add_argument("--hf", default=None, metavar="MODEL_TYPE",
                   help="a Hugging Face transformers model type (llama, gpt2, bert, vit, ...) built from a tiny config "
                        "with the given width and depth (pip install deeplimit[hf])")
    g.add_argument("--heads", type=int, default=4, help="attention heads of the --hf model (head_dim grows with width)")


def load_factory(spec: str) -> Callable[[int, int], nn.Module]:
    """Import ``pkg.module:factory`` (or ``path/to/file.py:factory``): a callable ``(width, depth) -> nn.Module``."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise DeeplimitError(f"--model {spec!r} is neither a built-in model nor pkg.module:factory; write e.g. "
                             "--model mypkg.models:make (a callable (width, depth) -> nn.Module)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise DeeplimitError(f"--model {spec!r}: file {path} does not exist")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except DeeplimitError:
        raise
    except ImportError as exc:
        raise DeeplimitError(f"--model {spec!r}: cannot import {module_name!r} ({exc}); make it importable (install "
                             "it, or add its folder to PYTHONPATH)") from None
    except Exception as exc:
        raise DeeplimitError(f"--model {spec!r}: importing {module_name!r} raised {type(exc).__name__}: "
                             f"{exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise DeeplimitError(f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise DeeplimitError(f"--model {spec!r}: {attr!r} is a {type(factory).__name__}, not a callable "
                             "(width, depth) -> nn.Module")
    return factory


def model_factory(args: argparse.Namespace) -> Callable[[int, int], nn.Module] | None:
    """The factory named by ``--hf`` or ``--model pkg.module:factory``; None for a built-in model."""
    if getattr(args, "hf", None) and ":" in (getattr(args, "model", None) or ""):
        raise DeeplimitError("give either --hf MODEL_TYPE or --model pkg.module:factory, not both")
    if getattr(args, "hf", None):
        from deeplimit.scaling import hf

        return hf.factory(args.hf, heads=args.heads)
    if ":" in (getattr(args, "model", None) or ""):
        return load_factory(args.model)
    return None
