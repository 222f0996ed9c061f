"""Hugging Face ``transformers`` models: their :class:`~deeplimit.scaling.structure.Structure`, found, not declared.

``structure_of(model)`` reads width, depth and heads from ``model.config`` and finds the rest by *watching one
forward pass* on a tiny input (a probe, no gradients, eval mode):

* **blocks** are the entries of the ``nn.ModuleList`` that holds ``config.num_hidden_layers`` layers;
* **branches** are the modules whose output is *added to the residual stream* inside a block. The probe follows
  the block's input through every addition (a :class:`torch.overrides.TorchFunctionMode` sees each ``+``) and
  names the module that produced the other operand: Llama's ``o_proj``/``down_proj``, GPT-2's ``c_proj``
  (``Conv1D``), BERT's ``output.dense`` (whose add sits inside ``BertOutput`` before the post-LN), ViT's
  ``o_proj``/``fc2``, Gemma-2/OLMo-2's post-branch norms, and both branches of parallel blocks (GPT-NeoX,
  Falcon, Phi, Cohere). Dropout and reshapes are looked through;
* **inputs** are the modules whose output *is* the first block's input (summed, as GPT-2's ``wte + wpe``);
* **readouts**: ``model.get_output_embeddings()`` (tied or not), else the module that produced ``logits``;
* **attention**: each block's module with a float logit scale attribute (``scaling`` in most families,
  ``inv_norm_factor`` in Bloom), kept only if changing it changes the block's output — Falcon without ALiBi
  calls SDPA with its default scale, so it gets ``scale_attr=None``.

Nothing here is a per-model table: one probe covers every family whose blocks are ``x + f(x)`` sums of module
outputs (mixture-of-experts layers included: their stacked experts and routers are read by
:mod:`deeplimit.scaling.moe`). A family that is not (encoder-decoder, a residual add of a non-module tensor) gets
a :class:`~deeplimit.errors.DeeplimitError` naming it and the ``declare_structure`` call that describes it by hand.
``transformers`` is imported only when a model is inspected (``pip install deeplimit[hf]``). Tiny models to try it
on are built by :mod:`deeplimit.nn.hf_models` (``build``, ``factory``, ``tiny_config``, also importable from here).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from deeplimit.errors import DeeplimitError
from deeplimit.nn.hf_models import HF_EXTRA, build, factory, tiny_config, transformers_module
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.structure import AttentionSpec, Structure

# The model builders moved to deeplimit.nn.hf_models (they construct models; nothing in them scales one); their
# names stay importable from here for the tests, examples, benchmarks and the CLI's --hf that use this path.
__all__ = ["HF_EXTRA", "SCALE_ATTRS", "build", "factory", "input_kind", "is_hf_model", "structure_of", "tiny_config",
           "transformers_module", "unwrap", "width_of"]

# Float attributes an HF attention module multiplies its logits q·k by (checked by the probe before use).
SCALE_ATTRS = ("scaling", "inv_norm_factor", "softmax_scale", "scale")
BLOCK_DEPTH = 2  # weight matrices in series in one transformer branch (W_V·W_O, W_in·W_out)
_ADDS = {"add", "add_", "__add__", "__radd__", "__iadd__"}
# Ops whose output carries the same residual stream / branch output as their first argument.
_THROUGH = {"dropout", "contiguous", "clone", "to", "float", "type", "type_as", "reshape", "view", "flatten",
            "view_as", "reshape_as", "squeeze", "unsqueeze"}
_SCALE_OPS = {"mul", "__mul__", "__rmul__", "div", "__truediv__", "true_divide"}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    seen = 0
    while seen < 8:
        inner = getattr(model, "_orig_mod", None) or (getattr(model, "module", None)
                                                      if type(model).__name__ == "DistributedDataParallel" else None)
        if not isinstance(inner, nn.Module):
            return model
        model, seen = inner, seen + 1
    return model


def is_hf_model(model: nn.Module) -> bool:
    """True for a ``transformers.PreTrainedModel`` (possibly wrapped); never imports ``transformers``."""
    tf = sys.modules.get("transformers")
    if tf is None:  # a transformers model cannot exist before the package is imported
        return False
    try:
        base = tf.PreTrainedModel
    except Exception:  # a broken install: not a model we can inspect
        return False
    return isinstance(unwrap(model), base)


# --------------------------------------------------------------------------------------------------------
# The probe: one forward pass that records which module outputs are added to each block's residual stream
# --------------------------------------------------------------------------------------------------------
@dataclass
class _BlockTrace:
    name: str
    stream: set[int]  # ids of tensors that are this block's residual stream
    sums: set[int] = field(default_factory=set)  # ids that are results of residual additions
    branches: list[int] = field(default_factory=list)  # ids of the tensors added to the stream


class _Probe(TorchFunctionMode):
    """Follows tensors by identity through one forward; every tensor seen is kept alive so ids stay unique."""

    def __init__(self) -> None:
        super().__init__()
        self.keep: list[Any] = []
        self.parts: dict[int, list[int]] = {}  # id → ids it was computed from (a sum, a view, a dropout, ×c)
        self.extra: dict[int, list[int]] = {}  # id → ids added to it in place (Falcon: mlp_out += attn_out)
        self.producers: dict[int, list[str]] = {}  # id → modules (innermost first) that returned this tensor
        self.blocks: dict[str, _BlockTrace] = {}
        self.current: _BlockTrace | None = None
        self.block_inputs: dict[str, int] = {}

    def leaves(self, t: int, seen: tuple[int, ...] = ()) -> list[int]:
        """The module outputs ``t`` is a sum of (looking through views, dropout and scalar factors)."""
        if t in seen:
            return [t]
        if t in self.producers or t not in self.parts:
            out = [t]
        else:
            out = [x for c in self.parts[t] for x in self.leaves(c, (*seen, t))]
        for e in self.extra.get(t, []):
            out += self.leaves(e, (*seen, t))
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        self.keep.append((args, out))
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
            return out
        blk = self.current
        first = args[0]
        if name in _ADDS and len(args) >= 2 and isinstance(args[1], torch.Tensor):
            a, b = id(first), id(args[1])
            if blk is not None and (a in blk.stream) != (b in blk.stream):
                # x + f(x): the operand that is not the residual stream is a branch output.
                blk.branches.append(b if a in blk.stream else a)
                blk.stream.add(id(out))
                blk.sums.add(id(out))
            elif blk is not None and a in blk.stream:
                blk.stream.add(id(out))
            elif out is first:
                self.extra.setdefault(a, []).append(b)
            else:
                self.parts[id(out)] = [a, b]
            return out
        scalar_scale = name in _SCALE_OPS and len(args) >= 2 and (
            isinstance(args[1], (int, float)) or (isinstance(args[1], torch.Tensor) and args[1].numel() == 1))
        if (name in _THROUGH or scalar_scale) and out is not first:
            if blk is not None and id(first) in blk.stream:
                blk.stream.add(id(out))
            self.parts[id(out)] = [id(first)]
        return out


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], torch.Tensor):
        return obj[0]
    for key in ("last_hidden_state", "logits"):
        value = getattr(obj, key, None)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _dummy_inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    """A tiny input for the model's ``main_input_name`` (8 distinct tokens, or one random image)."""
    cfg = model.config
    p = next(model.parameters())
    key = getattr(model, "main_input_name", "input_ids")
    if key == "input_ids":
        vocab = int(getattr(cfg, "vocab_size", 0) or 0)
        if vocab < 2:
            raise _unsupported(model, "its config has no vocab_size")
        return {key: (torch.arange(8, device=p.device) * 7 + 3).remainder(vocab).unsqueeze(0)}
    if key == "pixel_values":
        size = getattr(cfg, "image_size", None)
        h, w = (size, size) if isinstance(size, int) else tuple(size or (0, 0))
        if not h:
            raise _unsupported(model, "its config has no image_size")
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, int(getattr(cfg, "num_channels", 3)), h, w, generator=g)
        return {key: x.to(device=p.device, dtype=p.dtype)}
    raise _unsupported(model, f"its main input is {key!r} (only token ids and images are probed)")


