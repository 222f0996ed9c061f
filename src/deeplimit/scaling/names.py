"""Canonical parameter and module names: the keys of a plan, whatever wraps the model.

DDP adds ``module.``, ``torch.compile`` adds ``_orig_mod.``, FSDP1 and activation checkpointing add their own
components. A plan is keyed by names with those components removed (ecosystem spec §1.1), so one plan serves
the bare, wrapped and compiled model alike.
"""

from __future__ import annotations

from torch import nn

WRAPPER_PARTS = frozenset({"module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module",
                           "_forward_module"})


def canonical_name(name: str) -> str:
    """Drop wrapper components (DDP ``module.``, compile ``_orig_mod.``, FSDP, checkpoint wrappers)."""
    return ".".join(p for p in name.split(".") if p not in WRAPPER_PARTS)


def join(module: str, attr: str) -> str:
    """``module.attr`` (just ``attr`` for the root module, whose canonical name is ``""``)."""
    return f"{module}.{attr}" if module else attr


def parent(name: str) -> str:
    """The module that owns parameter ``name`` (``""`` for the root)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    """Canonical name → module, first occurrence of each module (as ``named_modules``)."""
    return {canonical_name(n): m for n, m in model.named_modules()}
