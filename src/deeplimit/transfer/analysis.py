"""Learning-rate transfer analysis on the tidy long table (depth-mup spec §11.4).

Pure functions of pandas frames; nothing here knows about Optuna or training.

Per (group, size) — group is usually ``rule``, size ``depth`` (or ``width``):

* seed-mean loss on the log2-LR grid; a diverged run counts as +∞ (so an LR where any seed diverged
  cannot be the optimum) but stays in the tables;
* η̂*: grid argmin of the seed-mean curve, refined to the vertex of the parabola through k−1, k, k+1 when
  its curvature is positive and the vertex lies within one grid step of k; an argmin on the first or last
  grid point is *censored* (reported, flagged, never used as an estimate);
* uncertainty: bootstrap over seeds (1000 resamples) → 16–84 % interval; the grid half-step is a floor on
  the standard error used for weighting;
* per-seed argmins and the best (seed-mean) loss.

Per group: weighted least-squares slope b of log2 η̂* on log2 size (weights 1/SE², uncensored sizes
only), total drift D = b·log2(size_max/size_min), range max−min of log2 η̂*, and a 95 % interval of D that
adds in quadrature

* the seed-to-seed spread: a Student-t interval over the *per-seed* drifts (each seed's own η̂* per size,
  same fit), so one seed gives no interval at all, never a zero-width one; and
* the grid resolution: a size whose optimum could not be refined by the parabola is uncertain by a uniform
  error of one grid step (SD Δ/√12), propagated through the slope.

The drift and its interval describe the trend (the plots draw it; :class:`Trend` predicts the LR at a target
size even when the rule does not transfer); they decide nothing. The verdict of each group is the slope statistic of
:func:`deeplimit.transfer.statistics.transfer_test` (:func:`slope_table`): η̂* per (size, seed) by a weighted
quadratic, the mean of the per-seed slopes of log2 η̂* per doubling of the size with its Student-t 95 % interval,
and the transfer regret. "transfers" = the slope interval inside ±``margin`` per doubling (a TOST) and the regret's
upper end below ``regret_margin``; "shifts" = the slope interval excludes 0; "degrades" = the best loss breaks at
the largest size; else "inconclusive". The margins default to the frozen protocol's (depth-transfer: ±0.25 per
doubling, 2 %), never tuned on the data they decide.

:func:`paired_difference` is the matching rule for comparisons (|x| vs ReLU, shaped vs Pre-LN, …): a
Student-t interval over paired per-seed differences.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.protocol import protocol
from deeplimit.transfer.statistics import DEGRADE_RATIO, loss_rises, transfer_test

__all__ = [
    "Optimum",
    "Trend",
    "TransferAnalysis",
    "final_values",
    "estimate_optimum",
    "seed_mean_curves",
    "summarize",
    "drift_table",
    "fit_trend",
    "slope_table",
    "analyze",
    "drift_interval",
    "per_seed_drifts",
    "SLOPE_MARGIN",
    "REGRET_MARGIN",
    "PairedDifference",
    "paired_difference",
    "DEGRADE_RATIO",
]

# The pre-registered margins of the slope statistic (protocol.toml, depth-transfer; width-transfer uses the same):
# ±0.25 octave per doubling for the slope, 2 % of the best loss for the transfer regret.
SLOPE_MARGIN = float(protocol().claim("depth-transfer")["margin_slope"])
REGRET_MARGIN = float(protocol().claim("depth-transfer")["margin_regret"])
SIZE_UNITS = {"depth": "blocks", "width": "width", "n_layers": "layers"}


def _cols(group: str | Sequence[str]) -> list[str]:
    return [group] if isinstance(group, str) else list(group)


def _require(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DeeplimitError(f"{what} lacks columns {missing} (has {list(frame.columns)}); pass the right "
                             "group=/size= names or add the columns")


def _with_log2_lr(frame: pd.DataFrame) -> pd.DataFrame:
    if "log2_lr" in frame.columns:
        return frame
    if "lr" in frame.columns:
        frame = frame.copy()
        frame["log2_lr"] = np.log2(frame["lr"].astype(float))
        return frame
    raise DeeplimitError("the table has neither 'log2_lr' nor 'lr'; transfer analysis needs the LR of "
                         "every run")


def final_values(long: pd.DataFrame, metric: str = "objective") -> pd.DataFrame:
    """One row per run: the ``metric`` row at the run's last step (diverged or non-finite → +∞).

    Runs are identified by ``run_id`` when present. The result keeps every column of the long table.
    """
    if "metric" in long.columns:
        if metric not in set(long["metric"]):
            raise DeeplimitError(f"metric {metric!r} is not in the table (metrics: "
                                 f"{sorted(map(str, set(long['metric'])))}); pass metric=…")
        runs = long[long["metric"] == metric]
    else:
        runs = long
    runs = _with_log2_lr(runs)
    if "step" in runs.columns and "run_id" in runs.columns:
        order = runs.assign(_step=runs["step"].astype(float).fillna(-math.inf)).sort_values("_step",
                                                                                            kind="stable")
        runs = order.groupby("run_id", sort=False).tail(1).drop(columns="_step")
    runs = runs.copy()
    values = pd.to_numeric(runs["value"], errors="coerce").astype(float)
    bad = ~np.isfinite(values)
    if "status" in runs.columns:
        bad |= runs["status"].astype(str).eq("diverged")
    runs["value"] = values.where(~bad, math.inf)
    if "status" in runs.columns:
        runs.loc[bad, "status"] = "diverged"
    else:
        runs["status"] = np.where(bad, "diverged", "ok")
    return runs.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Optimum of one curve (vectorised over bootstrap draws)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Optimum:
    """η̂* of one loss curve: ``log2_lr`` (NaN if every point diverged), grid index, flags, loss there."""

    log2_lr: float
    index: int
    censored: bool
    refined: bool
    loss: float


def _optimum_batch(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
    """Row-wise η̂* of curves ``Y`` (draws × grid) on the sorted grid ``x``.

    Returns (estimate, argmin index (−1 if none), censored, refined, loss at the estimate).
    """
    B, L = Y.shape
    Yf = np.where(np.isfinite(Y), Y, np.inf)
    k = np.argmin(Yf, axis=1)
    ok = np.isfinite(Yf[np.arange(B), k])
    est = np.where(ok, x[k], np.nan)
    loss = np.where(ok, Yf[np.arange(B), k], np.inf)
    censored = ok & ((k == 0) | (k == L - 1))
    refined = np.zeros(B, dtype=bool)
    inner = ok & (k > 0) & (k < L - 1)
    if inner.any() and L >= 3:
        kk = np.clip(k, 1, L - 2)
        rows = np.arange(B)
        x0, x1, x2 = x[kk - 1], x[kk], x[kk + 1]
        y0, y1, y2 = Yf[rows, kk - 1], Yf[rows, kk], Yf[rows, kk + 1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            b1 = (y1 - y0) / (x1 - x0)
            curv = ((y2 - y1) / (x2 - x1) - b1) / (x2 - x0)
            vertex = (x0 + x1) / 2 - b1 / (2 * curv)
            vloss = y0 + b1 * (vertex - x0) + curv * (vertex - x0) * (vertex - x1)
        step = np.maximum(x1 - x0, x2 - x1)
        good = (inner & np.isfinite(y0) & np.isfinite(y2) & (curv > 0) & np.isfinite(vertex)
                & (np.abs(vertex - x1) <= step))
        est = np.where(good, vertex, est)
        loss = np.where(good, vloss, loss)
        refined = good
    return est, np.where(ok, k, -1), censored, refined, loss


def estimate_optimum(log2_lr: Sequence[float], loss: Sequence[float]) -> Optimum:
    """η̂* of one curve: grid argmin refined by the parabola vertex (depth-mup spec §11.4)."""
    x = np.asarray(log2_lr, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise DeeplimitError("estimate_optimum needs two 1-D sequences of the same non-zero length")
    order = np.argsort(x)
    est, k, cen, ref, lo = _optimum_batch(x[order], y[order][None, :])
    return Optimum(log2_lr=float(est[0]), index=int(order[k[0]]) if k[0] >= 0 else -1,
                   censored=bool(cen[0]), refined=bool(ref[0]), loss=float(lo[0]))


# ------------------------------------------------------------------------------------------------
# Per (group, size)
# ------------------------------------------------------------------------------------------------
def _matrix(sub: pd.DataFrame, value: str, seed: str) -> tuple[np.ndarray, np.ndarray, list]:
    """seeds × sorted LR grid matrix (NaN where a run is missing, +inf where it diverged)."""
    pivot = sub.pivot_table(index=seed, columns="log2_lr", values=value, aggfunc="mean", dropna=False)
    pivot = pivot.reindex(sorted(pivot.columns), axis=1)
    return pivot.columns.to_numpy(dtype=float), pivot.to_numpy(dtype=float), list(pivot.index)


def _mean_over_seeds(M: np.ndarray) -> np.ndarray:
    # Mean over the seeds present; any diverged seed makes the mean +inf (never the argmin).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(M, axis=-2)


def seed_mean_curves(runs: pd.DataFrame, group: str | Sequence[str] = "rule", size: str = "depth",
                     value: str = "value", seed: str = "seed") -> pd.DataFrame:
    """Seed-mean loss per (group, size, log2_lr) with counts of seeds and diverged runs."""
    g = _cols(group)
    runs = _with_log2_lr(runs)
    _require(runs, [*g, size, value], "the runs table")
    vals = runs[value].astype(float)
    runs = runs.assign(_v=vals, _div=~np.isfinite(vals))
    out = runs.groupby([*g, size, "log2_lr"], sort=True).agg(
        mean_loss=("_v", lambda v: float(np.mean(v)) if np.isfinite(v).all() else math.inf),
        n_seeds=("_v", "size"), n_diverged=("_div", "sum")).reset_index()
    out["n_diverged"] = out["n_diverged"].astype(int)
    return out


def summarize(runs: pd.DataFrame, group: str | Sequence[str] = "rule", size: str = "depth", *,
              value: str = "value", seed: str = "seed", n_boot: int = 1000,
              ci: tuple[float, float] = (16, 84), rng: int | np.random.Generator = 0) -> pd.DataFrame:
    """Summary table per (group, size): ``log2_eta_star, ci_low, ci_high, se, per_seed_argmins, censored,
    best_loss`` and bookkeeping columns (depth-mup spec §11.8).

    ``runs`` has one row per run (see :func:`final_values`), with columns ``group…, size, log2_lr (or lr),
    seed, value`` and optionally ``status``.
    """
    g = _cols(group)
    runs = _with_log2_lr(runs)
    if seed not in runs.columns:
        runs = runs.assign(**{seed: 0})
    _require(runs, [*g, size, value], "the runs table")
    if runs.empty:
        raise DeeplimitError("the runs table is empty; run the sweep (or check the metric name) first")
    runs = runs.assign(**{value: runs[value].astype(float).where(lambda v: np.isfinite(v), math.inf)})
    if "status" in runs.columns:
        runs.loc[runs["status"].astype(str).eq("diverged"), value] = math.inf
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    records = []
    for keys, sub in runs.groupby([*g, size], sort=True):
        x, M, seeds = _matrix(sub, value, seed)
        mean = _mean_over_seeds(M)
        est, k, cen, ref, loss = _optimum_batch(x, mean[None, :])
        S = M.shape[0]
        # Bootstrap over seeds: resample whole seeds (their curves share the batch order across LRs).
        idx = gen.integers(0, S, size=(n_boot, S))
        boot_est, _, boot_cen, _, _ = _optimum_batch(x, _mean_over_seeds(M[idx]))
        finite = boot_est[np.isfinite(boot_est)]
        lo, hi = (np.percentile(finite, ci) if finite.size else (math.nan, math.nan))
        per_seed, _, per_seed_cen, _, _ = _optimum_batch(x, np.where(np.isnan(M), np.inf, M))
        half_step = float(np.median(np.diff(x)) / 2) if len(x) > 1 else math.nan
        se = max((hi - lo) / 2, half_step) if np.isfinite(lo) else half_step
        records.append({
            **dict(zip([*g, size], keys)),
            "log2_eta_star": float(est[0]),
            "ci_low": float(lo), "ci_high": float(hi), "se": float(se), "half_step": half_step,
            "per_seed_argmins": ";".join("nan" if not np.isfinite(v) else f"{v:g}" for v in per_seed),
            "per_seed_censored": ";".join(str(int(c)) for c in per_seed_cen),
            "seed_ids": ";".join(str(v) for v in seeds),
            "censored": bool(cen[0]), "refined": bool(ref[0]),
            "best_loss": float(np.min(np.where(np.isfinite(mean), mean, np.inf))),
            "grid_argmin": float(x[k[0]]) if k[0] >= 0 else math.nan,
            "loss_at_optimum": float(loss[0]),
            "boot_censored_frac": float(boot_cen.mean()),
            "n_seeds": S, "n_lr": len(x), "n_diverged": int(np.isinf(M).sum()),
            "lr_min": float(x.min()), "lr_max": float(x.max()),
        })
    return pd.DataFrame.from_records(records)


# ------------------------------------------------------------------------------------------------
# Drift across sizes
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trend:
    """Fitted ``log2 η* = intercept + slope · log2 size``, i.e. ``η*(size) ∝ size^slope``."""

    intercept: float
    slope: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    crit: float  # two-sided 95 % critical value used for the intervals (normal or Student t)
    sizes: tuple[float, ...] = field(default_factory=tuple)

    @property
    def exponent(self) -> float:
        """k in η* ∝ size^k."""
        return self.slope

    @property
    def slope_se(self) -> float:
        return math.sqrt(self.cov[1][1])

    def predict_log2_lr(self, size: float) -> float:
        return self.intercept + self.slope * math.log2(size)

    def interval(self, size: float) -> tuple[float, float]:
        """95 % interval of the fitted log2 η* at ``size`` (uncertainty of the trend line)."""
        x = math.log2(size)
        var = self.cov[0][0] + 2 * x * self.cov[0][1] + x * x * self.cov[1][1]
        half = self.crit * math.sqrt(max(var, 0.0))
        centre = self.predict_log2_lr(size)
        return centre - half, centre + half

    def predict_lr(self, size: float) -> float:
        """Predicted optimal learning rate at ``size`` (extrapolating the fitted power law)."""
        return 2.0 ** self.predict_log2_lr(size)


def fit_trend(sizes: Sequence[float], log2_eta: Sequence[float], se: Sequence[float]) -> Trend:
    """Weighted least squares of log2 η̂* on log2 size with weights 1/SE².

    The SEs come from the bootstrap (floored at the grid half-step). When the scatter exceeds them
    (reduced χ² > 1) the covariance is scaled by it and Student-t quantiles are used, so an
    underestimated SE cannot make a drift look significant.
    """
    x = np.log2(np.asarray(sizes, dtype=float))
    y = np.asarray(log2_eta, dtype=float)
    s = np.asarray(se, dtype=float)
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise DeeplimitError("a trend needs at least two distinct sizes with an uncensored optimum; extend "
                             "the LR grid where the argmin sits on an edge, or add sizes")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise DeeplimitError(f"standard errors must be positive and finite, got {s.tolist()}")
    w = 1.0 / s**2
    X = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    a, b = cov @ (X.T @ (w * y))
    n = len(x)
    crit = float(stats.norm.ppf(0.975))
    if n > 2:
        chi2 = float(np.sum(w * (y - a - b * x) ** 2))
        birge = chi2 / (n - 2)
        if birge > 1:
            cov = cov * birge
            crit = float(stats.t.ppf(0.975, n - 2))
    return Trend(intercept=float(a), slope=float(b),
                 cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
                 crit=crit, sizes=tuple(float(v) for v in np.asarray(sizes, dtype=float)))




@dataclass(frozen=True)
class PairedDifference:
    """Mean of paired differences ``a − b`` (one per seed) with its 95 % Student-t interval."""

    mean: float
    lo: float
    hi: float
    n: int
    margin: float = 0.0

    @property
    def verdict(self) -> str:
        """``"a < b"`` / ``"a > b"`` when the interval excludes 0; ``"equivalent"`` when it lies within
        ±margin (margin > 0); ``"inconclusive (1 seed)"`` with fewer than two pairs; else ``"inconclusive"``."""
        if self.n < 2 or not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return "inconclusive (1 seed)" if self.n < 2 else "inconclusive"
        if self.margin > 0 and -self.margin <= self.lo and self.hi <= self.margin:
            return "equivalent"
        if self.hi < 0:
            return "a < b"
        if self.lo > 0:
            return "a > b"
        return "inconclusive"

    def text(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        if self.n < 2:
            return f"{self.mean:+.4g}{u} (1 seed: no interval)"
        return f"{self.mean:+.4g}{u} (95% CI {self.lo:+.4g} to {self.hi:+.4g}, {self.n} paired seeds)"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.lo, "ci_high": self.hi, "n": self.n, "margin": self.margin,
                "verdict": self.verdict}


def paired_difference(a: Sequence[float], b: Sequence[float], margin: float = 0.0) -> PairedDifference:
    """Paired comparison of ``a`` and ``b`` (same seeds, same order): mean of ``a − b`` with the 95 %
    interval mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n. Pairs with a non-finite member are dropped. With one pair the
    interval is NaN (never zero-width by construction)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise DeeplimitError(f"paired_difference needs two 1-D sequences of the same length, got shapes "
                             f"{a.shape} and {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, margin)
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, 1, margin)
    half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDifference(mean, mean - half, mean + half, n, margin)


