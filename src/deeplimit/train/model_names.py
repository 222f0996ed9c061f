"""How ``TrainConfig.model`` names a model's source, read from the string alone (no torch: the config is checked
with these before anything heavy is imported).

A built-in name (``mlp-resnet``, …), ``hf:TYPE`` (a Hugging Face model type) or ``pkg.module:factory`` /
``path/to/file.py:factory`` (a factory); :mod:`deeplimit.train.models` builds each kind.
"""

from __future__ import annotations

HF_PREFIX = "hf:"


def is_hf(model: str) -> bool:
    """True for ``hf:TYPE``."""
    return isinstance(model, str) and model.startswith(HF_PREFIX)


def is_factory(model: str) -> bool:
    """True for ``pkg.module:factory`` or ``path/to/file.py:factory`` (a colon, not ``hf:``)."""
    return isinstance(model, str) and not is_hf(model) and ":" in model


def hf_type(model: str) -> str:
    """The model type of ``hf:TYPE`` (``hf:llama`` → ``llama``)."""
    return model[len(HF_PREFIX):]
