"""A small, honest trainer: config → model → plan → optimizer → loop → tidy rows.

``train(TrainConfig(...), run_dir=...)`` trains one run and returns a :class:`TrainResult`. A run that
diverges is a *result* (``status="diverged"``), never an exception. With a ``run_dir`` the run checkpoints
(weights, optimizer, plan JSON, history) every ``checkpoint_every`` steps and resumes from the last checkpoint
when called again, so a killed sweep worker loses at most that many steps.

Metric (depth-mup spec §11.1): mean train loss over the last 10% of steps (at least 50, or the whole run
if shorter); divergence = a non-finite loss, or a final-window loss above the step-0 loss.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.nn.registry import build_model
from deeplimit.scaling.apply import load_checkpoint, parametrize, save_checkpoint
from deeplimit.scaling.optim import make_optimizer, set_base_lr

TEXT_MODELS = ("transformer", "shaped-transformer")


@dataclass
class TrainConfig:
    """Everything a run depends on; a run is reproducible from this config alone."""

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
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
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
    eval_batches: int = 8
    log_every: int = 10
    checkpoint_every: int = 0  # 0: no periodic checkpoints
    entropy_every: int = 0  # >0: record per-layer attention entropy on a fixed batch (transformers)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_positive("steps", self.steps, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("width", self.width, integer=True)
        check_positive("depth", self.depth, integer=True)
        if not 0 <= self.warmup_frac < 1:
            raise DeeplimitError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.dtype not in ("float32", "float64"):
            raise DeeplimitError(f"dtype must be float32 or float64, got {self.dtype!r}")
        self.betas = tuple(self.betas)

    @property
    def is_text(self) -> bool:
        return self.model.replace("_", "-") in TEXT_MODELS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DeeplimitError(f"unknown training option(s) {unknown}; accepted: {sorted(known)}")
        return cls(**d)


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

    @property
    def value(self) -> float:
        return self.window_loss if self.status == "ok" else math.inf


# ------------------------------------------------------------------------------------------------------
# Data: cached per process, so a sweep worker reads each dataset once.


@functools.lru_cache(maxsize=4)
def cached_image_data(name: str, data_dir: str | None):
    from deeplimit.data import load_image_dataset

    xtr, ytr = load_image_dataset(name, "train", data_dir=data_dir)
    try:
        xte, yte = load_image_dataset(name, "test", data_dir=data_dir)
    except DeeplimitError:
        xte, yte = xtr[:0], ytr[:0]
    return xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte


@functools.lru_cache(maxsize=4)
def cached_text_data(name: str, data_dir: str | None):
    from deeplimit.data import ByteCorpus

    return ByteCorpus.load(name, data_dir=data_dir)


class _Batches:
    """Batch for step t as a pure function of (seed, t): identical across the LR grid, resumable."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        if cfg.is_text:
            self.corpus = cached_text_data(cfg.data, cfg.data_dir)
        else:
            self.xtr, self.ytr, self.xte, self.yte = cached_image_data(cfg.data, cfg.data_dir)
            if len(self.xtr) < cfg.batch_size:
                raise DeeplimitError(f"dataset {cfg.data!r} has {len(self.xtr)} training examples, fewer than "
                                     f"batch_size={cfg.batch_size}")
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

    @property
    def shapes(self) -> dict:
        if self.cfg.is_text:
            return {"vocab_size": 256, "max_seq_len": self.cfg.seq_len}
        return {"d_in": self.xtr.shape[1], "d_out": int(self.ytr.max()) + 1}


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def build(cfg: TrainConfig, shapes: dict) -> tuple[nn.Module, object]:
    """Model and plan for a config (the model is initialised by the plan with the run's seed)."""
    model = build_model(cfg.model, width=cfg.width, depth=cfg.depth, **shapes, **cfg.model_kwargs)
    model = model.to(getattr(torch, cfg.dtype))
    plan = parametrize(model, cfg.rule, seed=cfg.seed, optimizer=cfg.optimizer, base_width=cfg.base_width,
                       base_depth=cfg.base_depth, alpha=cfg.alpha, gamma=cfg.gamma, **cfg.plan_kwargs)
    if not cfg.train_io:
        for name, p in model.named_parameters():
            if plan[name].role in ("input", "readout"):
                p.requires_grad_(False)
    return model, plan


