"""A small, honest trainer: config → model → plan → optimizer → loop → tidy rows.

``train(TrainConfig(...), run_dir=...)`` trains one run and returns a :class:`TrainResult`. A run that
diverges is a *result* (``status="diverged"``), never an exception.

Checkpoints and resume. With a ``run_dir`` the run checkpoints (weights, optimizer state, losses, rows, the
config and its fingerprint) to ``run_dir/ckpt.pt`` — by default every quarter of the run or every 30 s of
wall time, whichever comes first (``checkpoint_every``/``checkpoint_seconds`` change that) — and on Ctrl-C.
Called again with the *same* config it resumes from the last checkpoint and reaches bit-identical losses (the
batch of step t is a pure function of ``(seed, t)``). A checkpoint of a *different* config (another LR,
other steps, other data, an edited data file…) is refused with an error naming the differing fields:
``fresh=True`` (``deeplimit train --fresh``) discards it, or use another folder. A finished run is not
re-trained: its stored result is returned. Checkpoints are loaded with ``weights_only=True``.

Metric (depth-mup spec §11.1): mean train loss over the last 10% of steps (at least 50, or the whole run
if shorter); divergence = a non-finite loss, or a final-window loss above the step-0 loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.io import (
    JSON_TEXT,
    atomic_save,
    atomic_torch_save,
    atomic_write_json,
    check_fields,
    check_folder,
    ensure_dir,
    remove_stale_temps,
    safe_torch_load,
)
from deeplimit.nn._validate import available_memory, check_fits, size_words
from deeplimit.nn.mlp_resnet import MLPResNetConfig
from deeplimit.nn.registry import MODELS, build_model, model_config
from deeplimit.nn.transformer import TransformerConfig
from deeplimit.scaling.apply import parametrize
from deeplimit.scaling.optim import make_optimizer, set_base_lr
from deeplimit.scaling.plan import canonical_name
from deeplimit.scaling.rules import get_rule

TEXT_MODELS = ("transformer", "shaped-transformer")
OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
CHECKPOINT = "ckpt.pt"
CHECKPOINT_FORMAT = 2
# Fields that change how often the run saves itself, never what it computes: left out of the fingerprint.
_NOT_IN_FINGERPRINT = ("checkpoint_every", "checkpoint_seconds")
# Fields added later: left out of the fingerprint while unset, so older checkpoints still resume.
_NEW_IF_SET = ("wd_timescale", "wd_timescale_fraction", "diverge_patience")

# Defaults of the byte-level transformer family (Noci et al. 2023 App. D settings at CPU scale).
TEXT_DEFAULTS: dict[str, Any] = dict(optimizer="adamw", data="shakespeare", batch_size=16, seq_len=64,
                                     betas=(0.9, 0.95), warmup_frac=0.05, min_window=20)


@dataclass
class TrainConfig:
    """Everything a run depends on; a run is reproducible from this config alone.

    Every field is type-checked on construction: a bad value is a :class:`DeeplimitError` naming the field,
    what it must be, and the value given.
    """

    model: str = "mlp-resnet"
    width: int = 64
    depth: int = 4
    model_kwargs: dict = field(default_factory=dict)  # e.g. activation, block_depth, n_heads, attention
    rule: str = "depth_mup"
    alpha: float | None = None
    gamma: float | None = None
    base_width: int | None = None
    base_depth: int | None = None
    plan_kwargs: dict = field(default_factory=dict)  # block_mult, input_mult, output_mult, eps_scope, …
    optimizer: str = "adam"
    lr: float = 2**-8
    eps: float = 1e-8
    weight_decay: float = 0.0
    wd_timescale: float | None = None  # weight decay as an EMA timescale τ = 1/(η_g·λ) in steps (instead of λ)
    wd_timescale_fraction: float | None = None  # … or as a fraction of ``steps`` (optimizers spec §4)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0  # SGD's momentum; with optimizer="muon", Muon's (0: torch's default 0.95)
    warmup_frac: float = 0.0  # linear warm-up over this fraction of steps, then constant
    steps: int = 400
    batch_size: int = 128
    seq_len: int = 64  # text models only
    data: str = "fashion-mnist"  # image set name or .npz path; for text models a corpus name or a text file
    data_dir: str | None = None
    train_io: bool = True  # False freezes input and readout (TP6 §10.2 depth-transfer protocol, decision D11)
    seed: int = 0
    window_frac: float = 0.1
    min_window: int = 50
    eval_batches: int = 8  # 0: no held-out evaluation (eval_loss is NaN)
    log_every: int = 10
    checkpoint_every: int = 0  # with a run_dir: 0 = a quarter of the run or checkpoint_seconds, whichever first
    checkpoint_seconds: float = 30.0
    entropy_every: int = 0  # >0: record per-layer attention entropy on a fixed batch (transformers)
    dtype: str = "float32"
    # Stop early once the train loss has been above the step-0 loss for this many consecutive steps after the
    # warm-up (status "diverged"); None: every run trains all its steps.
    diverge_patience: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_text(self) -> bool:
        return self.model.replace("_", "-") in TEXT_MODELS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error listing the accepted ones."""
        if not isinstance(d, dict):
            raise DeeplimitError(f"a training config must be a mapping of option names to values, got "
                                 f"{type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DeeplimitError(f"unknown training option(s) {unknown}; accepted: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_point(cls, point: dict[str, Any]) -> TrainConfig:
        """Same as :func:`config_from_point`."""
        return config_from_point(point)

    def fingerprint(self) -> str:
        """Hex digest of everything that changes what the run computes, including the content of the data: a
        data file's bytes, or those of the files a named dataset is read from (``fashion-mnist`` under
        ``data_dir`` or ``$DEEPLIMIT_FASHION_MNIST_DIR``, the Shakespeare tarball, …).

        Two configs with the same fingerprint produce the same losses; a checkpoint is resumed only under its
        own fingerprint.
        """
        d = {k: v for k, v in self.to_dict().items()
             if k not in _NOT_IN_FINGERPRINT and not (k in _NEW_IF_SET and v is None)}
        d["data_sha256"] = _data_digest(self)
        blob = json.dumps(d, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------------------------------
# Validation: one line per problem, naming the field, what it must be and what was given.


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise DeeplimitError(f"training option {name} must be {what}, got {value!r}")


def _validate(c: TrainConfig) -> None:
    for name in ("width", "depth", "steps", "batch_size", "seq_len", "min_window", "log_every"):
        v = getattr(c, name)
        _need(_is_int(v) and v >= 1, name, "a positive integer", v)
    for name in ("seed", "eval_batches", "checkpoint_every", "entropy_every"):
        v = getattr(c, name)
        _need(_is_int(v) and v >= 0, name, "an integer ≥ 0", v)
    # Sizes before work: a typo's extra zeros are refused here, in a millisecond, not after hours or an overflow.
    for name, limit in (("seed", MAX_SEED), ("steps", MAX_STEPS), ("batch_size", MAX_BATCH)):
        v = getattr(c, name)
        _need(v <= limit, name, f"at most {limit:,}", v)
    for name in ("base_width", "base_depth", "diverge_patience"):
        v = getattr(c, name)
        _need(v is None or (_is_int(v) and v >= 1), name, "a positive integer (or unset)", v)
    _need(_is_num(c.lr) and math.isfinite(c.lr) and c.lr > 0, "lr", "a finite positive number", c.lr)
    for name in ("eps", "weight_decay"):
        v = getattr(c, name)
        _need(_is_num(v) and math.isfinite(v) and v >= 0, name, "a finite number ≥ 0", v)
    for name in ("momentum", "warmup_frac"):
        v = getattr(c, name)
        _need(_is_num(v) and 0 <= v < 1, name, "a number in [0, 1)", v)
    _need(_is_num(c.window_frac) and 0 < c.window_frac <= 1, "window_frac", "a number in (0, 1]", c.window_frac)
    _need(_is_num(c.checkpoint_seconds) and c.checkpoint_seconds > 0 and not math.isnan(c.checkpoint_seconds),
          "checkpoint_seconds", "a positive number of seconds (inf: by steps only)", c.checkpoint_seconds)
    for name in ("alpha", "gamma"):
        v = getattr(c, name)
        _need(v is None or (_is_num(v) and math.isfinite(v)), name, "a finite number (or unset)", v)
    betas = c.betas
    _need(isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas),
          "betas", "two numbers in [0, 1), e.g. (0.9, 0.999)", betas)
    c.betas = (float(betas[0]), float(betas[1]))
    _need(isinstance(c.train_io, bool), "train_io", "True or False", c.train_io)
    _need(c.dtype in ("float32", "float64"), "dtype", "'float32' or 'float64'", c.dtype)
    _need(isinstance(c.optimizer, str) and c.optimizer.lower() in OPTIMIZERS, "optimizer",
          f"one of {', '.join(OPTIMIZERS)}", c.optimizer)
    _need(isinstance(c.model, str) and c.model.lower().replace("_", "-") in MODELS, "model",
          f"one of {', '.join(sorted(MODELS))}", c.model)
    _need(isinstance(c.data, str) and c.data.strip() != "", "data", "a dataset name or a file path", c.data)
    _need(c.data_dir is None or isinstance(c.data_dir, str), "data_dir", "a folder path (or unset)", c.data_dir)
    for name in ("model_kwargs", "plan_kwargs"):
        v = getattr(c, name)
        _need(isinstance(v, dict) and all(isinstance(k, str) for k in v), name, "a dict of option names", v)
    _need(isinstance(c.rule, str), "rule", "a rule name", c.rule)
    get_rule(c.rule, alpha=c.alpha, gamma=c.gamma)  # unknown rule: DeeplimitError listing the valid ones
    for name, v in c.plan_kwargs.items():
        if _is_num(v) and not math.isfinite(v):
            raise DeeplimitError(f"plan option {name} must be finite, got {v!r}")
        if name in PLAN_BOOL_KEYS:
            _need(isinstance(v, bool), name, "True or False", v)
    # The model's own options (real bools, finite numbers, bounded sizes) are checked by its config, now, so a
    # bad one fails before any data is read; the input/output sizes come from the data later.
    model_config(c.model, width=c.width, depth=c.depth, **_shape_stub(c), **c.model_kwargs)
    if c.is_text:
        tokens = c.eval_batches * c.batch_size * c.seq_len
        _need(tokens <= MAX_EVAL_TOKENS, "eval_batches",
              f"at most {MAX_EVAL_TOKENS // (c.batch_size * c.seq_len):,} at batch_size {c.batch_size} and seq_len "
              f"{c.seq_len} (the held-out evaluation reads at most {MAX_EVAL_TOKENS:,} tokens)", c.eval_batches)
    if c.is_text and (c.data.lower().endswith((".npz", ".npy", ".gz", ".zip", ".pt"))):
        raise DeeplimitError(f"model {c.model!r} trains on text, but data={c.data!r} is an array/archive file; "
                             "pass a text file or a corpus name (shakespeare, stdlib)")


def _shape_stub(c: TrainConfig) -> dict:
    """Input/output sizes for validating a model config before the data is read (the real ones replace them)."""
    if c.is_text:
        return {"max_seq_len": c.seq_len}
    return {}


def _data_digest(c: TrainConfig) -> str:
    """SHA-256 of a data file, else the content digest of the files a named dataset is read from: a run keyed
    on this never returns a stale result for other data under the same name (hashed once per process)."""
    from deeplimit.data import CORPORA, content_digest, file_digest

    named = c.data in CORPORA if c.is_text else c.data in ("fashion-mnist", "fashion_mnist", "fmnist", "digits")
    # a name the loader resolves itself is hashed by what it reads, even if a file of that name sits here
    return (None if named else file_digest(c.data)) or content_digest(c.data, c.data_dir, text=c.is_text)


# ------------------------------------------------------------------------------------------------------
# A flat point (sweep grid point, CLI flags) → TrainConfig. The trainer owns this map: callers above it
# (sweeps, the CLI, reports) build configs through it and never reach back up.

MAX_SEED = 2**32 - 1  # numpy's and most libraries' seed range; the text batch seed seed·1000003 + t stays < 2^63
MAX_STEPS = 10**8
MAX_BATCH = 2**24
MAX_EVAL_TOKENS = 10**8  # held-out tokens per evaluation (text); image sets are capped by their test split
PLAN_BOOL_KEYS = frozenset({"readout_zero_init", "decay_vectors"})

MODEL_KEYS = frozenset({
    "activation", "block_depth", "block", "mean_subtract", "pre_ln", "bias",  # MLP-ResNet
    "n_heads", "mlp_ratio", "norm", "attention", "logit_scale", "attn_mult", "tau0", "tau_mode", "shaping",
    "recover_steps", "c_plus", "c_minus", "residual", "residual_gamma", "residual_trainable",
    "zero_query_init",  # transformers
})
PLAN_KEYS = frozenset({"block_mult", "input_mult", "output_mult", "sigma_in", "sigma_hidden", "sigma_out",
                       "sigma_emb", "readout_zero_init", "decay_vectors", "eps_scope", "weight_decay_mode",
                       "muon_lr_ratio"})
IGNORED_KEYS = frozenset({"experiment", "variant"})
TRAIN_KEYS = frozenset(f.name for f in fields(TrainConfig)) - {"model_kwargs", "plan_kwargs"}


def _bool_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.type in ("bool", bool)}