def _find_layers(model: nn.Module, depth: int) -> tuple[str, nn.ModuleList]:
    """The ModuleList holding the ``depth`` transformer layers (the outermost one if several match)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == depth
             and depth > 0 and len({type(b) for b in m}) == 1 and any(True for _ in m[0].parameters())]
    if not found:
        raise _unsupported(model, f"no nn.ModuleList of config.num_hidden_layers = {depth} layers was found")
    return min(found, key=lambda nm: nm[0].count("."))


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) for the probe; every module's own flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _probe(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> tuple[_Probe, Any]:
    names = {m: n for n, m in model.named_modules()}
    probe = _Probe()
    block_of = {m: n for n, m in layers}

    def on_output(module, _inp, out):
        t = _first_tensor(out)
        if t is not None and not isinstance(module, nn.Dropout):
            probe.producers.setdefault(id(t), []).append(names[module])
            probe.keep.append(t)
        if module in block_of:
            probe.current = None
        elif _is_norm(module) and probe.current is not None and _inp and isinstance(_inp[0], torch.Tensor):
            # Post-LN (BERT): LayerNorm(x + branch) is the next residual stream.
            if id(_inp[0]) in probe.current.sums and t is not None:
                probe.current.stream.add(id(t))

    def on_block_input(module, args, kwargs):
        h = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(h, torch.Tensor):
            return
        name = block_of[module]
        probe.keep.append(h)
        probe.block_inputs[name] = id(h)
        probe.current = probe.blocks[name] = _BlockTrace(name, {id(h)})

    handles = [m.register_forward_hook(on_output) for m in model.modules()]
    handles += [m.register_forward_pre_hook(on_block_input, with_kwargs=True) for _, m in layers]
    try:
        with torch.no_grad(), _eval(model), probe:
            out = model(**_dummy_inputs(model))
    except DeeplimitError:
        raise
    except Exception as exc:
        raise _unsupported(model, f"its forward pass on a tiny input failed ({type(exc).__name__}: {exc})") from exc
    finally:
        for h in handles:
            h.remove()
    return probe, out


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower()


def _pick(candidates: list[str], modules: dict[str, nn.Module], inside: str | None, outermost: bool) -> str | None:
    ok = [c for c in candidates if not isinstance(modules[c], nn.Dropout)
          and (inside is None or c.startswith(inside + "."))]
    if not ok:
        return None
    return min(ok, key=lambda n: n.count(".")) if outermost else ok[0]


# --------------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------------
def _attention_modules(block: nn.Module, prefix: str) -> dict[str, tuple[nn.Module, str | None]]:
    """Attention modules of one block: name → (module, candidate scale attribute or None)."""
    out: dict[str, tuple[nn.Module, str | None]] = {}
    for name, m in block.named_modules():
        if "attention" not in type(m).__name__.lower():
            continue
        attr = next((a for a in SCALE_ATTRS if isinstance(getattr(m, a, None), float)), None)
        if attr is not None or not any("attention" in type(c).__name__.lower() for c in m.children()):
            full = f"{prefix}.{name}" if name else prefix
            if not any(full.startswith(o + ".") for o in out):
                out[full] = (m, attr)
    return out


def _scale_is_used(model: nn.Module, block: nn.Module, attn: nn.Module, attr: str) -> bool:
    """Change ``attn.<attr>`` and see whether the block's output changes (the attribute is read in forward)."""
    outputs: list[torch.Tensor] = []

    class _Stop(Exception):
        pass

    def grab(_m, _i, out):
        outputs.append(_first_tensor(out).clone())
        raise _Stop

    h = block.register_forward_hook(grab)
    orig = getattr(attn, attr)
    try:
        with torch.no_grad(), _eval(model):
            for value in (orig, orig * 4.0 + 1.0):
                setattr(attn, attr, float(value))
                try:
                    model(**_dummy_inputs(model))
                except _Stop:
                    pass
    finally:
        setattr(attn, attr, orig)
        h.remove()
    return len(outputs) == 2 and not torch.equal(outputs[0], outputs[1])


