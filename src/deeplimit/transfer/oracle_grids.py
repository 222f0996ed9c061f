"""Sweep grids for the transfer oracle: the training horizon (steps) and the batch size as axes, beside the
model size and the LR, on the MLP-ResNet (Fashion-MNIST) and the byte-level Pre-LN transformer LM.

``deeplimit sweep create --grid oracle-mlp --set tier=quick`` builds them (registered in
:mod:`deeplimit.transfer.grids`); ``deeplimit predict`` then fits η* (and B*) against depth and steps on the
sweep's table and ``--evaluate`` scores the forecast at the largest horizon, which the fit never sees. The
largest ``steps`` value of each tier is 8× (or more) past the geometric middle of the others, so the held-out
check is an extrapolation, as issue 24 asks.

Seeds default to the protocol's *pilot* set: these grids are exploratory, not one of the frozen claims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.experiments import OBJECTIVE, _tier, customise, log2_grid

__all__ = ["ORACLE_GRIDS", "oracle_mlp", "oracle_lm"]


def _seeded(spec: SweepSpec, seed_set: str) -> SweepSpec:
    from deeplimit.protocol import seed_values

    idx = list(spec.axes["seed"])
    values = seed_values(max(idx) + 1, seed_set)
    return replace(spec, axes={**spec.axes, "seed": [values[i] for i in idx]})


def oracle_mlp(tier: str = "quick", seed_set: str = "pilot", **overrides: Any) -> SweepSpec:
    """MLP-ResNet on Fashion-MNIST under Depth-μP: axes depth × steps × batch_size × log2_lr × seed.

    quick (the pilot validation, ~10 CPU-minutes): depth 2, steps 32…256 and 1024 held out, one batch size;
    standard: depth 2…8 and 32 held out (16× the smallest), steps 100…400 and 3200 (8×), batch 32…512."""
    depths, steps, batches, lrs, seeds = _tier(
        tier,
        ([2], [8, 16, 32], [32], log2_grid(-9, -5, 1), [0]),
        ([2], [32, 64, 128, 256, 1024], [64], log2_grid(-10, -2, 1), [0, 1]),
        ([2, 4, 8, 32], [100, 200, 400, 3200], [32, 128, 512], log2_grid(-12, -2, 1), [0, 1, 2]),
        ([2, 4, 8, 32], [100, 200, 400, 3200], [32, 128, 512], log2_grid(-11, -3, 1), [0, 1]))
    spec = SweepSpec(
        axes={"depth": depths, "steps": steps, "batch_size": batches, "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "oracle_mlp", "model": "mlp-resnet", "preset": "depth_mup", "width": 32,
               "base_width": 32, "base_depth": 2, "train_io": True, "data": "fashion-mnist", "activation": "relu"},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: MLP-ResNet (Depth-muP), LR x horizon x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set)


def oracle_lm(tier: str = "quick", seed_set: str = "pilot", **overrides: Any) -> SweepSpec:
    """Byte-level Pre-LN transformer (CompleteP and μP): axes preset × depth × steps × batch_size × log2_lr ×
    seed. quick: depth 2, 4; steps 50…200 and 800 held out; batch 8, 16, 32. standard: depth 2…8 and 32,
    steps 100…400 and 3200."""
    presets, depths, steps, batches, lrs, seeds, data = _tier(
        tier,
        (["completep"], [1], [10, 20, 40], [8], log2_grid(-8, -5, 1), [0], "stdlib"),
        (["completep", "mup"], [2, 4], [50, 100, 200, 800], [8, 16, 32], log2_grid(-9, -3, 1), [0], "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [100, 200, 400, 3200], [8, 16, 32, 64], log2_grid(-10, -2, 0.5),
         [0, 1, 2], "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [100, 200, 400, 3200], [8, 16, 32], log2_grid(-9, -3, 1), [0, 1],
         "shakespeare"))
    spec = SweepSpec(
        axes={"preset": presets, "depth": depths, "steps": steps, "batch_size": batches, "log2_lr": lrs,
              "seed": seeds},
        fixed={"experiment": "oracle_lm", "model": "transformer", "width": 64, "base_width": 64, "base_depth": 2,
               "n_heads": 4, "optimizer": "adamw", "seq_len": 64, "warmup_frac": 0.05, "data": data,
               "min_window": 5},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: byte-level Pre-LN LM, LR x horizon x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set)


ORACLE_GRIDS: dict[str, Callable[..., SweepSpec]] = {"oracle-mlp": oracle_mlp, "oracle-lm": oracle_lm}