def train(cfg: TrainConfig, run_dir: str | Path | None = None, *, progress: bool = False,
          hook: Callable[[int, nn.Module], list[dict] | None] | None = None) -> TrainResult:
    """Train one run; resume from ``run_dir/ckpt.pt`` if it exists.

    ``hook(step, model)`` is called before every update and once after the last step (with ``step = steps``);
    the rows it returns join the run's tidy rows (e.g. a diagnostic measured during training).
    """
    t_start = time.perf_counter()
    data = _Batches(cfg)
    model, plan = build(cfg, data.shapes)
    opt = make_optimizer(model, plan, cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps, betas=cfg.betas,
                         momentum=cfg.momentum)  # momentum reaches SGD only
    ckpt = Path(run_dir) / "ckpt.pt" if run_dir is not None else None
    start, losses, rows, prior_wall = 0, [], [], 0.0
    if ckpt is not None and ckpt.exists():
        _, extra = load_checkpoint(ckpt, model, opt)
        start, losses, rows, prior_wall = extra["step"], extra["losses"], extra["rows"], extra.get("wall_s", 0.0)
    window = min(cfg.steps, max(cfg.min_window, math.ceil(cfg.window_frac * cfg.steps)))
    warmup = int(cfg.warmup_frac * cfg.steps)
    status, reason = "ok", ""
    model.train()
    schedule = getattr(model, "set_step", None)  # shaped "recover" schedules advance with the optimizer step
    for t in range(start, cfg.steps):
        if schedule is not None:
            schedule(t)
        if hook is not None:
            rows.extend(hook(t, model) or [])
        set_base_lr(opt, cfg.lr * min(1.0, (t + 1) / warmup) if warmup else cfg.lr)
        xb, yb = data.train(t)
        loss = _loss(model(xb.to(getattr(torch, cfg.dtype)) if not cfg.is_text else xb), yb)
        value = loss.item()
        losses.append(value)
        if not math.isfinite(value):
            status, reason = "diverged", f"non-finite loss at step {t}"
            rows.append({"step": t, "metric": "train_loss", "value": value})
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if t % cfg.log_every == 0 or t == cfg.steps - 1:
            rows.append({"step": t, "metric": "train_loss", "value": value})
        if cfg.entropy_every and cfg.is_text and (t % cfg.entropy_every == 0 or t == cfg.steps - 1):
            from deeplimit.diagnostics.signal import attention_entropy

            for layer, ent in enumerate(attention_entropy(model, data.eval()[0][0])):
                rows.append({"step": t, "metric": "attn_entropy", "value": ent, "layer": layer})
            if progress:
                print(f"step {t:5d}  loss {value:.4f}", flush=True)
        if ckpt is not None and cfg.checkpoint_every and (t + 1) % cfg.checkpoint_every == 0 and t + 1 < cfg.steps:
            save_checkpoint(ckpt, model, plan, opt, step=t + 1, losses=losses, rows=rows,
                            wall_s=prior_wall + time.perf_counter() - t_start)
    steps_done = len(losses)
    if hook is not None and status == "ok":
        rows.extend(hook(steps_done, model) or [])
    step0 = losses[0]
    window_loss = sum(losses[-window:]) / len(losses[-window:]) if status == "ok" else math.inf
    if status == "ok" and not window_loss <= step0:
        status, reason = "diverged", f"final-window loss {window_loss:.4g} above the step-0 loss {step0:.4g}"
    eval_loss = math.nan
    if status == "ok":
        eval_loss = evaluate(model, data, cfg)
        rows.append({"step": steps_done, "metric": "eval_loss", "value": eval_loss})
    rows.append({"step": steps_done, "metric": "window_loss", "value": window_loss})
    wall = prior_wall + time.perf_counter() - t_start
    if ckpt is not None:
        save_checkpoint(ckpt, model, plan, opt, step=steps_done, losses=losses, rows=rows, wall_s=wall)
    return TrainResult(status, window_loss, eval_loss, step0, steps_done, wall, rows, reason)


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
