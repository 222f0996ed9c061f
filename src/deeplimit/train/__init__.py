"""A small, honest trainer: config → model → plan → optimizer → loop → tidy rows.

``train(TrainConfig(...), run_dir=...)`` trains one run and returns a :class:`TrainResult`; a run that diverges
is a result (``status="diverged"``), never an exception. The package, by concern:

    config.py       TrainConfig (checked on construction, every field before the models are imported; the
                    rule resolved once; the fingerprint),
                    config_from_point (a flat sweep point / CLI flags → config), family_defaults
    models.py       where the model comes from: a built-in name, hf:TYPE (a Hugging Face causal LM from a
                    small config) or pkg.module:factory / path/to/file.py:factory (load_factory)
    model_names.py  which of the three a model string names (is_hf, is_factory, hf_type), without torch
    batches.py      datasets read once per process, the batch of step t as a pure function of (seed, t),
                    the memory guard (a model or batch too large is refused before allocation)
    checkpoint.py   the run folder: checkpoint save / load keyed by the fingerprint, the output tables
    loop.py         build (model + plan), train (the loop, warm-up through dl.scheduler, Ctrl-C as a clean
                    stop, resume), evaluate, train_and_save

Data flows one way: config → batches (shapes) → build (models) → optimizer → loop → checkpoint → TrainResult.

The names below are imported on first use (PEP 562): :mod:`.config` loads no torch, so a command line is checked
(and a bad one refused) before torch is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from deeplimit._lazy import lazy_names as _lazy_names

if _TYPE_CHECKING:  # never run: the modules _LAZY reads from, for readers of the source (the import-graph tests and
    # the report's code fingerprint follow imports, not strings); a test checks that the two lists agree
    from deeplimit.scaling import rules  # noqa: F401
    from deeplimit.train import batches, checkpoint, config, loop  # noqa: F401

_LAZY = {name: module for module, names in {
    "deeplimit.scaling.rules": ("OPTIMIZERS",),
    "deeplimit.train.batches": ("Batches", "cached_image_data", "cached_text_data", "check_run_fits",
                                "cross_entropy"),
    "deeplimit.train.checkpoint": ("CHECKPOINT", "CHECKPOINT_FORMAT", "RunFolder"),
    "deeplimit.train.config": ("BOOL_KEYS", "IGNORED_KEYS", "MAX_BATCH", "MAX_EVAL_TOKENS", "MAX_SEED", "MAX_STEPS",
                               "MODEL_KEYS", "PLAN_BOOL_KEYS", "PLAN_KEYS", "TEXT_DEFAULTS", "TEXT_MODELS",
                               "TRAIN_KEYS", "TrainConfig", "config_from_point", "family_defaults"),
    "deeplimit.train.loop": ("TrainingInterrupted", "TrainResult", "build", "evaluate", "train", "train_and_save"),
}.items() for name in names}
# The per-process data caches under their names from before the split (a test clears them to act as a new process).
_ALIASES = {"_cached_image_data": ("deeplimit.train.batches", "_cached_image_data"),
            "_cached_text_data": ("deeplimit.train.batches", "_cached_text_data")}

__all__ = sorted(_LAZY)


# ``dir()``: the public API only (the names in ``__all__``), as ``dir(deeplimit)``
__getattr__, __dir__ = _lazy_names(__name__, _LAZY, globals(), aliases=_ALIASES, public=__all__)
