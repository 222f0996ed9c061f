"""Data for a coordinate check of any model, chosen from what the model eats.

A model whose input layer is an embedding table eats token ids: it gets byte windows of a text corpus (ids taken
modulo its vocabulary), never images it would index out of range. A Hugging Face model says what it eats
(``main_input_name``); a model with a convolution eats images ``(N, C, H, W)``; anything else flattened features.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.scaling import hf

Kind = Literal["tokens", "images", "features"]


def coord_data(source: str, *, kind: Kind, n: int = 256, seq_len: int = 32, vocab_size: int = 256, seed: int = 0,
               data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples for a coordinate check from an offline dataset.

    ``kind="tokens"``: byte windows ``(n, seq_len)`` of a text corpus (``shakespeare``, ``stdlib`` or a file)
    with next-byte targets, ids taken mod ``vocab_size``. ``"images"``: ``(n, 1, 28, 28)`` Fashion-MNIST /
    ``(n, 1, 8, 8)`` digits (or an .npz) with labels; ``"features"``: the same images flattened to ``(n, d)``.
    """
    check_positive("n", n, integer=True)
    if kind == "tokens":
        from deeplimit.data import ByteCorpus

        check_positive("seq_len", seq_len, integer=True)
        check_positive("vocab_size", vocab_size, integer=True)
        corpus = ByteCorpus.load(source, data_dir)
        x, y = corpus.get_batch("train", n, seq_len, torch.Generator().manual_seed(seed))
        return x.remainder(vocab_size), y.remainder(vocab_size)
    if kind not in ("images", "features"):
        raise DeeplimitError(f"kind must be 'tokens', 'images' or 'features', got {kind!r}")
    from deeplimit.data import load_image_dataset

    x, y = load_image_dataset(source, split="train", data_dir=data_dir)
    x, y = x[:n], y[:n]
    if kind == "features":
        return x.reshape(len(x), -1), y
    side = int(round(math.sqrt(x[0].numel())))
    if x.ndim == 2 and side * side == x.shape[1]:
        x = x.reshape(len(x), 1, side, side)
    return x, y


def _first_embedding(model: nn.Module) -> nn.Embedding | None:
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


def input_kind(model: nn.Module) -> Kind:
    """What ``model`` eats: ``"tokens"`` (it holds an embedding table, or is a Hugging Face text model),
    ``"images"`` (a Hugging Face vision model, or a model with a 2-D convolution) or ``"features"``."""
    inner = hf.unwrap(model)
    if hf.is_hf_model(inner):
        return "images" if hf.input_kind(inner) == "images" else "tokens"
    if _first_embedding(inner) is not None:
        return "tokens"
    if any(isinstance(m, nn.Conv2d) for m in inner.modules()):
        return "images"
    return "features"


def vocab_size_of(model: nn.Module) -> int:
    """The vocabulary a token model indexes: ``vocab_size`` of the model, its ``config`` or ``cfg``, else the
    size of its first embedding table (the token table comes before the position table by convention), else
    the 256 byte values."""
    inner = hf.unwrap(model)
    for holder in (inner, getattr(inner, "config", None), getattr(inner, "cfg", None)):
        v = getattr(holder, "vocab_size", None)
        if isinstance(v, int) and v > 0:
            return v
    emb = _first_embedding(inner)
    return int(emb.num_embeddings) if emb is not None else 256


def _data_kind(data: str | None) -> Literal["tokens", "images"] | None:
    """What a ``--data`` value is: a text corpus, an image set, or None (not given, or unknown: the loader says)."""
    from deeplimit.data import CORPORA, IMAGE_DATASETS

    if data is None:
        return None
    name = str(data)
    if name in IMAGE_DATASETS or name in ("fashion_mnist", "fmnist") or name.endswith(".npz"):
        return "images"
    if name in CORPORA or Path(name).is_file():
        return "tokens"
    return None


def data_for(model: nn.Module, data: str | None = None, *, n: int = 256, seq_len: int = 32, seed: int = 0,
             data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """:func:`coord_data` in the form ``model`` eats (:func:`input_kind`), and its name: ``(x, y, source)``.

    Token models get byte windows of ``data`` (default ``shakespeare``) with ids below their vocabulary; image
    and feature models get ``data`` (default ``fashion-mnist``) as ``(n, C, H, W)`` images or flattened
    features. A text corpus named for a model that does not eat tokens, or an image set for one that does, is
    an error naming both.
    """
    kind = input_kind(model)
    given = _data_kind(data)
    if given is not None and (given == "tokens") != (kind == "tokens"):
        text = given == "tokens"
        eats = "token ids" if kind == "tokens" else ("images" if kind == "images" else "feature vectors")
        fix = ("a text corpus (shakespeare, stdlib or a .txt file)" if kind == "tokens"
               else "an image set (fashion-mnist, digits or an .npz)")
        raise DeeplimitError(f"{type(hf.unwrap(model)).__name__} eats {eats}, but --data {data!r} is "
                             f"{'text' if text else 'an image set'}; pass {fix}")
    source = data or ("shakespeare" if kind == "tokens" else "fashion-mnist")
    x, y = coord_data(source, kind=kind, n=n, seq_len=seq_len, vocab_size=vocab_size_of(model), seed=seed,
                      data_dir=data_dir)
    return x, y, source