def _per_seed(sub: pd.DataFrame, size: str) -> dict[str, dict[float, float]]:
    """seed → {size: that seed's uncensored η̂*} from the summary's per-seed columns."""
    out: dict[str, dict[float, float]] = {}
    if "per_seed_argmins" not in sub or "seed_ids" not in sub:
        return out
    for _, r in sub.iterrows():
        ests = str(r["per_seed_argmins"]).split(";")
        cens = str(r.get("per_seed_censored", "")).split(";") if "per_seed_censored" in r else ["0"] * len(ests)
        for sid, est, cen in zip(str(r["seed_ids"]).split(";"), ests, cens):
            v = float(est)
            if math.isfinite(v) and cen != "1":
                out.setdefault(sid, {})[float(r[size])] = v
    return out


def _ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def per_seed_drifts(usable: pd.DataFrame, size: str) -> dict[str, float]:
    """seed → that seed's own drift: OLS slope of its uncensored η̂* on log2 size, times log2(max/min) of the
    ``usable`` sizes (one group's uncensored summary rows). Seeds with fewer than two sizes are left out."""
    xs = np.log2(usable[size].to_numpy(float))
    span = float(xs.max() - xs.min()) if len(xs) else math.nan
    out = {}
    for sid, est in _per_seed(usable, size).items():
        x = np.log2(np.array(list(est), dtype=float))
        if len(x) >= 2 and np.ptp(x) > 0:
            out[sid] = _ols_slope(x, np.array(list(est.values()))) * span
    return out


