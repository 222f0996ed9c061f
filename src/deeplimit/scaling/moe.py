"""Mixture-of-experts layers: stacked expert weights and routers, recognised without declarations.

A mixture-of-experts (MoE) MLP stores its E experts' matrices as one 3-D tensor per projection and picks experts
per token with a *router* (a gate matrix with E outputs). Two facts decide their μP scaling (depth-mup spec §0,
§4; TP5 Table 3):

* **experts**: each slice ``w[e]`` is an ordinary hidden matrix, so fans are *per expert*: for
  ``gate_up_proj`` of shape (E, 2·I, n) the fan-in is n, not 2·I·n (a convolution reading would give an init
  std of 1/√(2In) instead of 1/√n). Which of the two trailing dims is the fan-in is a fact of the module's
  forward, not of the shape: ``F.linear(x, w[e])`` reads (E, out, in), ``x @ w[e]`` reads (E, in, out).
  ``transformers`` records it on every experts module its ``use_experts_implementation`` decorator wraps
  (``is_transposed``, with ``num_experts``), and :func:`declare_experts` records it on any other module.
  A 3-D tensor with neither (nor a convolution module) is never guessed: the plan names it and this fix.
* **router**: a matrix from the width n to E logits. E is a count of experts, finite as n → ∞, so the router
  has one infinite dim (its fan-in), the shape of a readout: μP initialises it with a width-independent
  σ/√n₀ and multiplies its input by m_N^{-1} (decision D1's canonical readout form), so its logits keep their
  base-shape size as n grows, and its Adam LR has no width factor. It sits in a residual block, so it takes
  the block's depth factors like every in-block tensor (role ``router``). A gate with one output (Qwen2-MoE's
  ``shared_expert_gate``) is the same case with E = 1.

The experts' block is one residual block per layer (its branch is the MoE module's output), and the
load-balancing loss reads the router logits as the model computes them: nothing of it is changed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from deeplimit.errors import DeeplimitError

ExpertsLayout = Literal["out_in", "in_out"]
# Layout names a classified tensor carries (see shapes.fans): experts × out × in, or experts × in × out.
EXPERTS_LAYOUTS = {"out_in": "experts", "in_out": "experts_transposed"}


def declare_experts(module: nn.Module, layout: ExpertsLayout) -> nn.Module:
    """Declare that ``module``'s 3-D parameters are E stacked matrices, one per expert; returns the module.

    ``layout="out_in"``: shape (E, fan_out, fan_in), used as ``F.linear(x, w[e])``; ``"in_out"``: shape
    (E, fan_in, fan_out), used as ``x @ w[e]``. Its 2-D parameters whose first dim is E are per-expert biases.
    Stored on the module (``dl_experts``), so it survives ``deepcopy``.
    """
    if layout not in EXPERTS_LAYOUTS:
        raise DeeplimitError(f"experts layout {layout!r} is unknown; use 'out_in' (E x out x in, F.linear(x, w[e])) "
                             "or 'in_out' (E x in x out, x @ w[e])")
    module.dl_experts = layout
    return module


def experts_layout(module: nn.Module) -> ExpertsLayout | None:
    """How ``module`` stores its experts: declared (:func:`declare_experts`), or transformers' own record
    (``is_transposed`` and ``num_experts``, set by ``use_experts_implementation``); ``None`` if neither."""
    declared = getattr(module, "dl_experts", None)
    if declared is not None:
        return declared
    transposed = getattr(module, "is_transposed", None)
    if isinstance(transposed, bool) and isinstance(getattr(module, "num_experts", None), int):
        return "in_out" if transposed else "out_in"
    return None


def n_experts(module: nn.Module) -> int | None:
    """E of an experts module: its ``num_experts``, else the leading dim of its 3-D parameters (if they agree)."""
    e = getattr(module, "num_experts", None)
    if isinstance(e, int) and not isinstance(e, bool):
        return e
    leading = {int(p.shape[0]) for p in module.parameters(recurse=False) if p.ndim == 3}
    return leading.pop() if len(leading) == 1 else None


def expert_param_layout(module: nn.Module, pname: str, p: torch.Tensor) -> str | None:
    """The layout name (``shapes.fans``) of one parameter of an experts module, or ``None`` if it is not one.

    3-D (E, a, b): stacked matrices; 2-D (E, d): a per-expert bias or vector (``"experts_vector"``).
    """
    layout = experts_layout(module)
    if layout is None:
        return None
    e = n_experts(module)
    if p.ndim == 3 and (e is None or p.shape[0] == e):
        return EXPERTS_LAYOUTS[layout]
    if p.ndim == 2 and e is not None and p.shape[0] == e:
        return "experts_vector"
    return None


def router_modules(modules: dict[str, nn.Module], experts: dict[str, int]) -> set[str]:
    """Routers of the MoE layers holding the experts modules ``experts`` (name → E).

    A router is a sibling of the experts module (same parent: the MoE layer) whose
    ``weight`` is a matrix with E outputs (``nn.Linear(n, E)`` or a bare (E, n) parameter read by
    ``F.linear``), or a gate with one output (a shared expert's scalar gate).
    """
    parents = {name.rpartition(".")[0]: (name, e) for name, e in experts.items()}
    out = set()
    for mname, module in modules.items():
        owner = mname.rpartition(".")[0]
        if not mname or owner not in parents or parents[owner][0] == mname:
            continue
        w = dict(module.named_parameters(recurse=False)).get("weight")
        if w is not None and w.ndim == 2 and int(w.shape[0]) in (parents[owner][1], 1):
            out.add(mname)
    return out
