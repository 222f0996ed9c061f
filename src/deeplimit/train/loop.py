"""The training loop: config → model → plan → optimizer → steps → tidy rows, with Ctrl-C as a clean stop.

``train(TrainConfig(...), run_dir=...)`` trains one run and returns a :class:`TrainResult`. A run that
diverges is a *result* (``status="diverged"``), never an exception.

Checkpoints and resume. With a ``run_dir`` the run checkpoints (weights, optimizer state, losses, rows, the
config and its fingerprint) to ``run_dir/ckpt.pt`` — by default every quarter of the run or every 30 s of
wall time, whichever comes first, but not within :data:`MIN_DEFAULT_CHECKPOINT_S` of the previous save
(``checkpoint_every``/``checkpoint_seconds`` change that) — at the end, and on Ctrl-C.
Called again with the *same* config it resumes from the last checkpoint and reaches bit-identical losses (the
batch of step t is a pure function of ``(seed, t)``). A checkpoint of a *different* config (another LR,
other steps, other data, an edited data file…) is refused with an error naming the differing fields:
``fresh=True`` (``deeplimit train --fresh``) discards it, or use another folder. A finished run is not
re-trained: its stored result is returned. Checkpoints are loaded with ``weights_only=True``.

Metric (depth-mup spec §11.1): mean train loss over the last 10% of steps (at least 50, or the whole run
if shorter); divergence = a non-finite loss, or a final-window loss above the step-0 loss (or, with
``diverge_patience``, a loss above the step-0 loss for that many consecutive steps after the warm-up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from deeplimit.diagnostics.coordinates import logits_of
from deeplimit.errors import DeeplimitError
from deeplimit.scaling.apply import parametrize
from deeplimit.scaling.declared import model_size
from deeplimit.scaling.optim import ScaledScheduler, make_optimizer, scheduler
from deeplimit.scaling.plan import Plan
from deeplimit.train.batches import Batches, cached_text_data, check_run_fits, cross_entropy
from deeplimit.train.checkpoint import RunFolder, check_output_folder, restore, write_outputs
from deeplimit.train.config import TrainConfig
from deeplimit.train.models import check_causal, make_model

Hook = Callable[[int, nn.Module], "list[dict] | None"]

# The default interval (checkpoint_every=0) skips a quarter of the run reached less than this long after the last
# save: a run that short is re-run faster than it writes its mid-run checkpoints (a sweep of sub-second runs, such
# as the smoke report's, spent more time saving them than training between them). The final save and the one on
# Ctrl-C are always written; an explicit checkpoint_every is kept exactly.
MIN_DEFAULT_CHECKPOINT_S = 1.0


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
# Model and plan


def build(cfg: TrainConfig, shapes: dict) -> tuple[nn.Module, Plan]:
    """Model and plan for a config (the model is initialised by the plan with the run's seed).

    ``shapes``: the sizes the data fixes (``d_in``/``d_out`` for images, ``vocab_size``/``max_seq_len`` for text).
    The plan comes from the rule resolved once by the config (:attr:`TrainConfig.resolved_rule`).
    """
    check_run_fits(cfg, shapes)
    try:
        model = make_model(cfg.model, cfg.width, cfg.depth, shapes, cfg.model_kwargs)
        model = model.to(getattr(torch, cfg.dtype))
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise DeeplimitError(f"out of memory building {cfg.model} at width {cfg.width}, depth {cfg.depth} "
                             f"({exc.__class__.__name__}); lower width or depth") from None
    except RuntimeError as exc:
        if "alloc" not in str(exc).lower():
            raise
        raise DeeplimitError(f"out of memory building {cfg.model} at width {cfg.width}, depth {cfg.depth} "
                             f"({str(exc).splitlines()[0][:160]}); lower width or depth") from None
    if cfg.is_text and not cfg.is_builtin:
        check_causal(model, cfg.model, shapes["vocab_size"], cfg.seq_len)
    # a factory's model need not declare its size: the width and depth it was built with are its size
    declared = model_size(model)
    sizes = {} if cfg.is_builtin else {k: v for k, v, d in (("width", cfg.width, declared[0]),
                                                              ("depth", cfg.depth, declared[1])) if d is None}
    plan = parametrize(model, cfg.resolved_rule, seed=cfg.seed, optimizer=cfg.optimizer, base_width=cfg.base_width,
                       base_depth=cfg.base_depth, **sizes, **cfg.plan_options)
    if not cfg.train_io:
        for name, p in model.named_parameters():
            if plan[name].role in ("input", "readout"):
                p.requires_grad_(False)
    return model, plan


def _optimizer(cfg: TrainConfig, model: nn.Module, plan: Plan) -> torch.optim.Optimizer:
    timed = cfg.wd_timescale is not None or cfg.wd_timescale_fraction is not None
    return make_optimizer(model, plan, cfg.lr, weight_decay=cfg.weight_decay if cfg.weight_decay or not timed else None,
                          eps=cfg.eps, betas=cfg.betas, momentum=cfg.momentum or None,  # SGD's or Muon's momentum
                          wd_timescale=cfg.wd_timescale, wd_timescale_fraction=cfg.wd_timescale_fraction,
                          total_steps=cfg.steps if cfg.wd_timescale_fraction is not None else None)


def _warmup(opt: torch.optim.Optimizer, cfg: TrainConfig, warmup: int, start: int) -> ScaledScheduler | None:
    """Linear warm-up of the base LR over ``warmup`` steps, then constant, through :func:`deeplimit.scheduler`
    (each group keeps its plan factor: ``lr_g(t) = lr · min(1, (t + 1)/warmup) · lr_scale_g``). Positioned at
    step ``start`` (a resumed run continues its schedule); ``None`` without a warm-up (the LR never changes)."""
    if not warmup:
        return None

    def linear(shadow: torch.optim.Optimizer) -> LambdaLR:
        for g in shadow.param_groups:
            g["lr"] = cfg.lr  # the configured base LR itself, not lr·s/s read back from the groups
        return LambdaLR(shadow, lambda i: min(1.0, (start + i + 1) / warmup))

    return scheduler(opt, linear)


# ------------------------------------------------------------------------------------------------------
# Ctrl-C and progress


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


# ------------------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig, run_dir: str | Path | None = None, *, fresh: bool = False, progress: bool = False,
          hook: Hook | None = None) -> TrainResult:
    """Train one run; with ``run_dir``, checkpoint there and resume a checkpoint of the same config.

    ``fresh=True`` discards a checkpoint already in ``run_dir``. ``progress=True`` shows a progress bar (step,
    loss, rate, ETA) on stderr. ``hook(step, model)`` is called before every update and once after the last
    step (with ``step = steps``); the rows it returns join the run's tidy rows (e.g. a diagnostic measured
    during training). Ctrl-C stops at a step boundary, saves a checkpoint (with ``run_dir``) and raises
    :class:`TrainingInterrupted`.
    """
    t_start = time.perf_counter()
    folder = RunFolder.open(run_dir, cfg, fresh=fresh)
    resumed = folder.resumed if folder is not None else None
    if resumed is not None and resumed.result is not None:  # finished under this config: the stored result
        return TrainResult(**{**resumed.result, "rows": resumed.rows, "resumed_from": resumed.result["steps_done"]})

    data = Batches(cfg)
    model, plan = build(cfg, data.shapes)
    if folder is not None:  # only now, so a run refused for its data or size leaves nothing behind
        folder.start(plan)
    opt = _optimizer(cfg, model, plan)
    start, losses, rows, prior_wall = 0, [], [], 0.0
    if resumed is not None:
        restore(resumed, model, opt)
        start, prior_wall, losses, rows = resumed.step, resumed.wall_s, resumed.losses, resumed.rows
    window = min(cfg.steps, max(cfg.min_window, math.ceil(cfg.window_frac * cfg.steps)))
    warmup = int(cfg.warmup_frac * cfg.steps)
    lr_schedule = _warmup(opt, cfg, warmup, start)
    every = cfg.checkpoint_every or max(1, cfg.steps // 4)
    floor_s = 0.0 if cfg.checkpoint_every else MIN_DEFAULT_CHECKPOINT_S
    status, reason = "ok", ""
    # consecutive steps (after the warm-up) with a loss above step 0's; recounted from the losses on resume
    above = _steps_above_step0(losses, warmup)
    model.train()
    schedule = getattr(model, "set_step", None)  # shaped "recover" schedules advance with the optimizer step
    dtype = getattr(torch, cfg.dtype)
    probe = data.probe() if cfg.entropy_every and cfg.is_text else None

    def save(step: int, result: dict | None = None) -> None:
        folder.save(model, opt, step=step, losses=losses, rows=rows, result=result,
                    wall_s=prior_wall + time.perf_counter() - t_start)

    last_save = time.monotonic()
    bar = _progress_bar(cfg, start, progress)
    try:
        with _graceful_sigint() as stop:
            for t in range(start, cfg.steps):
                if stop.requested:
                    if folder is not None:
                        save(t)
                    raise TrainingInterrupted(t, folder.folder if folder is not None else None)
                if schedule is not None:
                    schedule(t)
                if hook is not None:
                    rows.extend(hook(t, model) or [])
                xb, yb = data.train(t)
                loss = cross_entropy(logits_of(model(xb.to(dtype) if not cfg.is_text else xb)), yb)
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
                if lr_schedule is not None:
                    lr_schedule.step()
                if t % cfg.log_every == 0 or t == cfg.steps - 1:
                    rows.append({"step": t, "metric": "train_loss", "value": value})
                    bar.set_postfix_str(f"loss {value:.4f}", refresh=False)
                if probe is not None and (t % cfg.entropy_every == 0 or t == cfg.steps - 1):
                    from deeplimit.diagnostics.signal import layer_attention_entropy

                    for layer, ent in enumerate(layer_attention_entropy(model, probe)):
                        rows.append({"step": t, "metric": "attn_entropy", "value": ent, "layer": layer})
                bar.update(1)
                since = time.monotonic() - last_save
                if folder is not None and t + 1 < cfg.steps and since >= floor_s and (
                        (t + 1) % every == 0 or since >= cfg.checkpoint_seconds):
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
    if folder is not None:
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
def evaluate(model: nn.Module, data: Batches, cfg: TrainConfig) -> float:
    """Mean held-out loss over the config's evaluation batches (NaN when there are none)."""
    batches = data.eval()
    if not batches:
        return math.nan
    model.eval()
    dtype = getattr(torch, cfg.dtype)
    total = sum(cross_entropy(logits_of(model(x if cfg.is_text else x.to(dtype))), y).item() for x, y in batches)
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
        check_output_folder(out)
    res = train(cfg, run_dir, fresh=fresh, progress=progress)
    summary = res.summary()
    if cfg.is_text:
        summary["unigram_entropy_nats"] = cached_text_data(cfg.data, cfg.data_dir).unigram_entropy("train")
    if out is not None:
        write_outputs(out, res.rows, {"config": cfg.to_dict(), **summary})
    return summary
