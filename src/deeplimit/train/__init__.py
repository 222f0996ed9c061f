"""A small, honest trainer: config → model → plan → optimizer → loop → tidy rows.

``train(TrainConfig(...), run_dir=...)`` trains one run and returns a :class:`TrainResult`; a run that diverges
is a result (``status="diverged"``), never an exception. The package, by concern:

    config.py       TrainConfig (checked on construction, the rule resolved once, the fingerprint),
                    config_from_point (a flat sweep point / CLI flags → config), family_defaults
    models.py       where the model comes from: a built-in name, hf:TYPE (a Hugging Face causal LM from a
                    small config) or pkg.module:factory / path/to/file.py:factory (load_factory)
    batches.py      datasets read once per process, the batch of step t as a pure function of (seed, t),
                    the memory guard (a model or batch too large is refused before allocation)
    checkpoint.py   the run folder: checkpoint save / load keyed by the fingerprint, the output tables
    loop.py         build (model + plan), train (the loop, warm-up through dl.scheduler, Ctrl-C as a clean
                    stop, resume), evaluate, train_and_save

Data flows one way: config → batches (shapes) → build (models) → optimizer → loop → checkpoint → TrainResult.
"""

import deeplimit.train.batches as _batches
from deeplimit.scaling.rules import OPTIMIZERS
from deeplimit.train.batches import (
    Batches,
    cached_image_data,
    cached_text_data,
    check_run_fits,
    cross_entropy,
)
from deeplimit.train.checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, RunFolder
from deeplimit.train.config import (
    BOOL_KEYS,
    IGNORED_KEYS,
    MAX_BATCH,
    MAX_EVAL_TOKENS,
    MAX_SEED,
    MAX_STEPS,
    MODEL_KEYS,
    PLAN_BOOL_KEYS,
    PLAN_KEYS,
    TEXT_DEFAULTS,
    TEXT_MODELS,
    TRAIN_KEYS,
    TrainConfig,
    config_from_point,
    family_defaults,
)
from deeplimit.train.loop import TrainingInterrupted, TrainResult, build, evaluate, train, train_and_save

# The per-process data caches, as before the split (a test clears them to act as a new process).
_cached_image_data, _cached_text_data = _batches._cached_image_data, _batches._cached_text_data

__all__ = [
    "BOOL_KEYS", "CHECKPOINT", "CHECKPOINT_FORMAT", "IGNORED_KEYS", "MAX_BATCH", "MAX_EVAL_TOKENS", "MAX_SEED",
    "MAX_STEPS", "MODEL_KEYS", "OPTIMIZERS", "PLAN_BOOL_KEYS", "PLAN_KEYS", "TEXT_DEFAULTS", "TEXT_MODELS",
    "TRAIN_KEYS", "Batches", "RunFolder", "TrainConfig", "TrainResult", "TrainingInterrupted", "build",
    "cached_image_data", "cached_text_data", "check_run_fits", "config_from_point", "cross_entropy", "evaluate",
    "family_defaults", "train", "train_and_save",
]
