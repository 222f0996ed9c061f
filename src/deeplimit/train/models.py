"""Where a run's model comes from: a built-in model, a Hugging Face model type, or any factory.

``TrainConfig.model`` is one of

* a built-in name (``mlp-resnet``, ``transformer``, ``shaped-transformer``), built from ``model_kwargs``;
* ``hf:TYPE`` — a freshly initialised ``transformers`` causal LM of that model type (``hf:llama``, ``hf:gpt2``,
  …) from a small config (:func:`deeplimit.scaling.hf.tiny_config`): hidden size = width, layers = depth, the
  byte vocabulary of the text data, dropout off; ``model_kwargs`` set config fields (``intermediate_size``,
  ``num_key_value_heads``, …; ``n_heads`` is ``num_attention_heads``);
* ``pkg.module:factory`` or ``path/to/file.py:factory`` — ``factory(width, depth, **model_kwargs)``, which also
  gets the data's sizes (``d_in``, ``d_out``, ``vocab_size``, ``max_seq_len``) where its signature takes them.

Factories are imported by :func:`load_factory` (the loader ``deeplimit coord-check --model`` uses too). Trust
model: the user names the code to run, so importing it is intended.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplimit.diagnostics.coordinates import call_factory
from deeplimit.errors import DeeplimitError
from deeplimit.train.model_names import hf_type, is_factory, is_hf

# Data sizes a factory may take as keyword arguments (the built-in models take them all).
SHAPE_KEYS = ("d_in", "d_out", "vocab_size", "max_seq_len")
# Keyword arguments of tiny_config that are not config fields.
_HF_BUILDER_KEYS = ("heads", "head_dim", "kv_heads")


# ------------------------------------------------------------------------------------------------------
# Checking a model source before any data is read


def check_hf(model_type: str, width: int, depth: int, kwargs: dict[str, Any]) -> None:
    """Refuse an unknown model type, a model type without a causal-LM head, or an unknown config field, in one
    line each (``transformers`` must be installed: ``pip install deeplimit[hf]``)."""
    from deeplimit.scaling.hf import tiny_config, transformers_module

    tf = transformers_module()
    fields = _hf_kwargs(kwargs)
    cfg = tiny_config(model_type, width, depth, **{k: fields.pop(k) for k in _HF_BUILDER_KEYS if k in fields})
    known = set(cfg.to_dict()) | {k for k in dir(type(cfg)) if not k.startswith("_")}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise DeeplimitError(f"unknown {model_type} config field(s) {unknown}; set fields the {type(cfg).__name__} "
                             "has (e.g. intermediate_size, num_key_value_heads) or n_heads")
    if type(cfg) not in tf.MODEL_FOR_CAUSAL_LM_MAPPING:
        raise DeeplimitError(f"Hugging Face model type {model_type!r} has no causal-LM head; deeplimit train trains "
                             "causal language models on text (llama, mistral, qwen2, gpt2, gpt_neox, …) — for "
                             "another model write a factory and pass --model pkg.module:factory")


def check_factory(spec: str, kwargs: dict[str, Any]) -> None:
    """Import the factory and refuse keyword arguments its signature does not take."""
    factory = load_factory(spec)
    params = _parameters(factory)
    if params is None:  # takes **kwargs (or its signature cannot be read): the call will tell
        return
    unknown = sorted(set(kwargs) - (params - set(SHAPE_KEYS)))
    if unknown:
        accepted = sorted(params - {"width", "depth", *SHAPE_KEYS})
        raise DeeplimitError(f"the model factory {spec} takes no option(s) {unknown} (the data's sizes "
                             f"{', '.join(SHAPE_KEYS)} come from the data); it accepts "
                             f"{accepted or 'no options besides width and depth'}")


def _parameters(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword names a callable takes; None if it takes ``**kwargs`` or its signature cannot be read."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items() if p.kind is not inspect.Parameter.POSITIONAL_ONLY}


def _hf_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_kwargs`` of an HF model as :func:`tiny_config` takes them (``n_heads`` → ``heads``)."""
    out = dict(kwargs)
    if "n_heads" in out:
        out["heads"] = out.pop("n_heads")
    return out


# ------------------------------------------------------------------------------------------------------
# Building


