"""Strict checks for model options: real booleans, finite numbers, sizes that fit before anything is allocated.

A config that silently turns ``mean_subtract='no'`` into True (a non-empty string is truthy) or accepts
``tau0=inf`` trains a different model than the one asked for, with no word. Every model config and module
constructor checks its options here, with one-line :class:`~deeplimit.errors.DeeplimitError`\\ s that name the
option, what it must be and the value given.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeplimit.errors import DeeplimitError

# Sane upper bounds, far above anything this library trains, low enough that a typo (an extra 000) is refused in
# a millisecond instead of building modules for hours or overflowing an index: a model of depth 100,000 already
# needs minutes just to construct its blocks in Python.
MAX_WIDTH = 2**20
MAX_DEPTH = 100_000
# Python-side memory of one residual block's modules (objects, hooks, dicts), beyond its tensors.
MODULE_OVERHEAD_BYTES = 16 * 1024


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; a DeeplimitError unless it is a real boolean (``True``/``False``, or numpy's)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise DeeplimitError(f"{name} must be True or False (a bool), got {value!r}; pass {name}=True or False (a "
                         "string or number is not read as a flag)")


def check_real(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False, fix: str = "") -> float:
    """``value`` as a float; a DeeplimitError unless it is a finite number in the given range.

    ``lo``/``hi`` are inclusive bounds unless ``lo_open``/``hi_open``; ``fix`` ends the message (what to pass).
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    if ok and math.isfinite(v):
        ok = ((lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi)))
    else:
        ok = False
    if not ok:
        if lo is not None and hi is not None:
            what = f"lie in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'} and be finite"
        elif lo == 0:
            what = "be positive and finite" if lo_open else "be finite and ≥ 0"
        elif lo is not None:
            what = f"be finite and {'>' if lo_open else '≥'} {lo:g}"
        elif hi is not None:
            what = f"be finite and {'<' if hi_open else '≤'} {hi:g}"
        else:
            what = "be a finite number"
        raise DeeplimitError(f"{name} must {what}, got {value!r}" + (f"; {fix}" if fix else ""))
    return v


def check_size(name: str, value: Any, *, maximum: int | None = None, minimum: int = 1) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a DeeplimitError otherwise (bools are not sizes)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise DeeplimitError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise DeeplimitError(f"{name} must be {what}, got {v}")
    if maximum is not None and v > maximum:
        raise DeeplimitError(f"{name} = {v:,} is above the limit of {maximum:,}; choose a smaller {name}")
    return v


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``, else free physical pages), or None where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return None


def size_words(n_bytes: float) -> str:
    """``3.2 GiB`` / ``45 MiB`` / ``2.0e+06 TiB``: a byte count for an error message."""
    if n_bytes >= 2**50:
        return f"{n_bytes / 2**40:.2g} TiB"
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def check_fits(what: str, n_params: int, n_modules: int = 0, *, copies: int = 1, bytes_per: int = 4,
               fix: str = "lower width or depth") -> None:
    """Refuse, before allocating, a model whose ``copies`` × ``n_params`` × ``bytes_per`` bytes (plus Python's
    per-module overhead) exceed the memory available now.

    Only for models built in CPU memory: under ``torch.device("meta")`` (or another default device) nothing
    is checked, so building a huge model on the meta device to inspect it stays possible.
    """
    if _default_device_type() != "cpu":
        return
    need = n_params * copies * bytes_per + n_modules * MODULE_OVERHEAD_BYTES
    avail = available_memory()
    if avail is not None and need > avail:
        raise DeeplimitError(f"{what} has {n_params:,} parameters and needs ≈ {size_words(need)}, but only "
                             f"{size_words(avail)} of memory is available; {fix}")


def _default_device_type() -> str:
    getter = getattr(torch, "get_default_device", None)
    if getter is None:  # older torch: no device context manager to respect
        return "cpu"
    try:
        return getter().type
    except Exception:  # noqa: BLE001 - an exotic mode stack: do not block construction over it
        return "cpu"
