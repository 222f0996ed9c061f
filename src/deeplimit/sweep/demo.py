"""Cheap real objectives for smoke tests, demos and benchmarks of the sweep engine.

``quadratic`` trains a linear model with noisy gradient descent on a quadratic whose curvature (and
gradient noise) grow with ``depth`` — a stand-in for a residual network whose sharpness grows with
depth. With ``preset="sp"`` the raw learning rate is used, so the optimal LR falls as 1/depth (η*
drifts by −1 log2 unit per doubling); with ``preset="depth_scaled"`` the LR is divided by depth, which
makes the run exactly depth-invariant, so η* transfers. The run follows the sweep protocol of
depth-mup spec §11.1: metric = mean loss over the last 10% of steps, non-finite or final-window loss
above the step-0 loss → ``status="diverged"``.

``burn`` does a fixed amount of single-thread CPU work (about 1 s for ``work=2e7``) and is used by
``benchmarks/bench_sweep.py`` to measure throughput and per-trial bookkeeping.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from deeplimit.sweep.engine import TrialContext, TrialResult
from deeplimit.sweep.grid import SweepSpec, log2_grid


def _lr(point: dict[str, Any]) -> float:
    if "lr" in point:
        return float(point["lr"])
    return 2.0 ** float(point["log2_lr"])


def quadratic(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """Noisy gradient descent on a quadratic whose curvature and noise grow ∝ depth; see the module doc."""
    depth = int(point.get("depth", 1))
    dim = int(point.get("width", 16))
    steps = int(point.get("steps", 200))
    noise = float(point.get("noise", 0.3))
    preset = str(point.get("preset", "sp"))
    if preset not in ("sp", "depth_scaled"):
        raise ValueError(f"demo preset must be 'sp' or 'depth_scaled', got {preset!r}")
    lr = _lr(point)
    if preset == "depth_scaled":
        lr = lr / depth
    # The problem is fixed across seeds and LRs (common random numbers); the seed drives the noise only.
    # Curvature and gradient noise both scale with depth (the "sharpness grows with depth" stand-in);
    # the reported loss is the depth-free ½·mean(u·(w − w*)²), so with lr/depth the dynamics, hence the
    # whole loss curve, are exactly depth-invariant, and with the raw lr η* ∝ 1/depth.
    problem = np.random.default_rng(12345 + dim)
    u = problem.uniform(0.2, 1.0, size=dim)
    w_star = problem.normal(size=dim)
    rng = np.random.default_rng(int(point.get("seed", 0)))
    w = np.zeros(dim)
    rows: list[dict[str, Any]] = []
    losses = np.empty(steps)
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(steps):
            diff = w - w_star
            loss = 0.5 * float(np.mean(u * diff * diff))
            losses[step] = loss
            if step % max(1, steps // 20) == 0 or step == steps - 1:
                rows.append({"step": step, "metric": "train_loss", "value": loss})
            if not math.isfinite(loss):
                losses[step:] = math.inf
                break
            grad = depth * (u * diff + noise * rng.normal(size=dim))
            w = w - lr * grad
    window = max(1, steps // 10)
    value = float(np.mean(losses[-window:]))
    diverged = not math.isfinite(value) or value > losses[0]
    return TrialResult(value=math.inf if diverged else value, status="diverged" if diverged else "ok",
                       rows=rows, info={"objective_s": time.perf_counter() - t0, "effective_lr": lr})


def burn(point: dict[str, Any], context: TrialContext) -> TrialResult:
    """Fixed single-thread CPU work (``work`` loop iterations); value is a smooth function of the LR."""
    work = int(float(point.get("work", 2e7)))
    t0 = time.perf_counter()
    acc = 0
    for i in range(work):
        acc += i & 7
    elapsed = time.perf_counter() - t0
    x = float(point.get("log2_lr", 0.0))
    return TrialResult(value=(x + 8.0) ** 2 + 1.0 + 1e-12 * acc,
                       rows=[{"step": 0, "metric": "objective_s", "value": elapsed}],
                       info={"objective_s": elapsed})


def demo_quadratic_spec(depths: list[int] | None = None, seeds: int = 2, steps: int = 200,
                        lr_step: float = 1.0) -> SweepSpec:
    """The ``demo-quadratic`` preset: both demo presets × depths × log2 LR × seeds."""
    return SweepSpec(
        axes={"preset": ["sp", "depth_scaled"], "depth": depths or [1, 4, 16],
              "log2_lr": log2_grid(-11.0, 1.0, lr_step), "seed": list(range(seeds))},
        fixed={"width": 16, "steps": steps},
        objective="deeplimit.sweep.demo:quadratic",
        metric="train_loss_final",
        description="demo: noisy GD on a depth-scaled quadratic; 'sp' shifts, 'depth_scaled' transfers",
    )
