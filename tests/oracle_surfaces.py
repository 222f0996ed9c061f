"""Synthetic tables of runs with known optima, for the transfer-oracle tests (no training: a loss surface).

The LR curve is asymmetric like real ones (steeper on the high-LR side) and has its minimum exactly at the
true log2 η*; with a batch axis, B* has its own law and the LR optimum moves by half an octave per octave of
batch away from B*, so η* must be read at B*, not at the best grid point of some other batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def lr_curve(log2_lr: np.ndarray, opt: float) -> np.ndarray:
    """Excess loss of a run at ``log2_lr`` when the optimum is ``opt``: 0.05 d² + 0.02 max(d, 0)³."""
    d = np.asarray(log2_lr, float) - opt
    return 0.05 * d * d + 0.02 * np.maximum(d, 0.0) ** 3


def law(a: float, **b: float) -> Callable[..., float]:
    """``log2 y = a + Σ b[x] log2 x`` as a function of the sizes."""
    return lambda **sizes: a + sum(e * math.log2(sizes[k]) for k, e in b.items())


def make_runs(groups: Sequence[dict], opt_lr: Callable[..., float], *, opt_batch: Callable[..., float] | None = None,
              batches: Sequence[float] = (), seeds: int = 1, noise: float = 0.0, step: float = 0.5,
              half_span: float = 4.0, jitter: float = 0.0, rng: np.random.Generator | None = None,
              base: float = 3.0) -> tuple[pd.DataFrame, list[float]]:
    """One row per run (columns: the size variables, ``lr``, ``loss``, ``seed`` and ``bs`` with batches).

    Per group the true log2 η* is ``opt_lr(**sizes)`` plus N(0, ``jitter``) (scatter around the law); the LR
    grid is the lattice of ``step`` covering ±``half_span`` octaves around it; loss noise N(0, ``noise``) per run.
    Returns the table and each group's true log2 η* (at B* when batches are swept)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    rows, truth = [], []
    for g in groups:
        opt = opt_lr(**g) + (rng.normal(0.0, jitter) if jitter else 0.0)
        truth.append(opt)
        grid = np.arange(math.floor((opt - half_span) / step), math.ceil((opt + half_span) / step) + 1) * step
        for seed in range(seeds):
            for bs in (batches or [None]):
                shift, extra = 0.0, 0.0
                if bs is not None:
                    db = math.log2(bs) - opt_batch(**g)
                    shift, extra = 0.5 * db, 0.02 * db * db
                loss = base + lr_curve(grid, opt + shift) + extra + rng.normal(0.0, noise, len(grid)) * (noise > 0)
                for x, y in zip(grid, loss):
                    row = {**g, "lr": 2.0 ** x, "loss": y, "seed": seed}
                    if bs is not None:
                        row["bs"] = bs
                    rows.append(row)
    return pd.DataFrame(rows), truth


def grid_of(**values: Sequence[float]) -> list[dict]:
    """Every combination of the size variables' values, as a list of dicts."""
    out: list[dict] = [{}]
    for k, vs in values.items():
        out = [{**o, k: float(v)} for o in out for v in vs]
    return out