def drift_interval(usable: pd.DataFrame, size: str, drift: float) -> tuple[float, float, int, float, float]:
    """95 % interval of the drift over ``usable`` sizes (uncensored rows of one group of the summary):
    ``(lo, hi, n_seeds, seed half-width, grid half-width)``. See the module docstring."""
    xs = np.log2(usable[size].to_numpy(float))
    drifts = list(per_seed_drifts(usable, size).values())
    span = float(xs.max() - xs.min())
    n = len(drifts)
    xc = xs - xs.mean()
    step = (2 * usable["half_step"].to_numpy(float)) if "half_step" in usable else np.ones(len(xs))
    unrefined = ~usable["refined"].astype(bool).to_numpy() if "refined" in usable else np.ones(len(xs), bool)
    var_grid = np.where(unrefined, step**2 / 12, 0.0)
    h_grid = 1.96 * span * math.sqrt(float((xc**2 * var_grid).sum())) / float((xc**2).sum())
    if n < 2:
        return math.nan, math.nan, n, math.nan, h_grid
    h_seed = float(stats.t.ppf(0.975, n - 1) * np.std(drifts, ddof=1) / math.sqrt(n))
    half = math.hypot(h_seed, h_grid)
    return drift - half, drift + half, n, h_seed, h_grid


