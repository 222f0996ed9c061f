"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

from deeplimit.cli._args import rule_arg
from deeplimit.errors import DeeplimitError
from deeplimit.nn._validate import MAX_DEPTH, MAX_WIDTH, check_fits, check_size
from deeplimit.scaling.rules import rule_names
from deeplimit.train.models import load_factory  # the factory loader lives with the trainer, which needs it too


def add_rule_args(p: argparse.ArgumentParser, default: str = "depth_mup") -> None:
    g = p.add_argument_group("parametrization")
    g.add_argument("--rule", default=default, type=rule_arg,
                   help=f"one of {', '.join(rule_names())} (- or _ alike: depth-mup is depth_mup)")
    g.add_argument("--alpha", type=float, default=None, help="branch exponent (turns the rule into 'custom')")
    g.add_argument("--gamma", type=float, default=None, help="LR exponent (default 1 - alpha)")
    g.add_argument("--base-width", type=int, default=None, help="base width n0 the hyperparameters were tuned at")
    g.add_argument("--base-depth", type=int, default=None, help="base depth L0 (number of residual blocks)")
    g.add_argument("--eps-scope", choices=["consistent", "blocks", "all", "none"], default=None)
    g.add_argument("--weight-decay-mode", choices=["mup", "torch", "independent"], default=None)
    g.add_argument("--block-mult", type=float, default=1.0, help="block multiplier a (tuned at the base shape)")
    c = p.add_argument_group("base-shape constants (tuned at the base shape; default: the plan's, 1)")
    for name, what in BASE_CONSTANTS.items():
        c.add_argument(f"--{name.replace('_', '-')}", type=float, default=None, metavar="X", help=what)


# The plan's base-shape constants a command line can set (deeplimit.scaling.hparams.HParams).
BASE_CONSTANTS = {
    "sigma_in": "init std constant of the input layer",
    "sigma_hidden": "init std constant of hidden matrices (std sigma/sqrt(fan_in))",
    "sigma_out": "init std constant of the readout",
    "sigma_emb": "init std constant of embedding tables",
    "input_mult": "forward multiplier of the input layer",
    "output_mult": "forward multiplier of the readout",
    "attn_mult": "attention logit multiplier",
}


def rule_kwargs(args: argparse.Namespace) -> dict:
    """The rule's options and every base-shape constant given on the command line, for make_plan/parametrize."""
    out = dict(alpha=args.alpha, gamma=args.gamma, eps_scope=args.eps_scope,
               weight_decay_mode=args.weight_decay_mode, block_mult=args.block_mult)
    out.update({k: getattr(args, k) for k in BASE_CONSTANTS if getattr(args, k, None) is not None})
    return out


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


def check_factory_fits(factory: Callable[[int, int], nn.Module], width: int, depth: int, *, copies: int = 1,
                       fix: str = "lower width or depth") -> None:
    """Refuse sizes out of range, then count the parameters of ``factory(width, depth)`` built on the meta
    device (no memory) and refuse a model whose ``copies`` of them exceed the memory available now. A factory
    that cannot build on the meta device is checked when it really builds."""
    check_size("width", width, maximum=MAX_WIDTH)
    check_size("depth", depth, maximum=MAX_DEPTH)
    try:
        with torch.device("meta"):
            model = factory(width, depth)
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        n_modules = sum(1 for _ in model.modules())
    except Exception:  # noqa: BLE001 - the real build reports the factory's own error in one line
        return
    check_fits(f"the model at width {width}, depth {depth}", n_params, n_modules, copies=copies, fix=fix)


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
