"""Data for a run: datasets read once per process, the batch of step t as a pure function of (seed, t), the loss,
and the memory guard that refuses a model or batch too large for this machine before anything is allocated.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from deeplimit.errors import DeeplimitError
from deeplimit.nn._validate import available_memory, check_fits, size_words
from deeplimit.nn.registry import model_config
from deeplimit.train.config import TrainConfig
from deeplimit.train.models import count_on_meta

# Data: cached per process, so a sweep worker reads each dataset once.


def cached_image_data(name: str, data_dir: str | None):
    """Train and test splits of an image set, ``(x_train, y_train, x_test, y_test)`` flattened, read once per
    process *per content*: other files under the same name (another ``$DEEPLIMIT_FASHION_MNIST_DIR``, an
    edited .npz) are read again."""
    from deeplimit.data import content_digest

    return _cached_image_data(name, data_dir, content_digest(name, data_dir))


@functools.lru_cache(maxsize=4)
def _cached_image_data(name: str, data_dir: str | None, digest: str):
    from deeplimit.data import load_image_dataset

    xtr, ytr = load_image_dataset(name, "train", data_dir=data_dir)
    try:
        xte, yte = load_image_dataset(name, "test", data_dir=data_dir)
    except DeeplimitError:
        xte, yte = xtr[:0], ytr[:0]
    return xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte


def cached_text_data(name: str, data_dir: str | None):
    """A :class:`~deeplimit.data.ByteCorpus`, read once per process per content (as :func:`cached_image_data`)."""
    from deeplimit.data import content_digest

    return _cached_text_data(name, data_dir, content_digest(name, data_dir, text=True))


@functools.lru_cache(maxsize=4)
def _cached_text_data(name: str, data_dir: str | None, digest: str):
    from deeplimit.data import ByteCorpus

    return ByteCorpus.load(name, data_dir=data_dir)


class Batches:
    """Batch for step t as a pure function of (seed, t): identical across the LR grid, resumable."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        if cfg.is_text:
            self.corpus = cached_text_data(cfg.data, cfg.data_dir)
            for split in ("train", "held_out"):
                if len(self.corpus.split(split)) < cfg.seq_len + 1:
                    raise DeeplimitError(f"the {split} part of corpus {cfg.data!r} has "
                                         f"{len(self.corpus.split(split))} bytes, fewer than seq_len + 1 = "
                                         f"{cfg.seq_len + 1}; use a larger text or a smaller seq_len")
        else:
            self.xtr, self.ytr, self.xte, self.yte = cached_image_data(cfg.data, cfg.data_dir)
            if len(self.xtr) < cfg.batch_size:
                raise DeeplimitError(f"dataset {cfg.data!r} has {len(self.xtr)} training examples, fewer than "
                                     f"batch_size={cfg.batch_size}; lower batch_size")
            self.per_epoch = len(self.xtr) // cfg.batch_size
            self._perm_epoch, self._perm = -1, None

    def train(self, t: int):
        cfg = self.cfg
        if cfg.is_text:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + t)
            return self.corpus.get_batch("train", cfg.batch_size, cfg.seq_len, g)
        epoch, i = divmod(t, self.per_epoch)
        if epoch != self._perm_epoch:
            from deeplimit.data import epoch_permutation

            self._perm, self._perm_epoch = epoch_permutation(len(self.xtr), cfg.seed, epoch), epoch
        idx = self._perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        return self.xtr[idx], self.ytr[idx]

    def eval(self):
        cfg = self.cfg
        if cfg.is_text:
            g = torch.Generator().manual_seed(2**31 - 1)
            return [self.corpus.get_batch("held_out", cfg.batch_size, cfg.seq_len, g) for _ in range(cfg.eval_batches)]
        if len(self.xte) == 0:
            return []
        n = min(len(self.xte), cfg.eval_batches * cfg.batch_size)
        return [(self.xte[i:i + cfg.batch_size], self.yte[i:i + cfg.batch_size]) for i in range(0, n, cfg.batch_size)]

    def probe(self):
        """A fixed held-out input batch for diagnostics during training (attention entropy)."""
        g = torch.Generator().manual_seed(2**31 - 1)
        return self.corpus.get_batch("held_out", self.cfg.batch_size, self.cfg.seq_len, g)[0]

    @property
    def shapes(self) -> dict:
        if self.cfg.is_text:
            return {"vocab_size": 256, "max_seq_len": self.cfg.seq_len}
        return {"d_in": self.xtr.shape[1], "d_out": int(self.ytr.max()) + 1}


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(B, C)`` logits vs ``(B,)`` labels, or ``(B, T, V)`` vs ``(B, T)`` token targets."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ------------------------------------------------------------------------------------------------------
# Memory guard: refuse a size that cannot fit before allocating it.


def check_run_fits(cfg: TrainConfig, shapes: dict) -> None:
    """Count parameters (in closed form for the built-in models, on the meta device for others) and refuse a
    run whose weights, gradients and optimizer state (≈ 4 copies for Adam, 3 for SGD) exceed the memory available
    now; for text also the batch's logits (batch × seq_len × vocab, with their gradient and softmax)."""
    copies = 3 if cfg.optimizer.lower() == "sgd" else 4
    bytes_per = torch.finfo(getattr(torch, cfg.dtype)).bits // 8
    if cfg.is_builtin:
        c = model_config(cfg.model, width=cfg.width, depth=cfg.depth, **shapes, **cfg.model_kwargs)
        counts: tuple[int, int] | None = (c.n_params(), c.n_modules())
    else:  # any other model is built on the meta device (no memory) and counted
        counts = count_on_meta(cfg.model, cfg.width, cfg.depth, shapes, cfg.model_kwargs)
    if counts is not None:
        check_fits(f"model {cfg.model} at width {cfg.width}, depth {cfg.depth}", *counts, copies=copies,
                   bytes_per=bytes_per, fix="lower width or depth")
    if cfg.is_text:
        need = 3 * cfg.batch_size * cfg.seq_len * shapes.get("vocab_size", 256) * bytes_per
        avail = available_memory()
        if avail is not None and need > avail:
            raise DeeplimitError(f"batch_size {cfg.batch_size} × seq_len {cfg.seq_len} needs ≈ {size_words(need)} "
                                 f"for the logits alone, but only {size_words(avail)} of memory is available; lower "
                                 "batch_size or seq_len")