def _heads(cfg: Any, module: nn.Module, width: int) -> tuple[int, int, int]:
    n_heads = next((int(v) for v in (getattr(module, a, None) for a in ("num_heads", "num_attention_heads"))
                    if isinstance(v, int)), int(cfg.num_attention_heads))
    head_dim = next((int(v) for v in (getattr(module, a, None) for a in ("head_dim", "head_size",
                                                                            "attention_head_size"))
                     if isinstance(v, int)), None)
    if head_dim is None:
        head_dim = int(getattr(cfg, "head_dim", None) or width // n_heads)
    n_kv = next((int(v) for v in (getattr(module, a, None) for a in ("num_key_value_heads", "num_kv_heads"))
                 if isinstance(v, int)), None)
    if n_kv is None and isinstance(getattr(module, "num_key_value_groups", None), int):
        n_kv = n_heads // module.num_key_value_groups
    if n_kv is None:
        n_kv = int(getattr(cfg, "num_key_value_heads", None) or n_heads)
    return n_heads, n_kv, head_dim


# --------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------
def _unsupported(model: nn.Module, reason: str) -> DeeplimitError:
    cfg = getattr(model, "config", None)
    family = getattr(cfg, "model_type", None) or "?"
    return DeeplimitError(
        f"Hugging Face family {family!r} ({type(model).__name__}) is not supported automatically: {reason}. "
        "Describe it by hand: deeplimit.scaling.declare_structure(model, Structure(width=..., depth=..., "
        "blocks={'model.layers.0': 2, ...}, branches={'model.layers.0.self_attn.o_proj': 'model.layers.0', ...}, "
        "inputs=('model.embed_tokens',), readouts=('lm_head',), attention={'model.layers.0.self_attn': "
        "AttentionSpec(n_heads, n_kv_heads, head_dim, 'scaling')})) before parametrize (see docs/hf.md)")


def structure_of(model: nn.Module, *, head_growth: Literal["head_dim", "heads"] = "head_dim") -> Structure:
    """The :class:`Structure` of a Hugging Face ``PreTrainedModel`` built from a config (no declarations).

    Args:
        model: e.g. ``AutoModelForCausalLM.from_config(cfg)``, ``AutoModel.from_config(cfg)``, a ViT or BERT
            (DDP / ``torch.compile`` wrappers are looked through). Runs one forward pass on 8 tokens (or one
            image) without gradients, plus two that stop after the first block to check the logit scale.
        head_growth: which attention dimension grows when ``hidden_size`` grows across your models:
            ``"head_dim"`` (fixed ``num_attention_heads``, the HF default) or ``"heads"`` (fixed head size).

    Returns:
        width = ``config.hidden_size``, depth = ``config.num_hidden_layers`` (one block per layer, block depth 2),
        the branch, input and readout modules and one :class:`AttentionSpec` per attention module. Names are
        canonical (wrapper prefixes dropped), as ``model.named_modules()`` of the unwrapped model.

    Raises:
        DeeplimitError: not a transformers model, or a family the probe cannot describe (the message names the
            family and the ``declare_structure`` call to write instead).
    """
    tf = transformers_module()
    model = unwrap(model)
    if not isinstance(model, tf.PreTrainedModel):
        raise DeeplimitError(f"structure_of needs a transformers PreTrainedModel, got {type(model).__name__}; "
                             "for other models declare the structure with deeplimit.scaling.declare_structure")
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False):
        raise _unsupported(model, "encoder-decoder models have two residual stacks")
    width = getattr(cfg, "hidden_size", None)
    depth = getattr(cfg, "num_hidden_layers", None)
    if not isinstance(width, int) or not isinstance(depth, int):
        raise _unsupported(model, "its config has no integer hidden_size / num_hidden_layers")
    if any(p.is_meta for p in model.parameters()):
        raise DeeplimitError("structure_of runs one forward pass and cannot on meta tensors; build the model on "
                             "the CPU (or declare its Structure by hand) before deeplimit.parametrize")
    modules = dict(model.named_modules())
    list_name, layer_list = _find_layers(model, depth)
    layers = [(f"{list_name}.{i}", m) for i, m in enumerate(layer_list)]
    probe, out = _probe(model, layers)

    branches: dict[str, str] = {}
    for name, _ in layers:
        trace = probe.blocks.get(name)
        if trace is None:
            raise _unsupported(model, f"block {name} was not called with the hidden states as its first input")
        found = []
        for branch in trace.branches:
            for t in probe.leaves(branch):
                m = _pick(probe.producers.get(t, []), modules, name, outermost=False)
                if m is None:
                    raise _unsupported(model, f"block {name} adds a tensor to its residual stream that no module "
                                              "inside the block returns")
                found.append(m)
        if not found:
            raise _unsupported(model, f"no residual addition x + f(x) was seen in block {name}")
        for m in found:
            branches[m] = name

    first = layers[0][0]
    x0 = probe.block_inputs[first]
    inputs = []
    for t in probe.leaves(x0):
        m = _pick(probe.producers.get(t, []), modules, None, outermost=True)
        if m is None or m == first or m.startswith(list_name):
            raise _unsupported(model, "the first block's input is not the output of an embedding module")
        inputs.append(m)

    readout = None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, nn.Module):
        readout = next((n for n, m in modules.items() if m is head), None)
    logits = getattr(out, "logits", None)
    if readout is None and isinstance(logits, torch.Tensor):
        readout = _pick(probe.producers.get(id(logits), []), modules, None, outermost=False)
    readouts = (readout,) if readout else ()

    attention: dict[str, AttentionSpec] = {}
    for name, block in layers:
        for aname, (m, attr) in _attention_modules(block, name).items():
            if attr is not None and name == first and not _scale_is_used(model, block, m, attr):
                attr = None
            if attr is not None and name != first:
                first_attr = attention.get(aname.replace(name, first, 1))
                attr = first_attr.scale_attr if first_attr is not None else attr
            attention[aname] = AttentionSpec(*_heads(cfg, m, width), scale_attr=attr)

    roles = _roles(model, [n for n, _ in layers], inputs, readouts)
    input_scales = {canonical_name(n): p for n in inputs if (p := _width_power(model, modules[n], width))}
    canon = canonical_name
    # GPT-2's Conv1D stores weight as (fan_in, fan_out), the transpose of nn.Linear.
    transposed = tuple(canon(n) for n, m in modules.items() if isinstance(m, tf.pytorch_utils.Conv1D))
    return Structure(
        width=width, depth=depth, blocks={canon(n): BLOCK_DEPTH for n, _ in layers},
        branches={canon(b): canon(k) for b, k in branches.items()},
        inputs=tuple(canon(n) for n in inputs), readouts=tuple(canon(n) for n in readouts),
        attention={canon(n): s for n, s in attention.items()}, roles=roles, family="transformer",
        head_growth=head_growth, source=f"hf:{cfg.model_type}", transposed=transposed, input_scales=input_scales)


