"""Built-in models by name, so configs and the CLI can say ``--model mlp-resnet``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp-resnet": lambda **kw: MLPResNet(MLPResNetConfig(**kw)),
    "transformer": lambda **kw: TransformerLM(TransformerConfig(**kw)),
    "shaped-transformer": lambda **kw: TransformerLM(TransformerConfig(**{**SHAPED, **kw})),
}
CONFIGS: dict[str, Callable[..., Any]] = {
    "mlp-resnet": lambda **kw: MLPResNetConfig(**kw),
    "transformer": lambda **kw: TransformerConfig(**kw),
    "shaped-transformer": lambda **kw: TransformerConfig(**{**SHAPED, **kw}),
}


def _key(name: str) -> str:
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    if key not in MODELS:
        raise DeeplimitError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return key


def model_config(name: str, **kwargs) -> MLPResNetConfig | TransformerConfig:
    """The validated config of a built-in model, without building it (``n_params()`` counts its parameters)."""
    key = _key(name)
    try:
        return CONFIGS[key](**kwargs)
    except TypeError as exc:
        raise DeeplimitError(f"bad option for model {name!r}: {exc}") from None


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a built-in model from keyword arguments (its config's fields)."""
    key = _key(name)
    try:
        return MODELS[key](**kwargs)
    except TypeError as exc:
        raise DeeplimitError(f"bad option for model {name!r}: {exc}") from None
