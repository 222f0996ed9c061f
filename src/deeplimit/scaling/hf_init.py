"""A Hugging Face model's own initialisation, read without drawing a number.

The base-shape init constants of a plan (σ's) default to what the model itself would draw *at the base shape*:
``PreTrainedModel._init_weights`` is run on every module, children first as ``initialize_weights`` does, with
``transformers.initialization``'s functions replaced by recorders and every other in-place write to a parameter
blocked (a :class:`~torch.overrides.TorchFunctionMode`), so no weight changes. While it runs, the config's
``hidden_size`` / ``num_hidden_layers`` read the base width and depth, so formulas such as GPT-2's
``initializer_range / √(2·n_layer)`` give their base-shape value. Nothing is a per-family table: whatever
``_init_weights`` does (``initializer_range``, ``init_std``, residual-projection scaling, truncated normals) is
what is recorded. Tensors it initialises otherwise (xavier, kaiming, orthogonal, constants) are not recorded;
the plan keeps its :class:`~deeplimit.scaling.hparams.HParams` σ for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from deeplimit.errors import warn
from deeplimit.scaling.hf import unwrap
from deeplimit.scaling.names import canonical_name

# transformers.initialization functions that draw from a zero-mean law of known std (recorded), and the others
# that write a parameter in place (recorded as "not a fixed std": the plan keeps its own σ for that tensor).
_FIXED = ("normal_", "trunc_normal_", "uniform_")
_OTHER = ("constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
          "kaiming_normal_", "orthogonal_", "sparse_", "copy_", "lecun_normal_", "default_flax_embed_init_")


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: float) -> float:
    return float(kwargs[name]) if name in kwargs else float(args[i]) if len(args) > i else default


def _trunc_std(std: float, mean: float, a: float, b: float) -> float:
    """Std of N(mean, std²) truncated to [a, b] (absolute bounds, as ``torch.nn.init.trunc_normal_``)."""
    if std <= 0:
        return 0.0
    lo, hi = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    mass = cdf(hi) - cdf(lo)
    if mass <= 0:
        return std
    m1 = (pdf(lo) - pdf(hi)) / mass
    var = 1 + (lo * pdf(lo) - hi * pdf(hi)) / mass - m1 * m1
    return std * math.sqrt(max(var, 0.0))


def _law_std(name: str, args: tuple, kwargs: dict) -> float | None:
    """Std of the zero-mean law ``name(tensor, *args, **kwargs)`` draws from; None if not zero-mean."""
    if name == "normal_":
        mean, std = _arg(args, kwargs, 0, "mean", 0.0), _arg(args, kwargs, 1, "std", 1.0)
        return std if mean == 0.0 else None
    if name == "trunc_normal_":
        mean, std = _arg(args, kwargs, 0, "mean", 0.0), _arg(args, kwargs, 1, "std", 1.0)
        a, b = _arg(args, kwargs, 2, "a", -2.0), _arg(args, kwargs, 3, "b", 2.0)
        return _trunc_std(std, mean, a, b) if mean == 0.0 and a == -b else None
    if name == "uniform_":
        a, b = _arg(args, kwargs, 0, "a", 0.0), _arg(args, kwargs, 1, "b", 1.0)
        return (b - a) / math.sqrt(12.0) if a == -b else None
    return None


def _key(t: torch.Tensor) -> int | None:
    """Identity of a tensor's memory (a parameter, its ``.data`` and full views share it; a sharded ``DTensor``
    is known by its local shard); None where there is none to read (meta tensors, other subclasses)."""
    if t.is_meta:
        return None
    if hasattr(t, "to_local") and hasattr(t, "placements"):  # a DTensor (FSDP2): its own shard's memory
        t = t.to_local()
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return None


class _Recorder(TorchFunctionMode):
    """Records what each parameter would be drawn from, and lets no in-place write reach a parameter."""

    def __init__(self, params: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.params = params  # storage pointer → parameter
        self.laws: dict[int, tuple[str, float | None]] = {}  # storage pointer → (function, std or None)

    def target(self, t: object) -> int | None:
        """The parameter ``t`` is (or a full view of): its storage key; None for buffers and partial views."""
        if not isinstance(t, torch.Tensor):
            return None
        key = _key(t)
        p = self.params.get(key) if key is not None else None
        if p is None:
            return None
        return key if t.numel() == p.numel() else -1  # -1: a slice (a padding row): blocked, not recorded

    def record(self, name: str, tensor: object, args: tuple, kwargs: dict) -> None:
        key = self.target(tensor)
        if key is not None and key >= 0:
            self.laws[key] = (name, _law_std(name, args, kwargs) if name in _FIXED else None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("_") and args and self.target(args[0]) is not None:
            self.record(name, args[0], tuple(args[1:]), kwargs)  # torch.nn.init or tensor.normal_ called directly
            return args[0]
        return func(*args, **kwargs)


@contextmanager
def _recording(recorder: _Recorder) -> Iterator[None]:
    """``transformers.initialization``'s functions record instead of drawing (their ``_is_hf_initialized`` check
    is skipped too: a loaded model's init is read the same way)."""
    from transformers import initialization

    saved = {n: getattr(initialization, n) for n in (*_FIXED, *_OTHER) if hasattr(initialization, n)}

    def recorder_for(name: str):
        def fn(tensor, *args, **kwargs):
            recorder.record(name, tensor, args, {k: v for k, v in kwargs.items() if k != "generator"})
            return tensor
        return fn

    try:
        for n in saved:
            setattr(initialization, n, recorder_for(n))
        with recorder:
            yield
    finally:
        for n, fn in saved.items():
            setattr(initialization, n, fn)