def _fmt_size(v: float) -> str:
    return f"{v:g}"


def drift_table(summary: pd.DataFrame, group: str | Sequence[str] = "rule", size: str = "depth"
                ) -> tuple[pd.DataFrame, dict[tuple, Trend]]:
    """Descriptive drift table per group (``slope, drift, drift_ci, range`` …, and ``degrades`` when the best
    loss breaks at the largest size) and the fitted trends. It decides nothing: the verdict columns come from
    :func:`slope_table` (:func:`analyze` joins the two)."""
    g = _cols(group)
    _require(summary, [*g, size, "log2_eta_star", "se", "censored"], "the summary table")
    unit = SIZE_UNITS.get(size, size)
    rows, trends = [], {}
    for keys, sub in summary.groupby(g, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        usable = sub[~sub["censored"].astype(bool) & np.isfinite(sub["log2_eta_star"])]
        n_cen = int(sub["censored"].astype(bool).sum())
        n_none = int((~np.isfinite(sub["log2_eta_star"])).sum())
        row: dict = {**dict(zip(g, keys)), "n_sizes": len(sub), "n_used": len(usable), "n_censored": n_cen,
                     "n_no_optimum": n_none, "size_min": math.nan, "size_max": math.nan,
                     "slope": math.nan, "slope_ci_low": math.nan, "slope_ci_high": math.nan,
                     "intercept": math.nan, "drift": math.nan, "drift_ci_low": math.nan,
                     "drift_ci_high": math.nan, "n_seed_drifts": 0, "ci_seed_half": math.nan,
                     "ci_grid_half": math.nan, "range": math.nan, "degrades": False, "degrade_text": "",
                     "best_loss_min": float(sub["best_loss"].min()) if "best_loss" in sub else math.nan}
        notes = []
        if n_cen:
            notes.append(f"{n_cen} size(s) with the optimum on a grid edge (censored, not used)")
        if n_none:
            notes.append(f"{n_none} size(s) diverged at every LR")
        if len(usable) >= 2 and usable[size].nunique() >= 2:
            trend = fit_trend(usable[size].to_numpy(float), usable["log2_eta_star"].to_numpy(float),
                              usable["se"].to_numpy(float))
            trends[keys] = trend
            smin, smax = float(usable[size].min()), float(usable[size].max())
            span = math.log2(smax / smin)
            d = trend.slope * span
            dlo, dhi, n_seed, h_seed, h_grid = drift_interval(usable, size, d)
            row.update(size_min=smin, size_max=smax, slope=trend.slope, slope_ci_low=dlo / span,
                       slope_ci_high=dhi / span, intercept=trend.intercept, drift=d,
                       drift_ci_low=dlo, drift_ci_high=dhi, n_seed_drifts=n_seed, ci_seed_half=h_seed,
                       ci_grid_half=h_grid,
                       range=float(usable["log2_eta_star"].max() - usable["log2_eta_star"].min()))
        # An η* that barely moves means nothing if the model itself breaks at size: SP at depth diverges
        # (TP6 Fig. 20) while its surviving LRs still put the argmin near the same place. Flag it.
        if "best_loss" in sub and len(sub) >= 2:
            ordered = sub.sort_values(size)
            first, last = float(ordered["best_loss"].iloc[0]), float(ordered["best_loss"].iloc[-1])
            row.update(best_loss_first=first, best_loss_last=last)
            if not math.isfinite(last) or loss_rises(first, last) or n_none:
                row.update(degrades=True, degrade_text=(
                    f"the best loss goes from {first:.3g} at {_fmt_size(ordered[size].iloc[0])} to {last:.3g} at "
                    f"{_fmt_size(ordered[size].iloc[-1])} {unit}"))
        row["notes"] = "; ".join(notes)
        row["drift_ci"] = (f"[{row['drift_ci_low']:+.2f}, {row['drift_ci_high']:+.2f}]"
                           if math.isfinite(row["drift_ci_low"]) else "")
        rows.append(row)
    return pd.DataFrame.from_records(rows), trends


def _one_run_per_point(sub: pd.DataFrame, size: str, seed: str) -> pd.DataFrame:
    """One row per (size, seed, log2_lr): runs that differ in a column outside the group are averaged, as the
    seed-mean curves are (a diverged run makes the point +∞)."""
    v = sub["value"].astype(float)
    if "status" in sub.columns:
        v = v.where(~sub["status"].astype(str).eq("diverged"), math.inf)
    sub = sub.assign(value=v.where(np.isfinite(v), math.inf))
    if seed not in sub.columns:
        sub = sub.assign(**{seed: 0})
    return sub.groupby([size, seed, "log2_lr"], as_index=False)["value"].mean()


def slope_table(runs: pd.DataFrame, group: str | Sequence[str] = "rule", size: str = "depth", *,
                margin: float = SLOPE_MARGIN, regret_margin: float = REGRET_MARGIN, seed: str = "seed",
                predicted: dict[tuple, float] | None = None) -> pd.DataFrame:
    """The verdict of each group by the slope statistic (:func:`deeplimit.transfer.statistics.transfer_test`):
    one row per group with ``verdict``, ``verdict_text``, the mean per-seed slope of log2 η̂* per doubling of
    ``size`` with its 95 % interval (``seed_slope``, ``seed_slope_ci_low``, ``seed_slope_ci_high``), the
    transfer regret (``regret``, ``regret_ci_low``, ``regret_ci_high``), both margins and ``n_seeds_slope``.

    ``runs``: one row per run (:func:`final_values`). ``predicted``: group key → the slope per doubling a shift
    must be consistent with (optional). A group with fewer than two sizes is "inconclusive"."""
    g = _cols(group)
    runs = _with_log2_lr(runs)
    _require(runs, [*g, size, "value"], "the runs table")
    unit = SIZE_UNITS.get(size, size)
    rows = []
    for keys, sub in runs.groupby(g, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row: dict = {**dict(zip(g, keys)), "margin": float(margin), "regret_margin": float(regret_margin),
                     "seed_slope": math.nan, "seed_slope_ci_low": math.nan, "seed_slope_ci_high": math.nan,
                     "regret": math.nan, "regret_ci_low": math.nan, "regret_ci_high": math.nan,
                     "n_seeds_slope": 0}
        sizes = sorted(sub[size].astype(float).unique())
        if len(sizes) < 2:
            row.update(verdict="inconclusive", verdict_text=f"inconclusive: one {unit} size, no slope to measure")
            rows.append(row)
            continue
        test = transfer_test(_one_run_per_point(sub, size, seed), size=size, margin=margin,
                             regret_margin=regret_margin, predicted=(predicted or {}).get(keys))
        row.update(verdict=test.verdict, seed_slope=test.slope, seed_slope_ci_low=test.slope_ci[0],
                   seed_slope_ci_high=test.slope_ci[1], regret=test.regret, regret_ci_low=test.regret_ci[0],
                   regret_ci_high=test.regret_ci[1], n_seeds_slope=test.n_seeds,
                   verdict_text=f"{test.reason}; {test.text()}; {_fmt_size(sizes[0])}→{_fmt_size(sizes[-1])} {unit}")
        rows.append(row)
    return pd.DataFrame.from_records(rows)


# ------------------------------------------------------------------------------------------------
# Everything at once
# ------------------------------------------------------------------------------------------------
@dataclass
class TransferAnalysis:
    """Result of :func:`analyze`: curves, summary and drift tables, fitted trends per group."""

    group: list[str]
    size: str
    runs: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    drift: pd.DataFrame
    trends: dict[tuple, Trend]

    def predict_lr(self, group: str | tuple, size: float) -> float:
        """Optimal LR predicted at ``size`` for ``group`` from its fitted trend."""
        key = group if isinstance(group, tuple) else (group,)
        if key not in self.trends:
            raise DeeplimitError(f"no fitted trend for {key} (fitted: {list(self.trends)}); the group needs "
                                 "two sizes with an uncensored optimum")
        return self.trends[key].predict_lr(size)

    def verdicts(self) -> dict[tuple, str]:
        return {tuple(r[c] for c in self.group): r["verdict_text"] for _, r in self.drift.iterrows()}


def analyze(table: pd.DataFrame, metric: str = "objective", group: str | Sequence[str] = "rule",
            size: str = "depth", *, n_boot: int = 1000, rng: int = 0, margin: float = SLOPE_MARGIN,
            regret_margin: float = REGRET_MARGIN) -> TransferAnalysis:
    """Full §11.4 analysis of a long table (or of a one-row-per-run table without a ``metric`` column): curves,
    the η̂* summary, the descriptive drift (:func:`drift_table`) joined with the verdict of the slope statistic
    (:func:`slope_table`, margins from the protocol unless given)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise DeeplimitError(f"n_boot must be a whole number ≥ 1 (bootstrap resamples), got {n_boot!r}; e.g. 1000")
    if not (margin > 0 and regret_margin > 0):
        raise DeeplimitError(f"margin and regret_margin must be positive, got {margin!r} and {regret_margin!r}; "
                             "e.g. margin=0.25 octave per doubling, regret_margin=0.02")
    runs = final_values(table, metric)
    g = _cols(group)
    curves = seed_mean_curves(runs, g, size)
    summary = summarize(runs, g, size, n_boot=n_boot, rng=rng)
    drift, trends = drift_table(summary, g, size)
    slopes = slope_table(runs, g, size, margin=margin, regret_margin=regret_margin)
    drift = drift.merge(slopes, on=g, how="left")
    notes = drift["notes"].fillna("")
    drift["verdict_text"] = [t + (f" ({n})" if n else "") for t, n in zip(drift["verdict_text"], notes)]
    return TransferAnalysis(group=g, size=size, runs=runs, curves=curves, summary=summary, drift=drift,
                            trends=trends)
