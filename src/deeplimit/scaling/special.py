"""Parameters the plan cannot classify with certainty: named in an error, never re-drawn by guess.

A plan re-initialises every ``normal`` tensor and zeroes every bias, so a wrong guess is a silent wrong: Mamba's
``A_log`` (log 1…N, the S4D-real init) re-drawn as N(0, 1/N), its ``dt_proj.bias`` (the inverse softplus of
dt ∈ [dt_min, dt_max], about −4.6) zeroed. What the type of a module tells for certain — ``nn.Linear``,
``nn.Conv*``, ``nn.Embedding``, norms, GPT-2's ``Conv1D``, experts and routers (:mod:`.moe`), deeplimit's own
layers — is classified as before. These are not (:func:`uncertain`):

* a parameter a module *defines itself* inside a residual block (``self.A_log = nn.Parameter(...)``), with two
  or more dims — or any number of dims in a Hugging Face model, whose ``PreTrainedModel._init_weights``
  documents that such parameters get the family's own init (Mamba's ``A_log``, ``D``, Mamba-2's ``dt_bias``);
* in a Hugging Face model, the biases of the layers inside such a module: the family's init of the module
  sets them too (Mamba's ``dt_proj.bias``);
* a tensor with three or more dims that is neither a convolution's nor a declared experts stack
  (:func:`deeplimit.scaling.moe.declare_experts`);
* a grouped convolution with 1 < groups < channels: whether its group count or its group size grows with
  width is not in the module.

A *depthwise* convolution (groups = in_channels, Mamba's ``conv1d``) is certain: each output reads
``kernel_size`` inputs of its own channel, a finite fan-in, so only its channel dim scales — a vector-like
tensor (one infinite dim, TP5 §J) that keeps its own init and takes a vector's LR.

The fix is a declaration: a role from :data:`PLAN_ROLES`, usually ``"keep"`` (the tensor keeps its own init and
takes no width factor; its LR, ε and λ are the base values times the depth factor of its place, since the
branch it sits in is scaled by a·m_L^{-α} like every other).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn.layers import ROLES
from deeplimit.scaling.shapes import is_transposed

# Roles a plan knows: the layers' four, a MoE router (scaling/moe.py) and "keep" (own init, no width factor).
PLAN_ROLES = (*ROLES, "router", "keep")
_STANDARD = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer (torch's, or a family's own: ``LlamaRMSNorm``, nanoGPT's ``LayerNorm``)."""
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)) or \
        "norm" in type(module).__name__.lower()


def is_standard(module: nn.Module) -> bool:
    """A layer whose parameters' meaning its type fixes (a norm, a linear map, a convolution, an embedding)."""
    return isinstance(module, _STANDARD) or is_norm(module) or is_transposed(module)


def is_depthwise(module: nn.Module) -> bool:
    """A depthwise convolution: one group per input channel, so each output reads ``kernel_size`` inputs."""
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and module.groups == module.in_channels


def uncertain(module: nn.Module, pname: str, p: torch.Tensor, in_block: bool, family_init: bool,
              experts: bool) -> str | None:
    """Why one undeclared parameter cannot be classified with certainty, or ``None`` if it can.

    ``family_init``: the model documents a family-specific init for parameters modules define themselves (a
    Hugging Face model); ``experts``: the tensor is a recognised experts stack or router (:mod:`.moe`).
    """
    if experts:
        return None
    conv = isinstance(module, nn.modules.conv._ConvNd)
    if conv and 1 < module.groups < module.in_channels and pname == "weight":
        return (f"a grouped convolution ({module.groups} groups of {module.in_channels} channels): whether the "
                "groups or the group size grow with width is not in the module")
    if p.ndim >= 3 and not conv:
        return (f"a {p.ndim}-D tensor of {type(module).__name__} that is neither a convolution nor a declared "
                "experts stack")
    if in_block and not is_standard(module) and (p.ndim >= 2 or family_init):
        return f"defined by {type(module).__name__} itself, with its family's own init"
    return None


def suggestion(names: list[str]) -> dict[str, str]:
    """``roles=`` patterns that keep ``names`` as they are (block indices become ``*``)."""
    return {re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "*", n): "keep" for n in names}


def refuse(found: dict[str, str]) -> DeeplimitError:
    """The one error for every uncertain parameter (``found``: name → reason), with the declaration that fixes it."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in found.items():
        by_reason.setdefault(reason, []).append(name)
    listed = "; ".join(f"{', '.join(ns[:4])}{' …' if len(ns) > 4 else ''} ({reason})"
                       for reason, ns in by_reason.items())
    stacked = any("experts stack" in r for r in found.values())
    experts_fix = (" A stack of per-expert matrices is declared with deeplimit.scaling.moe.declare_experts("
                   "model.get_submodule('<module>'), 'out_in') (E x out x in, F.linear(x, w[e])) or 'in_out' "
                   "(E x in x out, x @ w[e]).") if stacked else ""
    return DeeplimitError(
        f"cannot classify {len(found)} parameter(s) with certainty, and re-drawing them would silently replace "
        f"their own init: {listed}. Declare them, e.g. roles={suggestion(list(found))!r} ('keep': its own init, "
        "no width factor; or a role among input, hidden, readout, router, vector if you know it)." + experts_fix)
