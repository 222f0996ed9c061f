"""Sweep objectives backed by the real trainer: a grid point (flat dict) → TrainConfig → run → TrialResult.

A point's keys are ``TrainConfig`` fields (``width``, ``depth``, ``steps``, ``seed``, ``data``, …) plus:

* ``preset`` (alias of ``rule``) and ``log2_lr`` (``lr = 2**log2_lr``);
* model options (``activation``, ``block_depth``, ``block``, ``mean_subtract``, ``pre_ln``, ``n_heads``,
  ``norm``, ``attention``, …) that go to ``model_kwargs``;
* plan options (``block_mult``, ``input_mult``, ``output_mult``, ``eps_scope``, ``weight_decay_mode``,
  ``readout_zero_init``, σ's) that go to ``plan_kwargs``;
* ``experiment`` (a label, ignored by training).

Unknown keys are errors that list the accepted names, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.train import TrainConfig, train

MODEL_KEYS = {
    "activation", "block_depth", "block", "mean_subtract", "pre_ln", "bias",  # MLP-ResNet
    "n_heads", "mlp_ratio", "norm", "attention", "logit_scale", "attn_mult", "tau0", "tau_mode", "shaping",
    "recover_steps", "c_plus", "c_minus", "residual", "residual_gamma", "residual_trainable",
    "zero_query_init",  # transformers
}
PLAN_KEYS = {"block_mult", "input_mult", "output_mult", "sigma_in", "sigma_hidden", "sigma_out", "sigma_emb",
             "readout_zero_init", "decay_vectors", "eps_scope", "weight_decay_mode", "muon_lr_ratio"}
IGNORED = {"experiment", "variant"}
TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_kwargs", "plan_kwargs"}


def config_from_point(point: dict[str, Any]) -> TrainConfig:
    """Map a flat grid point to a :class:`TrainConfig` (see the module docstring for the keys)."""
    train_kw: dict[str, Any] = {}
    model_kw: dict[str, Any] = {}
    plan_kw: dict[str, Any] = {}
    for key, value in point.items():
        if key == "preset":
            train_kw["rule"] = value
        elif key == "log2_lr":
            train_kw["lr"] = 2.0 ** float(value)
        elif key in TRAIN_KEYS:
            train_kw[key] = value
        elif key in MODEL_KEYS:
            model_kw[key] = value
        elif key in PLAN_KEYS:
            plan_kw[key] = value
        elif key not in IGNORED:
            raise DeeplimitError(f"unknown sweep parameter {key!r}; accepted: preset, log2_lr, "
                                 f"{sorted(TRAIN_KEYS | MODEL_KEYS | PLAN_KEYS | IGNORED)}")
    if "lr" in point and "log2_lr" in point:
        raise DeeplimitError("give either lr or log2_lr, not both")
    return TrainConfig(model_kwargs=model_kw, plan_kwargs=plan_kw, **train_kw)


def train_objective(point: dict[str, Any], context: Any):
    """Objective for :mod:`deeplimit.sweep.engine`: trains one run, resumable from ``context.run_dir``."""
    from deeplimit.sweep.engine import TrialResult

    cfg = config_from_point(point)
    if cfg.checkpoint_every == 0:
        cfg.checkpoint_every = max(50, cfg.steps // 4)  # a killed worker loses at most a quarter of a run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule warnings are expected in ablation grids
        res = train(cfg, context.run_dir)
    value = res.window_loss if res.status == "ok" else math.inf
    return TrialResult(value=value, status=res.status, rows=res.rows,
                       info={"eval_loss": res.eval_loss, "step0_loss": res.step0_loss, "steps": res.steps_done,
                             "train_wall_s": res.wall_s, "reason": res.reason})
