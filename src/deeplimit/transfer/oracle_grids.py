"""Sweep grids for the transfer oracle: the training horizon (a data budget, ``samples``) and the batch size as
axes, beside the model size and the LR, on the MLP-ResNet (Fashion-MNIST) and the byte-level Pre-LN LM.

``deeplimit sweep create --grid oracle-mlp --set tier=quick`` builds them (registered in
:mod:`deeplimit.transfer.grids`); ``deeplimit predict`` then fits η* (and B*) against depth and samples on the
sweep's table and ``--evaluate`` scores the forecast at the largest budget, which the fit never sees. The
largest ``samples`` value of the standard tier is 8× past the geometric middle of the others (4× in the
CPU-sized quick tier), so the held-out check is an extrapolation, as issue 24 asks.

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
    """MLP-ResNet on Fashion-MNIST under Depth-μP: axes depth × samples × batch_size × log2_lr × seed.

    ``samples`` is the data budget (images seen; steps = samples / batch_size, see
    :func:`~deeplimit.transfer.objectives.with_budget`), so the batch axis trades steps for batch at a fixed
    budget, as B* is defined. quick (the pilot of docs/oracle.md: 84 runs, ~4 minutes on two busy cores):
    depth 2, samples 2048 … 8192 fitted and 16384 held out, batch 8, 32, 128; standard: depth 2 … 8 and 32
    held out (16× the smallest), samples 8192 … 32768 and 262144 (8× the largest fitted), batch 16, 64, 256."""
    depths, samples, batches, lrs, seeds = _tier(
        tier,
        ([2], [256, 512, 1024], [16, 32], log2_grid(-10, -7, 1), [0]),
        ([2], [2048, 4096, 8192, 16384], [8, 32, 128], log2_grid(-13, -7, 1), [0]),
        ([2, 4, 8, 32], [8192, 16384, 32768, 262144], [16, 64, 256], log2_grid(-14, -5, 0.5), [0, 1, 2]),
        ([2, 4, 8, 32], [8192, 16384, 32768, 262144], [16, 64, 256], log2_grid(-14, -5, 1), [0, 1]))
    spec = SweepSpec(
        axes={"depth": depths, "samples": samples, "batch_size": batches, "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "oracle_mlp", "model": "mlp-resnet", "rule": "depth_mup", "width": 32,
               "base_width": 32, "base_depth": 2, "train_io": True, "data": "fashion-mnist", "activation": "relu"},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: MLP-ResNet (Depth-muP), LR x data budget x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set)


def oracle_lm(tier: str = "quick", seed_set: str = "pilot", **overrides: Any) -> SweepSpec:
    """Byte-level Pre-LN transformer (CompleteP and μP): axes rule × depth × samples × batch_size × log2_lr ×
    seed; ``samples`` counts sequences of 64 bytes (tokens = 64 × samples). quick: depth 2, 4; samples 800 …
    3200 fitted and 12800 held out (50 … 200 and 800 steps at batch 16); batch 8, 16, 32. standard: depth 2 … 8
    and 32, samples 1600 … 6400 and 51200."""
    rules, depths, samples, batches, lrs, seeds, data = _tier(
        tier,
        (["completep"], [1], [80, 160, 320], [8], log2_grid(-8, -5, 1), [0], "stdlib"),
        (["completep", "mup"], [2, 4], [800, 1600, 3200, 12800], [8, 16, 32], log2_grid(-9, -3, 1), [0],
         "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [1600, 3200, 6400, 51200], [8, 16, 32, 64], log2_grid(-10, -2, 0.5),
         [0, 1, 2], "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [1600, 3200, 6400, 51200], [8, 16, 32], log2_grid(-9, -3, 1), [0, 1],
         "shakespeare"))
    spec = SweepSpec(
        axes={"rule": rules, "depth": depths, "samples": samples, "batch_size": batches, "log2_lr": lrs,
              "seed": seeds},
        fixed={"experiment": "oracle_lm", "model": "transformer", "width": 64, "base_width": 64, "base_depth": 2,
               "n_heads": 4, "optimizer": "adamw", "seq_len": 64, "warmup_frac": 0.05, "data": data,
               "min_window": 5},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: byte-level Pre-LN LM, LR x data budget x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set)


ORACLE_GRIDS: dict[str, Callable[..., SweepSpec]] = {"oracle-mlp": oracle_mlp, "oracle-lm": oracle_lm}
