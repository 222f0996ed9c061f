"""Layers that carry the forward multipliers of a parametrization.

Multipliers are plain Python floats on the *module* (never attributes of ``nn.Parameter``), set by
:meth:`deeplimit.scaling.Plan.apply`. They survive ``copy.deepcopy``, are constants to ``torch.compile``
and do not depend on parameter metadata that ``torch.save``, DDP or FSDP would drop (ecosystem spec §1.1).

Roles: a module may declare the role of each parameter it owns in ``dl_roles`` (a dict
``{param_name: role}``), with role one of ``input``, ``hidden``, ``readout``, ``vector``. A module with
an integer ``dl_block_depth`` is a residual block: everything below it is *in-block*, and its forward pass
must multiply its branch by the float ``branch_mult``.
"""

from __future__ import annotations

import torch
from torch import nn

ROLES = ("input", "hidden", "readout", "vector")


def declare_roles(module: nn.Module, **roles: str) -> nn.Module:
    """Declare roles of a plain module's own parameters, e.g. ``declare_roles(lin, weight="readout")``.

    Stored on the module (a dict attribute), so it survives deepcopy and is independent of the Parameters.
    """
    bad = {k: v for k, v in roles.items() if v not in ROLES}
    if bad:
        raise ValueError(f"unknown role(s) {bad}; roles are {ROLES}")
    module.dl_roles = {**getattr(module, "dl_roles", {}), **roles}
    return module


class Input(nn.Linear):
    """Input layer ``U`` (d_in → n): width-independent init, output × ``input_mult``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        self.dl_roles = {"weight": "input", "bias": "vector"}
        self.input_mult = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y if self.input_mult == 1.0 else y * self.input_mult


class Embedding(nn.Embedding):
    """Token/position embedding (an input-role table): output × ``input_mult``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, **kw) -> None:
        super().__init__(num_embeddings, embedding_dim, **kw)
        self.dl_roles = {"weight": "input"}
        self.input_mult = 1.0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        y = super().forward(idx)
        return y if self.input_mult == 1.0 else y * self.input_mult


class Readout(nn.Linear):
    """Readout ``V`` (n → d_out). Under μP its output is × ``output_mult · m_N^{-1}`` (spec §2.2, D1)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        self.dl_roles = {"weight": "readout", "bias": "vector"}
        self.output_mult = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scale the input, not the output: one (batch × n) multiply either way, and it keeps the bias unscaled
        # like mup's MuReadout.
        return super().forward(x * self.output_mult if self.output_mult != 1.0 else x)


class Residual(nn.Module):
    """Generic residual block ``x + branch_mult · branch(x)`` for user models.

    ``block_depth`` is the number of weight matrices in series inside ``branch`` (TP6 §9); the scaling core
    warns when it is ≥ 2 and the rule gives no transfer guarantee.
    """

    def __init__(self, branch: nn.Module, block_depth: int) -> None:
        super().__init__()
        if not isinstance(block_depth, int) or block_depth < 1:
            raise ValueError(f"block_depth must be a positive int (weight matrices in series), got {block_depth!r}")
        self.branch = branch
        self.dl_block_depth = block_depth
        self.branch_mult = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch_mult * self.branch(x)