# Yes/no options of the trainer, the models and the plan: the CLI parses these strictly (true/false/yes/no/1/0).
BOOL_KEYS = frozenset(_bool_fields(TrainConfig) | PLAN_BOOL_KEYS
                      | ((_bool_fields(MLPResNetConfig) | _bool_fields(TransformerConfig)) & MODEL_KEYS))


def config_from_point(point: dict[str, Any]) -> TrainConfig:
    """Map a flat dict to a :class:`TrainConfig`.

    Keys: ``TrainConfig`` fields (``width``, ``depth``, ``steps``, ``seed``, ``data``, …) plus ``preset``
    (alias of ``rule``), ``log2_lr`` (``lr = 2**log2_lr``), model options (:data:`MODEL_KEYS`, go to
    ``model_kwargs``), plan options (:data:`PLAN_KEYS`, go to ``plan_kwargs``) and labels ignored by training
    (``experiment``, ``variant``). Unknown keys are errors listing the accepted names, so a typo never silently
    trains the default.
    """
    if "lr" in point and "log2_lr" in point:
        raise DeeplimitError("give either lr or log2_lr, not both")
    train_kw: dict[str, Any] = {}
    model_kw: dict[str, Any] = {}
    plan_kw: dict[str, Any] = {}
    for key, value in point.items():
        if key == "preset":
            train_kw["rule"] = value
        elif key == "log2_lr":
            _need(_is_num(value) and math.isfinite(value), "log2_lr", "a finite number", value)
            train_kw["lr"] = 2.0 ** float(value)
        elif key in TRAIN_KEYS:
            train_kw[key] = value
        elif key in MODEL_KEYS:
            model_kw[key] = value
        elif key in PLAN_KEYS:
            plan_kw[key] = value
        elif key not in IGNORED_KEYS:
            raise DeeplimitError(f"unknown training option {key!r}; accepted: preset, log2_lr, "
                                 f"{', '.join(sorted(TRAIN_KEYS | MODEL_KEYS | PLAN_KEYS | IGNORED_KEYS))}")
    return TrainConfig(model_kwargs=model_kw, plan_kwargs=plan_kw, **train_kw)


