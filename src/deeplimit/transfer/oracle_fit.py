"""The two estimators under :mod:`deeplimit.transfer.oracle`: per-group optima and power laws in the sizes.

* :func:`cell_optima` — one group's (one combination of the size variables) optimal log2 LR and, where they
  were swept inside the group, the optimal log2 batch size and log2 weight decay (or timescale), per seed, with
  the report's estimator :func:`~deeplimit.transfer.optimum.fit_optimum` (a weighted quadratic around the grid
  argmin). Extra axes are profiled: the best loss over the LR at each grid point of the extra axes, then the
  same quadratic over that profile, then the LR optimum interpolated at the extra axes' optimum.
* :func:`critical_batch` — the other estimator of the batch axis (``batch_estimator="critical"``): the largest
  batch whose profiled loss stays within a relative tolerance of the best, for surfaces that are flat over the
  small batches (where the argmin is set by seed noise) and rise past a batch that grows with data.
* :func:`fit_power_law` — least squares of ``log2 y = a + Σᵢ bᵢ log2 xᵢ`` (some bᵢ may be fixed) on the groups'
  optima, with a Student-t prediction interval or a residual bootstrap (:class:`PowerLaw`).

Pure numpy/scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import fit_optimum, json_safe

__all__ = ["SeedOptima", "cell_optima", "CriticalBatch", "critical_batch", "check_batch_estimator", "PowerLaw",
           "fit_power_law", "INTERVALS", "BATCH_ESTIMATORS"]

INTERVALS = ("t", "bootstrap")
BATCH_ESTIMATORS = ("argmin", "critical")  # how a seed's optimal batch is read off its profile; argmin: default


@dataclass(frozen=True)
class SeedOptima:
    """One seed's optima in one group. ``log2``: axis → log2 optimum (``"lr"`` always; ``"batch"``, ``"wd"``
    where swept); ``censored``: axis → the optimum lies on the edge of that axis's grid (or every run diverged),
    so it is a bound, not an estimate; ``best_loss``: the lowest loss of the seed's runs (the quadratic's
    minimum where refined)."""

    log2: dict[str, float]
    censored: dict[str, bool]
    best_loss: float


def _interp_corners(axes_values: Sequence[np.ndarray], table: Mapping[tuple[float, ...], float],
                    point: Sequence[float]) -> float:
    """Multilinear interpolation of ``table`` (grid point → value) at ``point`` on the regular grid spanned by
    ``axes_values`` (each sorted, log2 units); NaN when a corner is missing or NaN."""
    lows, weights = [], []
    for vals, x in zip(axes_values, point):
        x = min(max(x, vals[0]), vals[-1])
        j = int(np.searchsorted(vals, x, side="right")) - 1
        j = min(max(j, 0), max(len(vals) - 2, 0))
        if len(vals) == 1:
            lows.append((vals[0], vals[0]))
            weights.append(0.0)
            continue
        lo, hi = vals[j], vals[j + 1]
        lows.append((lo, hi))
        weights.append((x - lo) / (hi - lo))
    total = 0.0
    for corner in itertools.product((0, 1), repeat=len(lows)):
        w = math.prod(wt if c else 1.0 - wt for c, wt in zip(corner, weights))
        if w == 0.0:
            continue
        v = table.get(tuple(pair[c] for c, pair in zip(corner, lows)), math.nan)
        if not math.isfinite(v):
            return math.nan
        total += w * v
    return total


@dataclass(frozen=True)
class CriticalBatch:
    """:func:`critical_batch`'s result for one seed. ``log2_batch``: log2 B_crit (NaN when no batch has a finite
    loss); ``censored``: "top" (even the largest batch is within tolerance: B_crit ≥ the largest batch, which
    ``log2_batch`` then holds), "bottom" (only the smallest batch is within tolerance: the plateau is not seen,
    so L* may lie below the grid and B_crit with it; ``log2_batch`` holds the interpolated crossing, an upper
    bound), "empty" (no finite loss) or None; ``best_loss``: L*; ``threshold``: (1 + tolerance)·L*."""

    log2_batch: float
    censored: str | None
    best_loss: float
    threshold: float


def check_batch_estimator(estimator: str, tolerance: float | None) -> float:
    """Validate ``estimator`` (one of :data:`BATCH_ESTIMATORS`) and ``tolerance`` (a finite number > 0, required
    with "critical", refused with "argmin"); returns the tolerance in use (NaN for "argmin").

    There is no default tolerance: it must sit above the loss's seed-to-seed noise, which differs by orders of
    magnitude between a small noisy classifier (0.1 on the MLP-ResNet pilot, docs/oracle.md) and an LM, and a
    tolerance inside the noise gives a critical batch set by that noise."""
    if estimator not in BATCH_ESTIMATORS:
        raise DeeplimitError(f"batch estimator must be one of {BATCH_ESTIMATORS}, got {estimator!r}")
    if estimator == "argmin":
        if tolerance is not None:
            raise DeeplimitError("a batch tolerance applies to the critical batch estimator only; drop it or add "
                                 "--batch-estimator critical (batch_estimator=\"critical\")")
        return math.nan
    if tolerance is None:
        raise DeeplimitError("the critical batch needs a tolerance: give batch_tolerance=FRAC (--batch-tolerance "
                             "FRAC), a fraction of the best loss above its seed-to-seed noise, e.g. 0.1 on a small "
                             "classifier (docs/oracle.md)")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not (
            math.isfinite(tolerance) and tolerance > 0):
        raise DeeplimitError(f"batch tolerance must be a finite number > 0 (a fraction of the best loss), got "
                             f"{tolerance!r}; e.g. 0.02")
    return float(tolerance)


def critical_batch(log2_batch: Sequence[float], loss: Sequence[float], tolerance: float) -> CriticalBatch:
    """The critical batch of ONE seed's batch profile: the largest batch whose loss stays within ``tolerance`` of
    the best.

    ``log2_batch``: shape (n,) the batch grid (log2, sorted ascending); ``loss``: shape (n,) L(B), the best loss
    over the LR at each batch (non-finite = every run at that batch diverged); ``tolerance``: relative, > 0.
    With L* = min_B L(B) and T = (1 + tolerance)·L*, k = the largest grid index with L(B_k) ≤ T, and

        log2 B_crit = log2 B_k + (T − L(B_k)) / (L(B_{k+1}) − L(B_k)) · (log2 B_{k+1} − log2 B_k),

    the linear interpolation in log2 B of the crossing of T between B_k and the next larger batch (whose loss
    exceeds T, since k is the largest within tolerance). If every run at B_{k+1} diverged, the crossing cannot
    be placed and B_crit = B_k (a lower bound within one grid step). Censored "top" when k is the largest batch
    (the rise is not seen), "bottom" when only the smallest batch (with a finite loss) is within tolerance (the loss
    already rises from the grid's first batch: the minimum may lie below the grid). A relative tolerance needs L* > 0: a
    :class:`DeeplimitError` otherwise.
    """
    x = np.asarray(log2_batch, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DeeplimitError(f"log2_batch and loss must be 1-d of one length, got shapes {x.shape} and {y.shape}")
    if x.size > 1 and not np.all(np.diff(x) > 0):
        raise DeeplimitError("log2_batch must be sorted ascending without repeats (one profile point per batch)")
    tol = check_batch_estimator("critical", tolerance)
    finite = np.isfinite(y)
    if not finite.any():
        return CriticalBatch(math.nan, "empty", math.inf, math.inf)
    best = float(y[finite].min())
    if best <= 0:
        raise DeeplimitError(f"the critical batch takes a tolerance relative to the best loss, which is {best:g} "
                             "(≤ 0); use a positive loss (e.g. cross-entropy, not a log-likelihood or a loss minus "
                             "its floor) or --batch-estimator argmin")
    thr = (1.0 + tol) * best
    within = np.flatnonzero(finite & (y <= thr))
    k = int(within[-1])
    if k == x.size - 1:
        return CriticalBatch(float(x[k]), "top", best, thr)
    if not finite[k + 1]:
        out = float(x[k])
    else:
        out = float(x[k] + (thr - y[k]) / (y[k + 1] - y[k]) * (x[k + 1] - x[k]))
    # k is the first finite batch: only it is within tolerance (k is the largest such), the loss rises from there
    return CriticalBatch(out, "bottom" if k == int(np.flatnonzero(finite)[0]) else None, best, thr)


def cell_optima(log2_lr: np.ndarray, loss: np.ndarray, extra: Mapping[str, np.ndarray] | None = None, *,
                points: int = 5, critical: Mapping[str, float] | None = None) -> SeedOptima:
    """Optima of ONE seed's runs in ONE group.

    ``log2_lr``, ``loss``: shape (n_runs,); ``extra``: axis name → shape (n_runs,) log2 values of the other
    swept hyperparameters (batch, weight decay). Without ``extra`` the runs are one LR curve and the LR optimum
    is :func:`fit_optimum`'s. With it, each grid point of the extra axes holds an LR curve: its
    :func:`fit_optimum` gives η̂*(h) and the best loss L(h); per extra axis j, the profile
    P_j(v) = min over grid points with h_j = v of L(h) gives h_j* by the same quadratic (in log2 h_j); η̂* is
    η̂*(h) interpolated (multilinearly, in log2) at h* — or, where a neighbouring curve's optimum is censored,
    the η̂* of the grid point nearest h*.

    ``critical``: extra axis name → relative tolerance, for axes whose optimum is :func:`critical_batch` of the
    same profile P_j (L(B) = :func:`fit_optimum`'s best loss of the LR curve — the LR quadratic's minimum where
    refined, else the grid minimum — minimised over the other extra axes) instead of the quadratic around its
    argmin; η̂* is then read at the critical batch.
    """
    critical = dict(critical or {})
    extra = dict(extra or {})
    names = list(extra)
    if not names:
        opt = fit_optimum(log2_lr, loss, points=points)
        cen = opt.censored or not math.isfinite(opt.log2_lr)
        return SeedOptima({"lr": opt.log2_lr}, {"lr": cen}, opt.best_loss)
    keys = list(zip(*(np.round(np.asarray(extra[n], float), 9) for n in names)))
    curves: dict[tuple[float, ...], list[int]] = {}
    for i, k in enumerate(keys):
        curves.setdefault(k, []).append(i)
    opts = {k: fit_optimum(log2_lr[idx], loss[idx], points=points) for k, idx in curves.items()}
    log2: dict[str, float] = {}
    censored: dict[str, bool] = {}
    axes_values = []
    for j, name in enumerate(names):
        vals = np.array(sorted({k[j] for k in opts}))
        axes_values.append(vals)
        prof = np.array([min((o.best_loss for k, o in opts.items() if k[j] == v), default=math.inf) for v in vals])
        if len(vals) < 2:
            log2[name], censored[name] = float(vals[0]), True
            continue
        if name in critical:
            c = critical_batch(vals, prof, critical[name])
            log2[name], censored[name] = c.log2_batch, c.censored is not None
            continue
        o = fit_optimum(vals, np.where(np.isfinite(prof), prof, math.inf), points=points)
        log2[name] = o.log2_lr
        censored[name] = o.censored or not math.isfinite(o.log2_lr)
    target = [log2[n] if math.isfinite(log2[n]) else math.nan for n in names]
    lr_table = {k: (o.log2_lr if not o.censored else math.nan) for k, o in opts.items()}
    lr = _interp_corners(axes_values, lr_table, target) if all(map(math.isfinite, target)) else math.nan
    if not math.isfinite(lr):  # fall back to the nearest grid point with an interior LR optimum
        ok = [(k, v) for k, v in lr_table.items() if math.isfinite(v)]
        if ok and all(map(math.isfinite, target)):
            k, lr = min(ok, key=lambda kv: sum((a - b) ** 2 for a, b in zip(kv[0], target)))
    log2["lr"] = float(lr)
    censored["lr"] = not math.isfinite(lr)
    best = min((o.best_loss for o in opts.values()), default=math.inf)
    return SeedOptima(log2, censored, float(best))


# ------------------------------------------------------------------------------------------------
# Power laws
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerLaw:
    """``log2 y = intercept + Σᵢ exponents[xᵢ]·log2 xᵢ`` fitted by least squares on groups' optima.

    ``fixed``: the exponents held fixed (not fitted). ``cov``: covariance of (intercept, free exponents) in
    the order of ``free``; ``residual_sd``: √(RSS/df) in octaves (df = groups − fitted coefficients);
    ``x_range``: each variable's fitted (min, max); ``interval``: "t" (Student-t prediction interval, exact
    for normal scatter around the law) or "bootstrap" (residual bootstrap, Davison & Hinkley 1997 Alg. 6.4).
    """

    name: str
    variables: tuple[str, ...]
    intercept: float
    exponents: dict[str, float]
    fixed: dict[str, float]
    free: tuple[str, ...]
    cov: np.ndarray = field(repr=False)
    xtx_inv: np.ndarray = field(repr=False)
    residual_sd: float
    df: int
    n_groups: int
    x_range: dict[str, tuple[float, float]]
    residuals: np.ndarray = field(repr=False)
    leverage: np.ndarray = field(repr=False)
    design: np.ndarray = field(repr=False)
    interval: str = "t"
    n_boot: int = 2000
    seed: int = 0

    def _row(self, at: Mapping[str, float]) -> tuple[np.ndarray, float]:
        missing = [v for v in self.variables if v not in at]
        if missing:
            raise DeeplimitError(f"the target lacks {missing}; give every size variable, e.g. "
                                 f"--at {','.join(f'{v}=…' for v in self.variables)}")
        for v in self.variables:
            if not (isinstance(at[v], (int, float)) and math.isfinite(at[v]) and at[v] > 0):
                raise DeeplimitError(f"target {v}={at[v]!r} must be a positive number (sizes are fitted in log "
                                     "space)")
        row = np.array([1.0, *(math.log2(at[v]) for v in self.free)])
        offset = sum(b * math.log2(at[v]) for v, b in self.fixed.items())
        return row, offset

    def predict(self, at: Mapping[str, float]) -> float:
        """log2 y at ``at`` (variable → positive value)."""
        row, offset = self._row(at)
        return float(row @ np.array([self.intercept, *(self.exponents[v] for v in self.free)]) + offset)

    def predict_interval(self, at: Mapping[str, float], level: float) -> tuple[float, float]:
        """Two-sided ``level`` prediction interval of a group's measured log2 optimum at ``at``.

        "t": ŷ ± t_{df} · s · √(1 + x₀ᵀ(XᵀX)⁻¹x₀) — the √(1 + leverage) factor makes the interval widen with the
        distance of ``at`` from the fitted sizes. "bootstrap": draws y* = Xβ̂ + r* from the centred, leverage-
        adjusted residuals r, refits β*, and subtracts from ŷ₀ the quantiles of the simulated prediction error
        δ* = x₀β* − (ŷ₀ + r₀*), r₀* one more residual drawn (the scatter of the target group itself)."""
        row, offset = self._row(at)
        y0 = self.predict(at)
        if self.interval == "t":
            h0 = float(row @ self.xtx_inv @ row)
            half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.residual_sd * math.sqrt(1.0 + h0)
            return y0 - half, y0 + half
        rng = np.random.default_rng(self.seed)
        r = self.residuals / np.sqrt(np.clip(1.0 - self.leverage, 1e-12, None))
        r = r - r.mean()
        X = self.design
        fitted = X @ np.array([self.intercept, *(self.exponents[v] for v in self.free)])
        idx = rng.integers(0, len(r), size=(self.n_boot, len(r)))
        Y = fitted[None, :] + r[idx]  # (n_boot, n_groups)
        beta = np.linalg.lstsq(X, Y.T, rcond=None)[0]  # (p, n_boot)
        err = row @ beta + offset - (y0 + r[rng.integers(0, len(r), size=self.n_boot)])
        lo, hi = np.quantile(err, [0.5 + level / 2, 0.5 - level / 2])
        return float(y0 - lo), float(y0 - hi)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"law": f"log2 {self.name}* = a + " + " + ".join(f"b_{v}·log2 {v}" for v in self.variables)
                          if self.variables else f"log2 {self.name}* = a",
                          "intercept": self.intercept, "exponents": self.exponents,
                          "fixed": sorted(self.fixed), "residual_sd_octaves": self.residual_sd, "df": self.df,
                          "n_groups": self.n_groups, "x_range": {k: list(v) for k, v in self.x_range.items()},
                          "interval": self.interval})


def fit_power_law(name: str, sizes: Mapping[str, Sequence[float]], log2_y: Sequence[float], *,
                  fixed: Mapping[str, float] | None = None, interval: str = "t", n_boot: int = 2000,
                  seed: int = 0) -> PowerLaw:
    """Least-squares fit of ``log2 y = a + Σ bᵢ log2 xᵢ`` over groups.

    ``sizes``: variable → shape (n_groups,) positive sizes; ``log2_y``: shape (n_groups,) the groups' log2
    optima; ``fixed``: variable → exponent held fixed (e.g. 0 for width under μP). Needs more groups than fitted
    coefficients (the scatter around the law is estimated from the df = n − p residuals) and every fitted
    variable to take ≥ 2 values.
    """
    fixed = dict(fixed or {})
    variables = tuple(sizes)
    unknown = sorted(set(fixed) - set(variables))
    if unknown:
        raise DeeplimitError(f"cannot fix the exponent of {unknown}: not a size variable of the {name} law "
                             f"({list(variables)}); fix one of those")
    if interval not in INTERVALS:
        raise DeeplimitError(f"interval must be one of {INTERVALS}, got {interval!r}")
    y = np.asarray(log2_y, dtype=float)
    n = len(y)
    cols = {v: np.log2(np.asarray(sizes[v], dtype=float)) for v in variables}
    free = tuple(v for v in variables if v not in fixed)
    p = 1 + len(free)
    for v in free:
        if np.ptp(cols[v]) == 0:
            raise DeeplimitError(f"{v} takes a single value ({2 ** cols[v][0]:g}) among the groups with an interior "
                                 f"{name} optimum, so its exponent cannot be fitted; fix it (--fix {v}=0) or add "
                                 "groups at other sizes")
    if n < p + 1:
        what = " + ".join(["intercept", *(f"exponent of {v}" for v in free)])
        raise DeeplimitError(f"too few groups for the {name} law: {n} group(s) with an interior optimum for {p} "
                             f"coefficient(s) ({what}) and an estimate of the scatter; add groups (more sizes) or "
                             "fix exponents (--fix X=VALUE)")
    X = np.column_stack([np.ones(n), *(cols[v] for v in free)])
    yy = y - sum((b * cols[v] for v, b in fixed.items()), np.zeros(n))
    beta, *_ = np.linalg.lstsq(X, yy, rcond=None)
    if np.linalg.matrix_rank(X) < p:
        raise DeeplimitError(f"the sizes of the {name} law's groups are collinear ({list(free)} move together), so "
                             "their exponents cannot be told apart; fix one (--fix X=VALUE) or add groups that vary "
                             "them independently")
    resid = yy - X @ beta
    df = n - p
    s = float(math.sqrt(float(resid @ resid) / df))
    xtx_inv = np.linalg.inv(X.T @ X)
    leverage = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    exps = {v: float(b) for v, b in zip(free, beta[1:])}
    exps.update({v: float(b) for v, b in fixed.items()})
    return PowerLaw(name=name, variables=variables, intercept=float(beta[0]),
                    exponents={v: exps[v] for v in variables}, fixed={v: float(b) for v, b in fixed.items()},
                    free=free, cov=s * s * xtx_inv, xtx_inv=xtx_inv, residual_sd=s, df=df, n_groups=n,
                    x_range={v: (float(2 ** cols[v].min()), float(2 ** cols[v].max())) for v in variables},
                    residuals=resid, leverage=leverage, design=X, interval=interval, n_boot=n_boot, seed=seed)
