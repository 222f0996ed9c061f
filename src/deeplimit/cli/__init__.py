"""The ``deeplimit`` command line: one sub-command module per capability.

Each module in ``COMMANDS`` exposes ``register(subparsers)``, which adds its sub-parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deeplimit.errors import DeeplimitError

COMMANDS = [
    "deeplimit.cli.plan",
    "deeplimit.cli.coord_check",
    "deeplimit.cli.feature_diversity",
    "deeplimit.cli.train",
    "deeplimit.cli.sweep",
    "deeplimit.cli.sde",
    "deeplimit.cli.signal",
    "deeplimit.cli.reproduce",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeplimit",
        description="Neural networks in the infinite depth-and-width limit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DeeplimitError as exc:
        print(f"deeplimit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
