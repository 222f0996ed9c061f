"""η̂* of one learning-rate curve and the second pass of a two-pass LR search (depth-mup spec §11.4).

* :func:`fit_optimum` — η̂* of one curve (one rule, size, seed): a weighted quadratic in log2 η around the
  grid argmin (:class:`SeedOptimum`, with ``loss_at`` to read the loss at another LR).
* :func:`refine_grid` — the second-pass LR points of a two-pass (coarse, then ¼–½ octave) search.
* :func:`second_pass_points` — :func:`refine_grid` of one measured coarse curve (what a sweep's second pass runs).

Pure numpy; :mod:`deeplimit.transfer.statistics` builds the transfer verdicts on these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deeplimit.errors import DeeplimitError

__all__ = ["SeedOptimum", "fit_optimum", "refine_grid", "second_pass_points", "json_safe"]


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats → None, tuples → lists, numpy scalars → Python, keys → str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------------------
# η̂* of one curve
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedOptimum:
    """η̂* of one loss curve (one rule, size and seed) on its log2-LR grid.

    ``log2_lr``: the vertex of the local weighted quadratic when ``refined``, else the grid argmin (NaN when
    every point diverged). ``best_loss``: the quadratic's minimum when refined, else the grid minimum (+∞ when
    every point diverged). ``censored``: the grid argmin is the first or last finite point, so the true optimum
    may lie beyond the grid. ``n_points``: finite grid points; ``n_diverged``: non-finite ones (never averaged).
    ``window``: the log2-LR range of the fitted points; ``coef``: (c0, c1, c2) of
    ``loss ≈ c0 + c1·(x − centre) + c2·(x − centre)²`` with ``centre`` the grid argmin.
    """

    log2_lr: float
    best_loss: float
    censored: bool
    refined: bool
    n_points: int
    n_diverged: int
    grid: tuple[float, ...] = field(default=(), repr=False)
    losses: tuple[float, ...] = field(default=(), repr=False)
    window: tuple[float, float] = (math.nan, math.nan)
    centre: float = math.nan
    coef: tuple[float, float, float] = (math.nan, math.nan, math.nan)

    def loss_at(self, log2_lr: float) -> float:
        """Loss of this curve at ``log2_lr``: the local quadratic inside its window (when refined), linear
        interpolation of the grid elsewhere, +∞ past the last finite point before a diverged one (seen from the
        argmin: a run there might diverge, so a transferred LR there is not credited), and NaN outside the grid
        (not measured)."""
        x = float(log2_lr)
        if not math.isfinite(x):
            return math.nan
        g = np.asarray(self.grid, dtype=float)
        y = np.asarray(self.losses, dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            return math.inf
        if self.refined and self.window[0] <= x <= self.window[1]:
            c0, c1, c2 = self.coef
            d = x - self.centre
            return float(c0 + c1 * d + c2 * d * d)
        # The contiguous run of finite points that holds the argmin; past its ends lies a diverged point
        # (→ +∞, the transferred LR would be past the stability edge) or the end of the grid (→ not measured).
        k = int(np.flatnonzero(finite)[np.argmin(y[finite])])
        lo, hi = _finite_run(finite, k)
        if x < g[lo]:
            return math.inf if lo > 0 else math.nan
        if x > g[hi]:
            return math.inf if hi < len(g) - 1 else math.nan
        return float(np.interp(x, g[lo:hi + 1], y[lo:hi + 1]))

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"log2_lr": self.log2_lr, "best_loss": self.best_loss, "censored": self.censored,
                      "refined": self.refined, "n_points": self.n_points, "n_diverged": self.n_diverged})


def _finite_run(finite: np.ndarray, k: int) -> tuple[int, int]:
    """First and last index of the run of finite points around index ``k`` (bounded by diverged points)."""
    div = np.flatnonzero(~finite)
    j = int(np.searchsorted(div, k))
    lo = int(div[j - 1]) + 1 if j > 0 else 0
    hi = int(div[j]) - 1 if j < len(div) else len(finite) - 1
    return lo, hi


def _grid_step(x: np.ndarray) -> float:
    d = np.diff(np.sort(x))
    d = d[d > 0]
    return float(np.median(d)) if d.size else math.nan


def fit_optimum(log2_lr: Sequence[float], loss: Sequence[float], *, points: int = 5) -> SeedOptimum:
    """η̂* of ONE curve by a weighted quadratic in log2 LR around the grid argmin.

    ``log2_lr``, ``loss``: shape (n_grid,), one value per LR (non-finite loss = diverged). The fit uses the
    ``points`` finite grid points nearest the argmin (a window shifted inward at the ends of the finite run;
    never across a diverged point) with Gaussian weights ``w = exp(−½ ((x − x_k)/Δ)²)``, Δ the grid step and
    x_k the grid argmin: the argmin and its neighbours dominate (weights 1, 0.61, 0.14, 0.01 at 0–3 steps),
    because a loss curve is quadratic only near its minimum and real curves are steeper on the high-LR side.
    On such asymmetric curves this keeps the vertex within a quarter step of the true optimum where an
    unweighted fit is off by up to 0.3 (5 points) or 0.6 (7 points) of a step; the extra points still
    average down loss noise (the tests check both). The vertex is used when the curvature is positive and it lies inside
    the window; otherwise the grid argmin (``refined=False``).
    """
    x = np.asarray(log2_lr, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise DeeplimitError("fit_optimum needs log2_lr and loss as two 1-D sequences of the same non-zero length, "
                             f"got shapes {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise DeeplimitError("fit_optimum got a non-finite log2 learning rate; drop runs without an LR")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise DeeplimitError(f"points must be a whole number ≥ 3 (a quadratic has 3 coefficients), got {points!r}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) == 0):
        raise DeeplimitError("fit_optimum got the same learning rate twice; pass one curve (one seed) at a time")
    finite = np.isfinite(y)
    n_fin, n_div = int(finite.sum()), int((~finite).sum())
    base = {"grid": tuple(x.tolist()), "losses": tuple(np.where(finite, y, math.inf).tolist()),
            "n_points": n_fin, "n_diverged": n_div}
    if n_fin == 0:
        return SeedOptimum(log2_lr=math.nan, best_loss=math.inf, censored=False, refined=False, **base)
    fin_idx = np.flatnonzero(finite)
    k = int(fin_idx[np.argmin(y[finite])])
    censored = k in (fin_idx[0], fin_idx[-1])
    grid_opt = SeedOptimum(log2_lr=float(x[k]), best_loss=float(y[k]), censored=bool(censored), refined=False,
                           **base)
    lo, hi = _finite_run(finite, k)
    if censored or hi - lo + 1 < 3:
        return grid_opt
    m = min(points, hi - lo + 1)
    start = min(max(k - m // 2, lo), hi - m + 1)
    xs, ys = x[start:start + m], y[start:start + m]
    step = float(xs[-1] - xs[0]) / (m - 1)  # the window's mean spacing (the grid step on a regular grid)
    d = xs - x[k]
    w = np.exp(-0.5 * (d / step) ** 2)
    # Weighted normal equations of ys ≈ c0 + c1 d + c2 d² (3 × 3; d is centred and scaled by the step, so
    # they are well conditioned).
    u = d / step
    p = [float(np.dot(w, u**j)) for j in range(5)]
    rhs = [float(np.dot(w, ys * u**j)) for j in range(3)]
    try:
        a0, a1, a2 = np.linalg.solve([[p[0], p[1], p[2]], [p[1], p[2], p[3]], [p[2], p[3], p[4]]], rhs)
    except np.linalg.LinAlgError:
        return grid_opt
    c0, c1, c2 = float(a0), float(a1) / step, float(a2) / step**2
    if not (c2 > 0 and math.isfinite(c1)):
        return grid_opt
    dv = -c1 / (2 * c2)
    vertex = float(x[k] + dv)
    if not (xs[0] <= vertex <= xs[-1]):
        return grid_opt
    return SeedOptimum(log2_lr=vertex, best_loss=float(c0 + c1 * dv + c2 * dv * dv), censored=False,
                       refined=True, window=(float(xs[0]), float(xs[-1])), centre=float(x[k]),
                       coef=(c0, c1, c2), **base)


def refine_grid(coarse_log2_lrs: Sequence[float], optimum: SeedOptimum | float, *, step: float = 0.5,
                half_width: float = 1.0) -> list[float]:
    """Second-pass log2 LRs of a two-pass search: the points of the lattice ``coarse[0] + j·step`` within
    ``half_width`` octaves of the coarse optimum that the coarse grid lacks (sorted), so the two passes nest
    and every seed and size can share them. ``step`` is ¼ or ½ octave in practice.

    A censored optimum (on the first or last coarse point) cannot be refined — its optimum may lie past the
    edge — so the second pass then extends the grid past that edge by two coarse steps instead.
    """
    g = np.sort(np.unique(np.asarray(coarse_log2_lrs, dtype=float)))
    if g.ndim != 1 or len(g) < 2 or not np.all(np.isfinite(g)):
        raise DeeplimitError("refine_grid needs at least two finite coarse log2 learning rates")
    if not (step > 0 and half_width > 0):
        raise DeeplimitError(f"step and half_width must be positive octaves, got step={step!r}, "
                             f"half_width={half_width!r}; e.g. step=0.25, half_width=1.0")
    coarse_step = _grid_step(g)
    if step >= coarse_step:
        raise DeeplimitError(f"step={step:g} is not finer than the coarse grid step {coarse_step:g}; pass a smaller "
                             "step (e.g. 0.25 or 0.5 octave)")
    if isinstance(optimum, SeedOptimum):
        centre, censored = optimum.log2_lr, optimum.censored
    else:
        centre = float(optimum)
        censored = centre <= g[0] or centre >= g[-1]
    if not math.isfinite(centre):
        raise DeeplimitError("the coarse optimum is not finite (every run diverged); lower the coarse LR range")
    tol = 1e-9 * max(1.0, abs(coarse_step))
    if censored:
        sign = -1.0 if centre <= (g[0] + g[-1]) / 2 else 1.0
        edge = g[0] if sign < 0 else g[-1]
        return sorted(float(edge + sign * j * coarse_step) for j in (1, 2))
    j = np.arange(math.ceil((centre - half_width - g[0]) / step - tol),
                  math.floor((centre + half_width - g[0]) / step + tol) + 1)
    pts = g[0] + j * step
    new = [float(p) for p in pts if np.min(np.abs(g - p)) > tol]
    return sorted(new)


def second_pass_points(log2_lr: Sequence[float], loss: Sequence[float], coarse: Sequence[float], *,
                       step: float = 0.5, half_width: float = 1.0) -> list[float]:
    """The second-pass log2 LRs of ONE coarse curve (one rule, size, seed), not yet measured.

    ``log2_lr``, ``loss``: the curve's runs so far, shape (n,) (non-finite loss = diverged); ``coarse``: the
    pass-1 grid (the lattice the new points sit on, see :func:`refine_grid`). The centre is the curve's grid
    argmin (:func:`fit_optimum`'s ``centre``), not the quadratic's vertex: the new points then sit symmetrically
    around the best measured run, and the vertex, refitted over both passes, lies between them. An argmin on the
    grid's first or last point is censored: the points extend the grid past that edge. An argmin next to a
    diverged point is not on the grid's edge, so it is refined on both sides like an interior one: the new
    points between it and the diverged run locate the stability edge. Every point diverged → ``[]`` (nothing
    to refine; the curve counts as diverged)."""
    x = np.asarray(log2_lr, dtype=float)
    opt = fit_optimum(x, loss)
    if not math.isfinite(opt.log2_lr):
        return []
    g = np.sort(np.asarray(coarse, dtype=float))
    on_edge = opt.censored and (math.isclose(opt.log2_lr, float(g[0])) or math.isclose(opt.log2_lr, float(g[-1])))
    centre = opt.centre if opt.refined else opt.log2_lr
    pts = refine_grid(g, opt if on_edge else centre, step=step, half_width=half_width)
    return [p for p in pts if not np.any(np.isclose(x, p, rtol=0.0, atol=1e-9))]
