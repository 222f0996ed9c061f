"""Layers that carry the forward multipliers of a parametrization, and the mechanism that carries them anywhere.

Multipliers are plain Python floats on the *module* (never attributes of ``nn.Parameter``), set by
:meth:`deeplimit.scaling.Plan.apply`. They survive ``copy.deepcopy``, are constants to ``torch.compile``
and do not depend on parameter metadata that DDP or FSDP would drop (ecosystem spec §1.1).

Two ways a multiplier reaches the forward pass:

* deeplimit's own layers read it in their ``forward`` (``branch_mult``, ``input_mult``, ``output_mult``);
* any other module (Hugging Face, nanoGPT, yours) gets a forward hook that reads ``dl_branch_mult`` /
  ``dl_input_mult`` (output × m) or ``dl_output_mult`` (input × m, as ``mup``'s ``MuReadout``). The hooks are
  module-level functions that receive the module, so ``deepcopy`` and ``torch.compile`` see the same thing.

Either way the values ride in the state dict under ``<module>.deeplimit.<attr>`` (0-dim float64 tensors),
and loading checks them: a state dict saved from a model parametrized differently is an error naming both
values, and one saved from a parametrized model does not load into an unparametrized one (deeplimit's layers
say so; other modules fail PyTorch's strict key check on the ``deeplimit`` keys). A state dict without these
keys (plain weights, a ``mup`` model, deeplimit < 0.2) loads into a parametrized model and keeps its multipliers.

Roles: a module may declare the role of each parameter it owns in ``dl_roles`` (a dict
``{param_name: role}``), with role one of ``input``, ``hidden``, ``readout``, ``vector``. A module with
an integer ``dl_block_depth`` is a residual block: everything below it is *in-block*, and its forward pass
must multiply its branch by the float ``branch_mult``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError

ROLES = ("input", "hidden", "readout", "vector")
STATE_KEY = "deeplimit."  # state-dict keys <module>.deeplimit.<attr>


def declare_roles(module: nn.Module, **roles: str) -> nn.Module:
    """Declare roles of a plain module's own parameters, e.g. ``declare_roles(lin, weight="readout")``.

    Stored on the module (a dict attribute), so it survives deepcopy and is independent of the Parameters.
    """
    bad = {k: v for k, v in roles.items() if v not in ROLES}
    if bad:
        raise ValueError(f"unknown role(s) {bad}; roles are {ROLES}")
    module.dl_roles = {**getattr(module, "dl_roles", {}), **roles}
    return module


# ------------------------------------------------------------------------------------------------------------
# Forward hooks for modules whose forward cannot read a multiplier


def _scaled(out: object, m: float, module: nn.Module) -> object:
    if m == 1.0:
        return out
    if isinstance(out, torch.Tensor):
        return out * m
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):  # e.g. (attn_output, attn_weights)
        return (out[0] * m, *out[1:])
    raise DeeplimitError(f"{type(module).__name__} returns {type(out).__name__}, which deeplimit's multiplier hook "
                         "cannot scale (a tensor or a tuple starting with one is needed); declare the submodule "
                         "that returns the tensor instead")


def _branch_hook(module: nn.Module, args: tuple, output: object) -> object:
    return _scaled(output, module.dl_branch_mult, module)


def _input_hook(module: nn.Module, args: tuple, output: object) -> object:
    return _scaled(output, module.dl_input_mult, module)


def _readout_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    m = module.dl_output_mult
    if m == 1.0:
        return None
    if not args or not isinstance(args[0], torch.Tensor):
        raise DeeplimitError(f"readout {type(module).__name__} was called without a positional input tensor; "
                             "deeplimit's readout hook multiplies the first positional argument — call it as "
                             "head(x)")
    return (args[0] * m, *args[1:]), kwargs


# attribute read by the hook → (hook kind, hook function)
HOOKED_ATTRS = {"dl_branch_mult": ("forward", _branch_hook), "dl_input_mult": ("forward", _input_hook),
                "dl_output_mult": ("pre", _readout_hook)}
# every attribute that multiplies a module's output (or a readout's input): read by deeplimit's layers, or hooked.
# Anything else a plan sets is a module's own attribute (an attention logit scale).
FORWARD_ATTRS = frozenset({"branch_mult", "input_mult", "output_mult", *HOOKED_ATTRS})


# ------------------------------------------------------------------------------------------------------------
# State dict: multipliers ride along and are checked on load


def _export_multipliers(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for attr in getattr(module, "dl_multiplier_attrs", ()):
        state_dict[prefix + STATE_KEY + attr] = torch.tensor(float(getattr(module, attr)), dtype=torch.float64)


def _check_multipliers(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                       missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    head = prefix + STATE_KEY
    saved = {k[len(head):]: float(state_dict.pop(k)) for k in [k for k in state_dict if k.startswith(head)]}
    exported = getattr(module, "dl_multiplier_attrs", ())
    where = prefix.rstrip(".") or "the root module"
    problems = []
    for attr, value in sorted(saved.items()):
        have = getattr(module, attr, None)
        if have is None:
            problems.append(f"{attr}: saved {value:.6g}, the model has none")
        elif not math.isclose(value, float(have), rel_tol=1e-12, abs_tol=0.0):
            problems.append(f"{attr}: saved {value:.6g}, the model has {float(have):.6g}")
    if not problems:
        return
    if exported:
        fix = ("parametrize the model with the rule, base shape and hyperparameters it was saved with (or use "
               "dl.load_checkpoint, which re-applies the saved plan)")
    else:
        fix = "the model is not parametrized: call dl.parametrize(model, <rule>, ...) as when it was saved, then load"
    raise DeeplimitError(f"state dict does not match the deeplimit multipliers of {where} "
                         f"({'; '.join(problems)}); {fix}")


def watch_multipliers(module: nn.Module) -> None:
    """Register the state-dict hooks that export and check ``module``'s multipliers (once per module)."""
    if getattr(module, "dl_state_hooks", False):
        return
    module.register_state_dict_post_hook(_export_multipliers)
    module.register_load_state_dict_pre_hook(_check_multipliers)
    module.dl_state_hooks = True