def _width_power(model: nn.Module, module: nn.Module, width: int) -> float:
    """p if the embedding ``module`` returns width^p × its table rows (Gemma's √hidden_size normalizer inside
    its ``ScaledWordEmbedding``; p ∈ {1/2, 1}), else 0: a width-dependent factor μP must divide out."""
    if not isinstance(module, nn.Embedding) or width < 2:
        return 0.0
    ids = _dummy_inputs(model)["input_ids"].remainder(module.num_embeddings)
    with torch.no_grad():
        rows = F.embedding(ids, module.weight)
        try:
            out = module(ids)
        except Exception:  # not a token table (OPT's learned positions take a mask): no factor to find
            return 0.0
    if not isinstance(out, torch.Tensor) or out.shape != rows.shape:
        return 0.0
    scale = (out.double().norm() / rows.double().norm()).item() if rows.abs().sum() > 0 else 1.0
    return next((p for p in (0.5, 1.0) if math.isclose(scale, width ** p, rel_tol=1e-2)), 0.0)


def _roles(model: nn.Module, blocks: list[str], inputs: list[str], readouts: tuple[str, ...]) -> dict[str, str]:
    """Roles the scaling core cannot tell from types and the Structure: matrices outside the blocks that are not
    embedding tables, norms, or the parameters of an input/readout module itself. Under an input module (a ViT's
    patch projection) they are inputs; elsewhere (BERT's pooler and MLM transform) hidden matrices."""
    roles: dict[str, str] = {}
    seen: set[int] = set()
    block_set, input_set = frozenset(blocks), frozenset(inputs)

    def under(name: str, prefixes: frozenset[str]) -> bool:  # walks name's own ancestors: linear in depth
        while name:
            if name in prefixes:
                return True
            name = name.rpartition(".")[0]
        return False

    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # tied: the first name owns the parameter (named_parameters order)
            seen.add(id(p))
            name = canonical_name(f"{mname}.{pname}" if mname else pname)
            if under(mname, block_set):
                continue  # stacked experts and routers: scaling/moe.py; other 3-D tensors are refused there
            if p.ndim < 2 or isinstance(module, nn.Embedding) or _is_norm(module) or mname in (*inputs, *readouts):
                continue
            roles[name] = "input" if under(mname, input_set) else "hidden"
    return roles


def input_kind(model: nn.Module) -> Literal["tokens", "images"]:
    """What the model eats: ``"tokens"`` (int ids) or ``"images"`` (``pixel_values``)."""
    return "images" if getattr(unwrap(model), "main_input_name", "input_ids") == "pixel_values" else "tokens"


def width_of(model: nn.Module) -> int:
    """``config.hidden_size`` (what μP calls the width n)."""
    return int(unwrap(model).config.hidden_size)

