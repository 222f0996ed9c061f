"""What a model says about itself, looked up through wrappers: its Structure, width, depth and ``dl_`` attributes.

A model declares its :class:`~deeplimit.scaling.structure.Structure` with ``dl.declare_structure``; a Hugging Face
``PreTrainedModel`` needs none: its structure is *found* once by :func:`deeplimit.scaling.hf.structure_of` (one
probe forward) and kept on the model. This module sits above both :mod:`.structure` (the record) and :mod:`.hf`
(the probe), so neither needs the other's caller.
"""

from __future__ import annotations

from torch import nn

from deeplimit.scaling import hf
from deeplimit.scaling.names import WRAPPER_PARTS
from deeplimit.scaling.structure import Structure, declare_structure


def declared_attr(model: nn.Module, attr: str) -> object:
    """``model.attr``, looking through wrappers (DDP ``module``, compile ``_orig_mod``) when absent."""
    if hasattr(model, attr):
        return getattr(model, attr)
    for part in WRAPPER_PARTS:
        inner = getattr(model, part, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return declared_attr(inner, attr)
    return None


def get_structure(model: nn.Module) -> Structure | None:
    """The :class:`Structure` declared on ``model`` or on the model it wraps (DDP, compile, FSDP1), if any.

    A Hugging Face ``PreTrainedModel`` with none declared gets :func:`deeplimit.scaling.hf.structure_of`'s
    (one probe forward), stored on it so later plans reuse it.
    """
    s = getattr(model, "dl_structure", None)
    if s is not None:
        return s
    for attr in WRAPPER_PARTS:  # only through wrappers: a submodule's structure uses the submodule's names
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return get_structure(inner)
    if hf.is_hf_model(model):  # a Hugging Face model needs no declaration: found once, kept on the model
        return declare_structure(model, hf.structure_of(model)).dl_structure
    return None


def model_size(model: nn.Module) -> tuple[float | None, int | None]:
    """The width and depth a model declares: its Structure's, else ``model.width`` / ``model.depth``."""
    structure = get_structure(model)
    width = structure.width if structure is not None and structure.width is not None else None
    depth = structure.depth if structure is not None and structure.depth is not None else None
    if width is None:
        width = declared_attr(model, "width")
    if depth is None:
        depth = declared_attr(model, "depth")
    ok = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    return (width if ok(width) else None), (int(depth) if ok(depth) else None)