def carry_multipliers(module: nn.Module, values: Mapping[str, float]) -> None:
    """Set ``values`` (attribute → float) on ``module`` and make them act and persist; idempotent.

    Attributes in ``HOOKED_ATTRS`` get their forward hook registered once (a second call only updates the
    floats, so applying a plan twice never multiplies twice). All of them are exported to the state dict and
    checked on load. Attributes previously carried but absent from ``values`` fall back to 1 (no multiplier).
    """
    for attr in getattr(module, "dl_multiplier_attrs", ()):
        if attr not in values:
            setattr(module, attr, 1.0)
    hooked = set(getattr(module, "dl_hooked", ()))
    for attr, value in values.items():
        setattr(module, attr, float(value))
        if attr in HOOKED_ATTRS and attr not in hooked:
            kind, fn = HOOKED_ATTRS[attr]
            if kind == "pre":
                module.register_forward_pre_hook(fn, with_kwargs=True)
            else:
                module.register_forward_hook(fn)
            hooked.add(attr)
    module.dl_hooked = tuple(sorted(hooked))
    module.dl_multiplier_attrs = tuple(sorted(set(values) | (hooked & set(HOOKED_ATTRS))))
    watch_multipliers(module)


# ------------------------------------------------------------------------------------------------------------
# deeplimit's own layers


class Input(nn.Linear):
    """Input layer ``U`` (d_in → n): width-independent init, output × ``input_mult``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        self.dl_roles = {"weight": "input", "bias": "vector"}
        self.input_mult = 1.0
        watch_multipliers(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y if self.input_mult == 1.0 else y * self.input_mult


class Embedding(nn.Embedding):
    """Token/position embedding (an input-role table): output × ``input_mult``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, **kw) -> None:
        super().__init__(num_embeddings, embedding_dim, **kw)
        self.dl_roles = {"weight": "input"}
        self.input_mult = 1.0
        watch_multipliers(self)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        y = super().forward(idx)
        return y if self.input_mult == 1.0 else y * self.input_mult


class Readout(nn.Linear):
    """Readout ``V`` (n → d_out). Under μP its output is × ``output_mult · m_N^{-1}`` (spec §2.2, D1)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        self.dl_roles = {"weight": "readout", "bias": "vector"}
        self.output_mult = 1.0
        watch_multipliers(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scale the input, not the output: one (batch × n) multiply either way, and it keeps the bias unscaled
        # like mup's MuReadout.
        return super().forward(x * self.output_mult if self.output_mult != 1.0 else x)


class TiedReadout(nn.Module):
    """Readout that shares the weight of an embedding (tied input/output embeddings), as ``mup``'s ``MuSharedReadout``.

    ``forward(x) = (x · output_mult) @ Eᵀ (+ bias)``. The one tensor ``E`` has two roles; the plan treats it as
    the input embedding (width-independent init and Adam LR, never rescaled: depth-mup spec §2.2) and applies
    the readout's μP factor ``output_mult · m_N^{-1}`` here, in the forward.
    """

    def __init__(self, embedding: nn.Embedding, bias: bool = False) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise DeeplimitError(f"TiedReadout ties to an nn.Embedding, got {type(embedding).__name__}")
        self.weight = embedding.weight  # the same Parameter: one tensor, registered under two names
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings)) if bias else None
        self.dl_roles = {"weight": "readout", "bias": "vector"}
        self.output_mult = 1.0
        watch_multipliers(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.output_mult if self.output_mult != 1.0 else x, self.weight, self.bias)


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
        watch_multipliers(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch_mult * self.branch(x)
