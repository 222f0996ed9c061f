"""Fans and width multipliers of each tensor (depth-mup spec §0: m_N per tensor = fan_in / base fan_in).

Two sources, as ``mup.set_base_shapes``: the role (input: fan-out scales; hidden: both; readout: fan-in; vectors:
their one dim, except a readout's bias), or an actual base-width model (per-tensor ratios of its shapes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.names import canonical_name


def is_transposed(module: nn.Module) -> bool:
    """True for modules storing ``weight`` as (fan_in, fan_out): Hugging Face's ``Conv1D`` (GPT-2 family)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def fans(p: torch.Tensor, layout: str = "linear") -> tuple[int, int]:
    """(fan_in, fan_out) of a parameter stored in ``layout``.

    ``"linear"``: (fan_out, fan_in, *kernel) as ``nn.Linear``/``nn.Conv*``; ``"transposed"``: (fan_in, fan_out)
    as GPT-2's ``Conv1D``; ``"experts"`` / ``"experts_transposed"``: E stacked matrices (E, out, in) / (E, in,
    out), fans per expert; ``"experts_vector"``: E stacked vectors (E, d); ``"table"``: an embedding table
    (*rows, dim) whose output is its last dim, as ``nn.Embedding`` (V, n) or a ViT position table (1, P, n).
    Vectors: (1, len); scalars: (1, 1).
    """
    if p.ndim == 0:
        return 1, 1
    if p.ndim == 1:
        return 1, p.shape[0]
    if layout == "table":
        return math.prod(p.shape[:-1]), p.shape[-1]
    if layout == "transposed" and p.ndim == 2:
        return p.shape[0], p.shape[1]
    # stacked experts (scaling/moe.py): the fans of one expert's matrix, never of the stack
    if layout == "experts" and p.ndim == 3:
        return p.shape[2], p.shape[1]
    if layout == "experts_transposed" and p.ndim == 3:
        return p.shape[1], p.shape[2]
    if layout == "experts_vector" and p.ndim == 2:
        return 1, p.shape[1]
    return math.prod(p.shape[1:]), p.shape[0]


def role_width_mults(role: str, m_N: float, finite_vector: bool) -> tuple[float, float]:
    """(fan_in_mult, fan_out_mult) from the role alone (spec §4): every non-fixed dimension scales with m_N.

    input: fan-out; hidden: both (also for GQA k/v projections, whose fan-out H_kv·d scales with width whether
    heads or head_dim grow); readout: fan-in; vectors: their dim, unless ``finite_vector`` (a readout's bias).
    """
    if role == "hidden":
        return m_N, m_N
    if role == "input":
        return 1.0, m_N
    if role in ("readout", "router"):  # a router's E outputs are a count of experts: finite (scaling/moe.py)
        return m_N, 1.0
    if role == "keep":  # its own init and no width factor (scaling/special.py)
        return 1.0, 1.0
    return 1.0, (1.0 if finite_vector else m_N)


def base_shapes(base: nn.Module) -> dict[str, tuple[int, ...]]:
    """Canonical parameter name → shape of a base-width model, under every name of a tied tensor (a tied head's
    ``lm_head.weight`` is the embedding's tensor, which ``named_parameters`` yields only once)."""
    return {canonical_name(n): tuple(p.shape) for n, p in base.named_parameters(remove_duplicate=False)}


def base_shape(name: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The base shape of ``name``; a shallower base has fewer blocks, so ``blocks.31.w`` matches ``blocks.0.w``."""
    if name in shapes:
        return shapes[name]
    generic = re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "0", name)
    return shapes.get(generic)


def base_width_mults(name: str, p: torch.Tensor, layout: str, shapes: dict[str, tuple[int, ...]]
                     ) -> tuple[float, float]:
    """(fan_in_mult, fan_out_mult) of one tensor from the shape of its counterpart in the base model."""
    bs = base_shape(name, shapes)
    if bs is None:
        raise DeeplimitError(
            f"parameter {name!r} has no counterpart in the base model; the base must have the same "
            "architecture (fewer blocks is fine) — build it from the same config with the base width")
    if p.ndim == 0 or not bs:
        return 1.0, 1.0
    fan_in, fan_out = fans(p, layout)
    base_in, base_out = fans(torch.empty(bs, device="meta"), layout)
    return fan_in / base_in, fan_out / base_out


def role_from_mults(fi: float, fo: float) -> str | None:
    """Role from which dims differ from the base (mup's infinite dims): both → hidden, out → input, in → readout."""
    return {(True, True): "hidden", (False, True): "input", (True, False): "readout"}.get((fi != 1.0, fo != 1.0))


def width_from_base(sites: Iterable, width: float, base_width: float) -> tuple[float, float]:
    """(n, n₀) of a model and its ``base=`` twin that declare no width, from the classified tensors ``sites``
    (``role``, ``fan_in``/``fan_out`` and their multipliers): the dimension that differs most often
    between them (hidden fan-ins, input fan-outs), e.g. (256, 64) for mup-style models of width 256 and base 64.
    Unchanged if no tensor differs (m_N = 1)."""
    seen: dict[tuple[int, float], int] = {}
    for s in sites:
        for size, mult in ((s.fan_in, s.fan_in_mult), (s.fan_out, s.fan_out_mult)):
            if mult != 1.0 and s.role in ("hidden", "input", "readout"):
                seen[(size, mult)] = seen.get((size, mult), 0) + 1
    if not seen:
        return width, base_width
    # most frequent (size, multiplier); among ties the smallest size (the width, not a 4x MLP dimension)
    size, mult = min(seen, key=lambda k: (-seen[k], k[0]))
    return float(size), float(size) / mult
