"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse

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