def family_defaults(model: str) -> dict[str, Any]:
    """Defaults that differ by model family (byte-level transformers: AdamW, batch 16, warm-up, …)."""
    return dict(TEXT_DEFAULTS) if model.replace("_", "-") in TEXT_MODELS else {}


# ------------------------------------------------------------------------------------------------------
# Results


@dataclass
class TrainResult:
    status: str  # "ok" | "diverged"
    window_loss: float
    eval_loss: float
    step0_loss: float
    steps_done: int
    wall_s: float
    rows: list[dict]
    reason: str = ""
    resumed_from: int = 0  # step the run resumed from (0: fresh start)

    @property
    def value(self) -> float:
        return self.window_loss if self.status == "ok" else math.inf

    def summary(self) -> dict:
        """The one-line facts of the run (what ``deeplimit train`` prints)."""
        return {"status": self.status, "window_loss": self.window_loss, "eval_loss": self.eval_loss,
                "step0_loss": self.step0_loss, "steps": self.steps_done, "wall_s": round(self.wall_s, 2),
                "reason": self.reason, "resumed_from": self.resumed_from}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`: the run stopped at a step boundary (and checkpointed if it has a run_dir)."""

    def __init__(self, step: int, run_dir: Path | None) -> None:
        self.step, self.run_dir = step, run_dir
        if run_dir is not None:
            msg = (f"interrupted at step {step}; checkpoint saved in {run_dir}. Run the same command again to "
                   "resume (the result is the same as an uninterrupted run)")
        else:
            msg = f"interrupted at step {step}; nothing was saved (pass a run folder to make runs resumable)"
        super().__init__(msg)


# ------------------------------------------------------------------------------------------------------
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


class _Batches:
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


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ------------------------------------------------------------------------------------------------------
# Model: refuse a size that cannot fit before allocating it.


def _check_fits(cfg: TrainConfig, shapes: dict) -> None:
    """Count parameters in closed form (nothing is built) and refuse a run whose weights, gradients and
    optimizer state (≈ 4 copies for Adam, 3 for SGD) exceed the memory available now; for text also the
    batch's logits (batch × seq_len × vocab, with their gradient and softmax)."""
    c = model_config(cfg.model, width=cfg.width, depth=cfg.depth, **shapes, **cfg.model_kwargs)
    copies = 3 if cfg.optimizer.lower() == "sgd" else 4
    bytes_per = torch.finfo(getattr(torch, cfg.dtype)).bits // 8
    check_fits(f"model {cfg.model} at width {cfg.width}, depth {cfg.depth}", c.n_params(), c.n_modules(),
               copies=copies, bytes_per=bytes_per, fix="lower width or depth")
    if cfg.is_text:
        need = 3 * cfg.batch_size * cfg.seq_len * shapes.get("vocab_size", 256) * bytes_per
        avail = available_memory()
        if avail is not None and need > avail:
            raise DeeplimitError(f"batch_size {cfg.batch_size} × seq_len {cfg.seq_len} needs ≈ {size_words(need)} "
                                 f"for the logits alone, but only {size_words(avail)} of memory is available; lower "
                                 "batch_size or seq_len")


def build(cfg: TrainConfig, shapes: dict) -> tuple[nn.Module, object]:
    """Model and plan for a config (the model is initialised by the plan with the run's seed)."""
    _check_fits(cfg, shapes)
    try:
        model = build_model(cfg.model, width=cfg.width, depth=cfg.depth, **shapes, **cfg.model_kwargs)
        model = model.to(getattr(torch, cfg.dtype))
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise DeeplimitError(f"out of memory building {cfg.model} at width {cfg.width}, depth {cfg.depth} "
                             f"({exc.__class__.__name__}); lower width or depth") from None
    except RuntimeError as exc:
        if "alloc" not in str(exc).lower():
            raise
        raise DeeplimitError(f"out of memory building {cfg.model} at width {cfg.width}, depth {cfg.depth} "
                             f"({str(exc).splitlines()[0][:160]}); lower width or depth") from None
    plan = parametrize(model, cfg.rule, seed=cfg.seed, optimizer=cfg.optimizer, base_width=cfg.base_width,
                       base_depth=cfg.base_depth, alpha=cfg.alpha, gamma=cfg.gamma, **cfg.plan_kwargs)
    if not cfg.train_io:
        for name, p in model.named_parameters():
            if plan[name].role in ("input", "readout"):
                p.requires_grad_(False)
    return model, plan


# ------------------------------------------------------------------------------------------------------
# Checkpoints: one file, written atomically, read with weights_only=True, keyed by the config fingerprint.


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, fingerprint: str, *,
          step: int, losses: list[float], rows: list[dict], wall_s: float, result: dict | None = None) -> None:
    blob = {
        "format": CHECKPOINT_FORMAT,
        "model": {canonical_name(k): v for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "extra": {
            "config": json.dumps(cfg.to_dict(), default=list),
            "fingerprint": fingerprint,
            "step": step,
            "losses": torch.tensor(losses, dtype=torch.float64),
            # JSON keeps rows to plain types (a weights_only load accepts no numpy scalars); floats round-trip
            "rows": json.dumps(rows, default=float),
            "wall_s": wall_s,
            "result": json.dumps(result) if result is not None else "",
        },
    }
    atomic_torch_save(blob, path)


def _config_diff(saved: dict, cfg: TrainConfig) -> str:
    now = cfg.to_dict()
    diffs = []
    for k in sorted(set(saved) | set(now)):
        if k in _NOT_IN_FINGERPRINT:
            continue
        a, b = saved.get(k), now.get(k)
        if isinstance(a, list) and isinstance(b, tuple):
            b = list(b)
        if a != b:
            diffs.append(f"{k}: {a!r} → {b!r}")
    return ", ".join(diffs[:6]) + (" …" if len(diffs) > 6 else "") if diffs else "the content of the data file(s)"


# What a resume reads from a checkpoint (a file with the right fingerprint but damaged fields is refused).
_CHECKPOINT_FIELDS = {
    "model": dict, "optimizer": {"state": dict, "param_groups": list},
    "extra": {"step": int, "wall_s": (int, float), "losses": torch.Tensor, "rows": JSON_TEXT, "result": str},
}
# Muon's CombinedOptimizer saves one state per part ({"parts": {name: state}}): the same check, per part
_COMBINED_OPTIMIZER_FIELDS = {"parts": dict}


def _load(path: Path, cfg: TrainConfig, fingerprint: str) -> dict:
    """The checkpoint's contents, or a DeeplimitError if it belongs to another config or is unreadable."""
    blob = safe_torch_load(path, "checkpoint")
    extra = blob.get("extra", {}) if isinstance(blob, dict) else {}
    if not isinstance(extra, dict) or "fingerprint" not in extra:
        raise DeeplimitError(f"checkpoint {path} has no config record (written by another tool or an older "
                             "deeplimit), so it cannot be matched to this run; start over with --fresh "
                             "(fresh=True) or use another run folder")
    if extra["fingerprint"] != fingerprint:
        saved = json.loads(extra["config"]) if extra.get("config") else {}
        raise DeeplimitError(f"{path.parent} holds a checkpoint of a different run ({_config_diff(saved, cfg)}); "
                             "start over with --fresh (fresh=True) to discard it, or use another run folder")
    combined = isinstance(blob.get("optimizer"), dict) and "parts" in blob["optimizer"]
    check_fields(blob, {**_CHECKPOINT_FIELDS, "optimizer": _COMBINED_OPTIMIZER_FIELDS} if combined
                 else _CHECKPOINT_FIELDS, path, "checkpoint")
    if combined:
        for name, part in blob["optimizer"]["parts"].items():
            check_fields({"optimizer": part}, {"optimizer": _CHECKPOINT_FIELDS["optimizer"]}, path,
                         f"checkpoint (optimizer part {name!r} of)")
    return blob


class _StopFlag:
    """First Ctrl-C asks the loop to stop at the next step boundary; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def _graceful_sigint() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    # Only take over Python's default handler in the main thread; a caller with its own handler keeps it.
    install = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if install:
        signal.signal(signal.SIGINT, flag)
    try:
        yield flag
    finally:
        if install:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _progress_bar(cfg: TrainConfig, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, disable=not enabled, file=sys.stderr, unit="step",
                desc=f"train {cfg.model} w{cfg.width} d{cfg.depth}", dynamic_ncols=True, mininterval=0.5,
                leave=False)


def train(cfg: TrainConfig, run_dir: str | Path | None = None, *, fresh: bool = False, progress: bool = False,
          hook: Callable[[int, nn.Module], list[dict] | None] | None = None) -> TrainResult:
    """Train one run; with ``run_dir``, checkpoint there and resume a checkpoint of the same config.

    ``fresh=True`` discards a checkpoint already in ``run_dir``. ``progress=True`` shows a progress bar (step,
    loss, rate, ETA) on stderr. ``hook(step, model)`` is called before every update and once after the last
    step (with ``step = steps``); the rows it returns join the run's tidy rows (e.g. a diagnostic measured
    during training). Ctrl-C stops at a step boundary, saves a checkpoint (with ``run_dir``) and raises
    :class:`TrainingInterrupted`.
    """
    t_start = time.perf_counter()
    fingerprint = cfg.fingerprint()
    ckpt = None
    if run_dir is not None:
        ckpt = check_folder(run_dir, "run folder") / CHECKPOINT
    blob = _load(ckpt, cfg, fingerprint) if ckpt is not None and ckpt.exists() and not fresh else None
    if blob is not None and blob["extra"].get("result"):  # finished under this config: the stored result
        res = json.loads(blob["extra"]["result"])
        return TrainResult(**{**res, "rows": json.loads(blob["extra"]["rows"]), "resumed_from": res["steps_done"]})

    data = _Batches(cfg)
    model, plan = build(cfg, data.shapes)
    if ckpt is not None:  # only now, so a run refused for its data or size leaves nothing behind
        ensure_dir(ckpt.parent, "run folder")
        remove_stale_temps(ckpt)  # what a run killed while saving left behind
        if fresh:
            ckpt.unlink(missing_ok=True)
    timed = cfg.wd_timescale is not None or cfg.wd_timescale_fraction is not None
    opt = make_optimizer(model, plan, cfg.lr, weight_decay=cfg.weight_decay if cfg.weight_decay or not timed else None,
                         eps=cfg.eps, betas=cfg.betas, momentum=cfg.momentum or None,  # SGD's or Muon's momentum
                         wd_timescale=cfg.wd_timescale, wd_timescale_fraction=cfg.wd_timescale_fraction,
                         total_steps=cfg.steps if cfg.wd_timescale_fraction is not None else None)
    start, losses, rows, prior_wall = 0, [], [], 0.0
    if blob is not None:
        own = {canonical_name(k): k for k in model.state_dict()}
        model.load_state_dict({own[k]: v for k, v in blob["model"].items()})
        opt.load_state_dict(blob["optimizer"])
        extra = blob["extra"]
        start, prior_wall = int(extra["step"]), float(extra["wall_s"])
        losses, rows = extra["losses"].tolist(), json.loads(extra["rows"])
    elif ckpt is not None:
        atomic_write_json(ckpt.with_name(CHECKPOINT + ".plan.json"), plan.to_dict())  # for people and dl.load_*
    window = min(cfg.steps, max(cfg.min_window, math.ceil(cfg.window_frac * cfg.steps)))
    warmup = int(cfg.warmup_frac * cfg.steps)
    every = cfg.checkpoint_every or max(1, cfg.steps // 4)
    status, reason = "ok", ""
    # consecutive steps (after the warm-up) with a loss above step 0's; recounted from the losses on resume
    above = _steps_above_step0(losses, warmup)
    model.train()
    schedule = getattr(model, "set_step", None)  # shaped "recover" schedules advance with the optimizer step
    dtype = getattr(torch, cfg.dtype)
    probe = data.probe() if cfg.entropy_every and cfg.is_text else None

    def save(step: int, result: dict | None = None) -> None:
        _save(ckpt, model, opt, cfg, fingerprint, step=step, losses=losses, rows=rows, result=result,
              wall_s=prior_wall + time.perf_counter() - t_start)

    last_save = time.monotonic()
    bar = _progress_bar(cfg, start, progress)
    try:
        with _graceful_sigint() as stop:
            for t in range(start, cfg.steps):
                if stop.requested:
                    if ckpt is not None:
                        save(t)
                    raise TrainingInterrupted(t, ckpt.parent if ckpt is not None else None)
                if schedule is not None:
                    schedule(t)
                if hook is not None:
                    rows.extend(hook(t, model) or [])
                set_base_lr(opt, cfg.lr * min(1.0, (t + 1) / warmup) if warmup else cfg.lr)
                xb, yb = data.train(t)
                loss = _loss(model(xb.to(dtype) if not cfg.is_text else xb), yb)
                value = loss.item()
                losses.append(value)
                if not math.isfinite(value):
                    status, reason = "diverged", f"non-finite loss at step {t}"
                    rows.append({"step": t, "metric": "train_loss", "value": value})
                    break
                above = above + 1 if t >= warmup and value > losses[0] else 0
                if cfg.diverge_patience is not None and above >= cfg.diverge_patience:
                    status = "diverged"
                    reason = (f"stopped early: loss above the step-0 loss for {above} steps from step "
                              f"{t - above + 1}")
                    rows.append({"step": t, "metric": "train_loss", "value": value})
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if t % cfg.log_every == 0 or t == cfg.steps - 1:
                    rows.append({"step": t, "metric": "train_loss", "value": value})
                    bar.set_postfix_str(f"loss {value:.4f}", refresh=False)
                if probe is not None and (t % cfg.entropy_every == 0 or t == cfg.steps - 1):
                    from deeplimit.diagnostics.signal import layer_attention_entropy

                    for layer, ent in enumerate(layer_attention_entropy(model, probe)):
                        rows.append({"step": t, "metric": "attn_entropy", "value": ent, "layer": layer})
                bar.update(1)
                if ckpt is not None and t + 1 < cfg.steps and (
                        (t + 1) % every == 0 or time.monotonic() - last_save >= cfg.checkpoint_seconds):
                    save(t + 1)
                    last_save = time.monotonic()
    finally:
        bar.close()
    steps_done = len(losses)
    if hook is not None and status == "ok":
        rows.extend(hook(steps_done, model) or [])
    step0 = losses[0]
    window_loss = sum(losses[-window:]) / len(losses[-window:]) if status == "ok" else math.inf
    if status == "ok" and not window_loss <= step0:
        status, reason = "diverged", f"final-window loss {window_loss:.4g} above the step-0 loss {step0:.4g}"
        window_loss = math.inf
    eval_loss = math.nan
    if status == "ok":
        eval_loss = evaluate(model, data, cfg)
        rows.append({"step": steps_done, "metric": "eval_loss", "value": eval_loss})
    rows.append({"step": steps_done, "metric": "window_loss", "value": window_loss})  # exactly one per run
    wall = prior_wall + time.perf_counter() - t_start
    result = TrainResult(status, window_loss, eval_loss, step0, steps_done, wall, rows, reason, resumed_from=start)
    if ckpt is not None:
        save(steps_done, {k: v for k, v in dataclasses.asdict(result).items() if k not in ("rows", "resumed_from")})
    return result


def _steps_above_step0(losses: list[float], warmup: int) -> int:
    """How many of the last losses, all at steps ≥ ``warmup``, are above the step-0 loss (0 if none)."""
    n = 0
    for t in range(len(losses) - 1, max(warmup, 1) - 1, -1):
        if not losses[t] > losses[0]:
            break
        n += 1
    return n


@torch.no_grad()
def evaluate(model: nn.Module, data: _Batches, cfg: TrainConfig) -> float:
    batches = data.eval()
    if not batches:
        return math.nan
    model.eval()
    dtype = getattr(torch, cfg.dtype)
    total = sum(_loss(model(x if cfg.is_text else x.to(dtype)), y).item() for x, y in batches)
    model.train()
    return total / len(batches)


def train_and_save(cfg: TrainConfig, *, run_dir: str | Path | None = None, out: str | Path | None = None,
                   fresh: bool = False, progress: bool = False) -> dict:
    """Train one run and, with ``out``, write ``rows.csv`` (tidy rows) and ``summary.json`` there.

    Both folders are checked before training starts (an unwritable ``out`` fails in a second, not after the
    run) but created only once the run is under way, so a refused run leaves nothing behind. Returns the
    summary dict (``status``, ``window_loss``, …; ``unigram_entropy_nats`` for text).
    """
    if out is not None:
        check_folder(out, "output folder")
    res = train(cfg, run_dir, fresh=fresh, progress=progress)
    summary = res.summary()
    if cfg.is_text:
        summary["unigram_entropy_nats"] = cached_text_data(cfg.data, cfg.data_dir).unigram_entropy("train")
    if out is not None:
        import pandas as pd

        out_dir = ensure_dir(out, "output folder")
        table = pd.DataFrame(res.rows)
        atomic_save(out_dir / "rows.csv", lambda fh: fh.write(table.to_csv(index=False).encode()))
        atomic_write_json(out_dir / "summary.json", {"config": cfg.to_dict(), **summary})
    return summary
