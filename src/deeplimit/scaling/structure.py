"""A model's structure as the scaling core sees it, declared from outside the model.

deeplimit's own layers declare themselves (``dl_roles``, ``dl_block_depth``, ``branch_mult`` …). A model whose
code you cannot edit (Hugging Face, nanoGPT, your own) is described instead by a :class:`Structure`: which
modules are residual blocks, which module outputs are the residual *branches* inside them, which modules are
the input embeddings and the readout (tied or not), and which modules compute attention logits. The plan turns
it into per-parameter roles and into forward multipliers applied with hooks, so no forward needs editing.

A :class:`Structure` is stored on the model (``model.dl_structure``), a plain attribute that survives
``deepcopy``. Module names are canonical (see :func:`deeplimit.scaling.names.canonical_name`). Reading it back
(through wrappers, or found for a Hugging Face model) is :func:`deeplimit.scaling.declared.get_structure`.

How the plan consumes it (docs/scaling.md, "Models you cannot edit"): ``blocks`` make every parameter below them
in-block (hidden matrices, block vectors); ``branches``, ``inputs`` and ``readouts`` get forward hooks that
multiply by the plan's multipliers; ``attention`` modules get their logit scale attribute set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.names import canonical_name


@dataclass(frozen=True)
class AttentionSpec:
    """One attention module: how many heads, and where its logit scale lives.

    Attributes:
        n_heads: query heads H.
        n_kv_heads: key/value heads H_kv (H_kv < H is grouped-query attention; H_kv = 1 is multi-query).
        head_dim: d_head, the per-head dimension.
        scale_attr: name of the module's float attribute that multiplies q·k (e.g. Hugging Face's
            ``scaling``); the plan sets it. ``None`` when the module applies no settable scale.
    """

    n_heads: int
    n_kv_heads: int
    head_dim: int
    scale_attr: str | None = "scaling"

    def __post_init__(self) -> None:
        for name in ("n_heads", "n_kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DeeplimitError(f"AttentionSpec {name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise DeeplimitError(f"n_kv_heads={self.n_kv_heads} does not divide n_heads={self.n_heads}; grouped-"
                                 "query attention shares each k/v head among n_heads/n_kv_heads query heads")


@dataclass(frozen=True)
class Structure:
    """What the scaling core needs to know about a model it cannot annotate.

    Attributes:
        width: the model's width n (e.g. ``config.hidden_size``).
        depth: the number of residual blocks L (one per transformer layer, decision D6).
        blocks: block module name → block depth k (weight matrices in series in one branch). Every
            parameter below a block is in-block.
        branches: branch-output module name → name of its block. The module's output is the residual branch
            and is multiplied by the block's ``branch_mult`` (a·m_L^{-α}) with a forward hook.
        inputs: modules whose *output* is multiplied by ``input_mult`` (token/position embeddings, input layers).
        readouts: modules whose *input* is multiplied by ``output_mult·m_N^{-1}`` (output heads, tied or not).
        attention: attention module name → :class:`AttentionSpec`.
        roles: extra fnmatch patterns → role, as ``make_plan(roles=...)`` (applied before the defaults).
        family: ``"transformer"`` or ``"resnet"`` (selects the block-depth warnings of depth-mup spec §9).
        head_growth: which attention dimension grows with width: ``"head_dim"`` (heads fixed) or ``"heads"``
            (head_dim fixed). Decides the base head_dim used by the μP 1/d logit scale.
        source: free text naming where the structure came from (e.g. ``"hf:llama"``), shown in the plan.
        transposed: modules whose ``weight`` is stored (fan_in, fan_out) instead of PyTorch's (fan_out, fan_in),
            e.g. GPT-2's ``Conv1D`` (found by type as well); it decides fan-in for the init std.
        input_scales: input module → power p of the width by which the model's own forward multiplies its output
            (Gemma's √hidden_size embedding normalizer: 0.5). Under μP the plan's input multiplier divides it by
            m_N^p, so the input stays O(1) over width; 1 at the base shape.
    """

    width: int | None = None
    depth: int | None = None
    blocks: dict[str, int] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    readouts: tuple[str, ...] = ()
    attention: dict[str, AttentionSpec] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    family: Literal["transformer", "resnet"] = "transformer"
    head_growth: Literal["head_dim", "heads"] = "head_dim"
    source: str = "declared"
    transposed: tuple[str, ...] = ()
    input_scales: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("inputs", "readouts", "transposed"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise DeeplimitError(f"{name} must be a tuple of module names, got the string {value!r}; "
                                     f"write {name}=({value!r},)")
            object.__setattr__(self, name, tuple(value))
        for name in ("width", "depth"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or
                                      not 0 < value < float("inf")):
                raise DeeplimitError(f"Structure {name} must be a positive number, got {value!r}")
        if self.family not in ("transformer", "resnet"):
            raise DeeplimitError(f"family must be 'transformer' or 'resnet', got {self.family!r}")
        for name, block in self.branches.items():
            if block not in self.blocks:
                raise DeeplimitError(f"branch {name!r} names block {block!r}, which is not in blocks; declare the "
                                     "block first (blocks={name: block_depth})")
            if not (name == block or name.startswith(block + ".")):
                raise DeeplimitError(f"branch {name!r} is not inside its block {block!r}; a branch must be a "
                                     "submodule of the block it belongs to")
        for name, power in self.input_scales.items():
            if name not in self.inputs or isinstance(power, bool) or not isinstance(power, int | float):
                raise DeeplimitError(f"input_scales[{name!r}] = {power!r}: give a number for a module in inputs")
        for name, k in self.blocks.items():
            if not isinstance(k, int) or k < 1:
                raise DeeplimitError(f"block {name!r} has block depth {k!r}; give a positive int (the number of "
                                     "weight matrices in series in one branch)")
        if self.head_growth not in ("head_dim", "heads"):
            raise DeeplimitError(f"head_growth must be 'head_dim' or 'heads', got {self.head_growth!r}")


def declare_structure(model: nn.Module, structure: Structure) -> nn.Module:
    """Attach ``structure`` to ``model`` (checked against its modules); returns the model.

    The generic way to describe a model that carries no deeplimit declarations (nanoGPT, your own)::

        dl.declare_structure(model, dl.Structure(width=n, depth=L, blocks={"h.0": 2, ...},
                                                 branches={"h.0.attn": "h.0", "h.0.mlp": "h.0", ...},
                                                 inputs=("wte", "wpe"), readouts=("lm_head",)))
        plan = dl.parametrize(model, "completep", base_width=64, base_depth=2)
    """
    if not isinstance(structure, Structure):
        raise DeeplimitError(f"declare_structure needs a deeplimit.Structure, got {type(structure).__name__}")
    modules = {canonical_name(n) for n, _ in model.named_modules()}
    named = [*structure.blocks, *structure.branches, *structure.inputs, *structure.readouts, *structure.attention,
             *structure.transposed]
    missing = sorted({n for n in named if n not in modules})
    if missing:
        raise DeeplimitError(f"the structure names modules the model does not have: {missing[:8]}; use the names "
                             "of model.named_modules()")
    model.dl_structure = structure
    return model

