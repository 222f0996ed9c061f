"""A cheap real LR-transfer objective for smoke tests and demos (the ``demo-quadratic`` grid).

``quadratic`` trains a linear model with noisy gradient descent on a quadratic whose curvature (and
gradient noise) grow with ``depth`` — a stand-in for a residual network whose sharpness grows with
depth. With ``rule="sp"`` the raw learning rate is used, so the optimal LR falls as 1/depth (η*
drifts by −1 log2 unit per doubling); with ``rule="depth_scaled"`` the LR is divided by depth, which
makes the run exactly depth-invariant, so η* transfers. The run follows the sweep protocol of
depth-mup spec §11.1: metric = mean loss over the last 10% of steps, non-finite or final-window loss
above the step-0 loss → ``status="diverged"``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.sweep.trial import TrialContext, TrialResult
from deeplimit.transfer.experiments import log2_grid

# The demo's two LR rules: the raw LR ("sp") and the LR divided by depth.
RULES = ("sp", "depth_scaled")


def _rule(point: dict[str, Any]) -> Any:
    """The point's rule (``preset`` in sweeps stored before the axis was renamed), with ``-`` read as ``_``."""
    rule = point.get("rule", point.get("preset", "sp"))
    return rule.strip().lower().replace("-", "_") if isinstance(rule, str) else rule


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
    rule = str(_rule(point))
    if rule not in RULES:
        raise ValueError(f"demo rule must be 'sp' or 'depth_scaled', got {rule!r}")
    lr = _lr(point)
    if rule == "depth_scaled":
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


# "preset": the rule axis's name in sweeps stored before it was called "rule"; they still run.
_KEYS = {"depth", "width", "steps", "noise", "rule", "preset", "lr", "log2_lr", "seed", "experiment"}


def _whole(point: dict[str, Any], key: str, low: int) -> None:
    v = point.get(key, low)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise DeeplimitError(f"{key} must be a whole number ≥ {low}, got {v!r}")


def validate_quadratic(point: dict[str, Any]) -> None:
    """Refuse a point :func:`quadratic` cannot run (called by ``create_sweep`` on every point)."""
    unknown = sorted(set(point) - _KEYS)
    if unknown:
        raise DeeplimitError(f"unknown parameter(s) {unknown}; the demo accepts {sorted(_KEYS)}")
    for key, low in (("depth", 1), ("width", 1), ("steps", 1), ("seed", 0)):
        _whole(point, key, low)
    if "rule" in point and "preset" in point:
        raise DeeplimitError("give the demo's rule once, as rule (preset is its old name)")
    if _rule(point) not in RULES:
        raise DeeplimitError(f"demo rule must be 'sp' or 'depth_scaled', got {_rule(point)!r}")
    if ("lr" in point) == ("log2_lr" in point):
        raise DeeplimitError("give exactly one of lr or log2_lr")
    for key in ("lr", "log2_lr", "noise"):
        v = point.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DeeplimitError(f"{key} must be a finite number, got {v!r}")
    if point.get("lr", 1.0) <= 0 or point.get("noise", 0.0) < 0:
        raise DeeplimitError("lr must be > 0 and noise ≥ 0")


quadratic.validate = validate_quadratic  # type: ignore[attr-defined]


def demo_quadratic_spec(depths: list[int] | None = None, seeds: int = 2, steps: int = 200,
                        lr_step: float = 1.0) -> SweepSpec:
    """The ``demo-quadratic`` grid: both demo rules × depths × log2 LR × seeds."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise DeeplimitError(f"seeds must be a whole number ≥ 1, got {seeds!r}; e.g. --set seeds=2")
    if depths is not None and (not isinstance(depths, list | tuple) or not depths):
        raise DeeplimitError(f"depths must be a non-empty list, got {depths!r}; e.g. --set depths=1,4,16")
    if isinstance(lr_step, bool) or not isinstance(lr_step, int | float):
        raise DeeplimitError(f"lr_step must be a number, got {lr_step!r}; e.g. --set lr_step=0.5")
    return SweepSpec(
        axes={"rule": list(RULES), "depth": list(depths or [1, 4, 16]),
              "log2_lr": log2_grid(-11.0, 1.0, lr_step), "seed": list(range(seeds))},
        fixed={"width": 16, "steps": steps},
        objective="deeplimit.transfer.demo:quadratic",
        metric="train_loss_final",
        description="demo: noisy GD on a depth-scaled quadratic; 'sp' shifts, 'depth_scaled' transfers",
    )
