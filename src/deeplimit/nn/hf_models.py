"""Tiny Hugging Face ``transformers`` models from a model type, built from a config: no downloads.

What coordinate checks, sweeps, the CLI's ``--hf MODEL_TYPE``, tests, examples and benchmarks build. These are
models like :class:`~deeplimit.nn.MLPResNet`, so they live with the models, below the scaling core: nothing here
knows about rules or plans (how the scaling core reads a Hugging Face model is :mod:`deeplimit.scaling.hf`).
``transformers`` is imported only when a model is built (``pip install deeplimit[hf]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from deeplimit.errors import DeeplimitError

HF_EXTRA = "pip install deeplimit[hf]"


def transformers_module() -> Any:
    """Import ``transformers`` or say how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise DeeplimitError(f"Hugging Face support needs the transformers package: {HF_EXTRA}") from exc
    return transformers


_INTERMEDIATE = ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size")
_TIED_DIMS = ("word_embed_proj_dim",)  # OPT projects embeddings unless this equals hidden_size


def tiny_config(model_type: str, width: int, depth: int, *, heads: int = 4, head_dim: int | None = None,
                kv_heads: int | None = None, vocab_size: int = 256, image_size: int = 28, patch_size: int = 7,
                num_channels: int = 1, num_labels: int = 10, **overrides: Any) -> Any:
    """A small ``transformers`` config of ``model_type`` with the given width (hidden size) and depth (layers).

    Heads stay fixed at ``heads`` (head_dim = width / heads grows) unless ``head_dim`` is given (then heads =
    width / head_dim grows). MLP width is 4×. Dropout is off (coordinate checks compare runs step by step).
    ``overrides`` are set last (any config field).
    """
    tf = transformers_module()
    if width <= 0 or depth <= 0:
        raise DeeplimitError(f"width and depth must be positive, got {width} and {depth}")
    try:
        cfg = tf.AutoConfig.for_model(model_type)
    except ValueError:
        raise DeeplimitError(f"unknown Hugging Face model type {model_type!r}; use a transformers model_type such "
                             "as llama, mistral, qwen3, gpt2, gpt_neox, opt, bert or vit") from None
    if head_dim is not None:
        if width % head_dim:
            raise DeeplimitError(f"width {width} is not a multiple of head_dim {head_dim}")
        heads = width // head_dim
    if width % heads:
        raise DeeplimitError(f"width {width} is not a multiple of {heads} heads; pick a width divisible by heads")
    d_head = width // heads
    values: dict[str, Any] = {"hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": heads,
                              "vocab_size": vocab_size}
    for key in _INTERMEDIATE:
        if key in cfg.to_dict() or hasattr(type(cfg), key):
            values[key] = 4 * width
    for key in _TIED_DIMS:
        if hasattr(cfg, key):
            values[key] = width
    if "head_dim" in cfg.to_dict():
        values["head_dim"] = d_head
    if isinstance(getattr(cfg, "rotary_dim", None), int):  # GPT-J / CodeGen rotate the first rotary_dim dims
        values["rotary_dim"] = d_head
    if hasattr(cfg, "query_pre_attn_scalar"):
        values["query_pre_attn_scalar"] = d_head  # Gemma-2/3: scale 1/sqrt(query_pre_attn_scalar)
    if hasattr(cfg, "num_key_value_heads"):  # grouped-query attention where the family has it
        values["num_key_value_heads"] = kv_heads or max(1, heads // 2)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if hasattr(cfg, key):
            values[key] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}[key]
    for key, value in cfg.to_dict().items():
        if isinstance(value, float) and (key.endswith("dropout") or key.endswith("pdrop")
                                         or key.endswith("dropout_prob") or key == "layerdrop"):
            values[key] = 0.0
    if getattr(cfg, "image_size", None) is not None:
        values.update(image_size=image_size, patch_size=patch_size, num_channels=num_channels)
    values["num_labels"] = num_labels
    values.update(overrides)
    for key, value in values.items():
        setattr(cfg, key, value)
    return cfg


def build(model_type: str, width: int, depth: int, **config_kwargs: Any) -> nn.Module:
    """A freshly initialised model for :func:`tiny_config`: masked LM (encoders such as BERT), else causal LM,
    else image classifier (ViT)."""
    tf = transformers_module()
    cfg = tiny_config(model_type, width, depth, **config_kwargs)
    for auto in (tf.AutoModelForMaskedLM, tf.AutoModelForCausalLM, tf.AutoModelForImageClassification):
        try:
            return auto.from_config(cfg)
        except ValueError:
            continue
    raise DeeplimitError(f"Hugging Face model type {model_type!r} has no causal-LM, masked-LM or image-classifier "
                         "head; build the model yourself and pass a factory (--model pkg.module:factory)")


def factory(model_type: str, **config_kwargs: Any) -> Callable[[int, int], nn.Module]:
    """``(width, depth) -> model`` for :func:`build`: what coordinate checks and sweeps take."""
    tiny_config(model_type, 64, 2, **config_kwargs)  # fail now, not inside the first run, on a bad type

    def make(width: int, depth: int) -> nn.Module:
        return build(model_type, width, depth, **config_kwargs)

    make.__name__ = f"hf_{model_type}"
    return make