@contextmanager
def _config_at(cfg: Any, width: float | None, depth: int | None) -> Iterator[None]:
    """``cfg.hidden_size`` / ``num_hidden_layers`` read (width, depth) inside; restored afterwards."""
    changed: list[tuple[str, Any]] = []
    try:
        for key, value in (("hidden_size", width), ("num_hidden_layers", depth)):
            old = getattr(cfg, key, None)
            if value is None or not isinstance(old, int) or float(value) != int(value) or int(value) == old:
                continue
            try:
                setattr(cfg, key, int(value))
            except Exception:  # a config that validates or derives this field: its init is read at the target
                continue
            changed.append((key, old))
        yield
    finally:
        for key, old in reversed(changed):
            setattr(cfg, key, old)


def _source(std: float, fn: str, cfg: Any, owner: nn.Module) -> str:
    for key in ("initializer_range", "init_std"):
        value = getattr(cfg, key, None)
        if isinstance(value, float) and math.isclose(std, value, rel_tol=1e-6) and fn == "normal_":
            return f"config.{key} = {value:g}"
    return f"{type(owner).__name__}._init_weights ({fn[:-1]}, std {std:.4g})"


def model_init_stds(model: nn.Module, base_width: float | None = None,
                    base_depth: int | None = None) -> dict[str, tuple[float, str]]:
    """Canonical parameter name (every name of a tied tensor) → (std the model draws it with at the base shape,
    where that came from, e.g. ``"config.initializer_range"``). Weights are left untouched.

    Args:
        model: a ``transformers.PreTrainedModel`` (possibly wrapped), on any device but meta.
        base_width, base_depth: the base shape (n₀, L₀); ``None`` keeps the config's (base = target).
    """
    from transformers import PreTrainedModel

    model = unwrap(model)
    params = {k: p for p in model.parameters() if (k := _key(p)) is not None}
    recorder = _Recorder(params)
    owners: dict[int, nn.Module] = {}

    def walk(module: nn.Module, owner: PreTrainedModel) -> None:
        for child in module.children():  # children first, as PreTrainedModel.initialize_weights (last call wins)
            walk(child, child if isinstance(child, PreTrainedModel) else owner)
        before = dict(recorder.laws)
        owner._init_weights(module)
        for key, law in recorder.laws.items():
            if before.get(key) is not law:
                owners[key] = owner

    try:
        with torch.no_grad(), _config_at(model.config, base_width, base_depth), _recording(recorder):
            walk(model, model)
    except Exception as exc:  # an _init_weights that needs real draws or other state: say so, fall back
        warn(f"could not read {type(model).__name__}'s own init ({type(exc).__name__}: {exc}); the plan uses the "
             "HParams sigmas (sigma_emb, sigma_hidden, ...) for every tensor: pass them to match the model's init")
        return {}
    out: dict[str, tuple[float, str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        key = _key(p)
        fn, std = recorder.laws.get(key, ("", None))
        if std is not None:
            owner = owners.get(key, model)
            out[canonical_name(name)] = (std, _source(std, fn, owner.config, owner))
    return out
