"""Small argument helpers shared by the sub-commands (light: no torch at import)."""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Collection
from typing import Any

from deeplimit.errors import DeeplimitError

_WORDS = {"true": True, "false": False, "none": None, "null": None, "nan": math.nan, "inf": math.inf,
          "+inf": math.inf, "-inf": -math.inf}
# The words a boolean option accepts on the command line; anything else is an error (never "non-empty = True").
BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def thread_count(text: str) -> int:
    """argparse type: a number of threads in 1..:data:`MAX_THREADS` (10**12 overflows torch's int)."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {value}")
    return value


def check_seeds(name: str, *seeds: int) -> None:
    """A one-line error unless every seed is in 0..:data:`MAX_SEED` (a seed of 10**30 overflows the RNGs)."""
    for seed in seeds:
        if isinstance(seed, int) and seed > MAX_SEED:
            raise DeeplimitError(f"{name} must be at most {MAX_SEED:,} (a 32-bit seed), got {seed}")


def parse_bool(key: str, text: str) -> bool:
    """A boolean option's value: one of :data:`BOOL_WORDS` (any case), else a one-line error naming the key."""
    word = text.strip().lower()
    if word not in BOOL_WORDS:
        raise DeeplimitError(f"{key} is a yes/no option: write {key}=true or {key}=false (accepted: "
                             f"{', '.join(BOOL_WORDS)}), got {text!r}")
    return BOOL_WORDS[word]


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


def parse_sets(items: list[str], flag: str = "--set", bools: Collection[str] = ()) -> dict[str, Any]:
    """``["KEY=VALUE", …]`` → ``{"key": value}`` (dashes in keys become underscores).

    Keys in ``bools`` are yes/no options parsed strictly by :func:`parse_bool` (``mean_subtract=no`` is False;
    ``=perhaps`` or ``=2`` is an error), so a value is never taken as True just for being non-empty.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DeeplimitError(f"{flag} expects KEY=VALUE, got {item!r}; e.g. {flag} block_mult=0.35")
        key = key.strip().replace("-", "_")
        out[key] = parse_bool(f"{flag} {key}", value) if key in bools else parse_value(value)
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``: how a compute command runs, never what it computes."""
    g = p.add_argument_group("running")
    g.add_argument("--threads", type=thread_count, default=1,
                   help="torch threads (one is the fast, stable setting on small machines)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