def make_model(model: str, width: int, depth: int, shapes: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    """The freshly built model of any source (its init is replaced by the plan's). ``shapes``: the data's sizes."""
    if is_hf(model):
        return _make_hf(hf_type(model), width, depth, shapes, kwargs)
    if is_factory(model):
        return _make_from_factory(model, width, depth, shapes, kwargs)
    from deeplimit.nn.registry import build_model

    return build_model(model, width=width, depth=depth, **shapes, **kwargs)


def _make_hf(model_type: str, width: int, depth: int, shapes: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    from deeplimit.scaling.hf import tiny_config, transformers_module

    tf = transformers_module()
    fields = {"vocab_size": shapes.get("vocab_size", 256), "use_cache": False, **_hf_kwargs(kwargs)}
    cfg = tiny_config(model_type, width, depth, **fields)
    if type(cfg) in tf.MODEL_FOR_MASKED_LM_MAPPING and not cfg.is_decoder:
        cfg.is_decoder = True  # an encoder's LM head (BERT, RoBERTa, …) attends causally only as a decoder
    return tf.AutoModelForCausalLM.from_config(cfg)


@torch.no_grad()
def check_causal(model: nn.Module, name: str, vocab_size: int, seq_len: int) -> None:
    """Refuse a token model whose logits at a position depend on later tokens: trained on next-token targets it
    would read the answer (a bidirectional encoder). Two inputs that differ only in their last token must give
    the same logits everywhere before it. Dropout is off (eval mode) during the check."""
    from deeplimit.diagnostics.coordinates import logits_of

    n = max(2, min(seq_len, 8))
    a = torch.arange(n).remainder(vocab_size).unsqueeze(0)
    b = a.clone()
    b[0, -1] = (a[0, -1] + 1) % vocab_size
    was_training = model.training
    model.eval()
    try:
        la, lb = logits_of(model(a)), logits_of(model(b))
    except Exception as exc:  # noqa: BLE001 - any failure on a token batch is reported in one line
        raise DeeplimitError(f"model {name} failed on a batch of token ids (1, {n}) ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); a text run feeds token ids "
                             "(B, T) and reads logits (B, T, V)") from None
    finally:
        model.train(was_training)
    if la.shape[:2] != (1, n):
        raise DeeplimitError(f"model {name} returned logits of shape {tuple(la.shape)} for token ids (1, {n}); a "
                             "text run needs one prediction per token, (B, T, V)")
    if not torch.equal(la[:, :-1], lb[:, :-1]):
        raise DeeplimitError(f"model {name} is not causal: its outputs before the last token change with the last "
                             "token, so trained on next-token targets it would read the answer; use a causal "
                             "(decoder) model")


def _make_from_factory(spec: str, width: int, depth: int, shapes: dict[str, Any],
                       kwargs: dict[str, Any]) -> nn.Module:
    factory = load_factory(spec)
    params = _parameters(factory)
    sizes = {k: v for k, v in shapes.items() if params is None or k in params}
    return call_factory(factory, width, depth, {**sizes, **kwargs}, name=spec)


def count_on_meta(model: str, width: int, depth: int, shapes: dict[str, Any],
                  kwargs: dict[str, Any]) -> tuple[int, int] | None:
    """``(parameters, modules)`` of the model built on the meta device (no memory), or None if it cannot be
    built there (the real build then reports its own error)."""
    try:
        with torch.device("meta"):
            m = make_model(model, width, depth, shapes, kwargs)
    except Exception:  # noqa: BLE001 - the real build reports the factory's own error in one line
        return None
    return sum(p.numel() for p in {id(p): p for p in m.parameters()}.values()), sum(1 for _ in m.modules())


def source_digest(spec: str) -> str | None:
    """SHA-256 of the file a factory is defined in (an edited factory is another run), None if there is none."""
    from deeplimit.data import file_digest

    module_name = spec.rpartition(":")[0]
    if module_name.endswith(".py"):
        return file_digest(module_name)
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    return file_digest(path) if path else None


# ------------------------------------------------------------------------------------------------------
# Importing a factory (moved here from the CLI so the trainer, below the CLI, can import one too)


def _import_from_folder(module_name: str, folder: Path):
    """Import ``module_name`` with ``folder`` first on the import path *for this import only*: the module the
    user named, and the modules it imports from its own folder, load as under ``python -m``; afterwards the
    folder is off the path again, so no later import can pick up a file planted there."""
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _load_file(path: Path):
    """Execute the Python file ``path`` as a module (its folder on the import path while it runs)."""
    name = f"_deeplimit_model_{path.stem}"  # never a name that could shadow an installed module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DeeplimitError(f"cannot load {path} as a Python module; name a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    entry = str(path.resolve().parent)
    sys.path.insert(0, entry)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
    return module


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """:func:`_load_factory`, imported once per process while the file it names stays the same (a trainer
    checks, fingerprints and builds a run's model from the same spec)."""
    module_name = spec.rpartition(":")[0]
    stamp = None
    if module_name.endswith(".py"):
        with contextlib.suppress(OSError):
            stamp = Path(module_name).resolve().stat().st_mtime_ns
    return _load_factory_once(spec, stamp)


@functools.lru_cache(maxsize=32)
def _load_factory_once(spec: str, stamp: int | None) -> Callable[..., nn.Module]:
    return _load_factory(spec)


def _load_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``pkg.module:factory`` or ``path/to/file.py:factory``: a callable ``(width, depth) -> nn.Module``.

    Trust model: the user names the code to run, so importing it is intended. ``path/to/file.py`` runs that
    file; ``module:factory`` imports an installed module or, only if none is installed under that name, the
    module of that name in the current folder (``./module.py`` or ``./module/``). Either way the named
    module's folder is on the import path only while it is imported, so its own helpers import as they would
    under ``python -m``, and nothing else in deeplimit ever imports from the current folder.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise DeeplimitError(f"--model {spec!r} is neither a built-in model nor pkg.module:factory; write e.g. "
                             "--model mypkg.models:make or --model path/to/file.py:make (a callable (width, "
                             "depth) -> nn.Module)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise DeeplimitError(f"--model {spec!r}: file {path} does not exist")
            module = _load_file(path)
        else:
            module = _import_module(module_name)
    except DeeplimitError:
        raise
    except ImportError as exc:
        raise DeeplimitError(f"--model {spec!r}: cannot import {module_name!r} ({exc}); install it, run from "
                             "its folder, or name its file (--model path/to/file.py:factory)") from None
    except Exception as exc:
        raise DeeplimitError(f"--model {spec!r}: importing {module_name!r} raised {type(exc).__name__}: "
                             f"{exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise DeeplimitError(f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise DeeplimitError(f"--model {spec!r}: {attr!r} is a {type(factory).__name__}, not a callable "
                             "(width, depth) -> nn.Module")
    return factory


def _import_module(module_name: str):
    """An installed module, else (only when its top-level name is nowhere on the path) the current folder's."""
    top = module_name.split(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = Path.cwd()
        local = (here / f"{top}.py").is_file() or (here / top / "__init__.py").is_file()
        if exc.name != top or not local:  # a missing dependency of an installed module: say that, unchanged
            raise
    return _import_from_folder(module_name, here)


