"""Small argument helpers shared by the sub-commands (light: no torch at import)."""

from __future__ import annotations

import argparse
import ast
import math
from typing import Any

from deeplimit.errors import DeeplimitError

_WORDS = {"true": True, "false": False, "none": None, "null": None, "nan": math.nan, "inf": math.inf,
          "+inf": math.inf, "-inf": -math.inf}


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``0.5``, ``(0.9, 0.95)``, ``'abs'``), ``true``/``false``,
    ``none``, ``nan``/``inf`` (so validation can name them), or else the plain string."""
    word = text.strip()
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return word


def parse_sets(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["KEY=VALUE", …]`` → ``{"key": value}`` (dashes in keys become underscores)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DeeplimitError(f"{flag} expects KEY=VALUE, got {item!r}; e.g. {flag} block_mult=0.35")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``: how a compute command runs, never what it computes."""
    g = p.add_argument_group("running")
    g.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads (one is the fast, stable setting on small machines)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
