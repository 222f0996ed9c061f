"""Statistics that discriminate for learning-rate transfer claims (depth-mup spec §11.4, verdict).

Pure numpy/scipy/pandas. The unit of evidence is one *seed*: every number that decides a verdict is computed
per seed first (η̂* per size, the slope of log2 η̂* on log2 size, the transfer regret), and the interval is a
Student-t interval over those per-seed values. Centre and spread therefore come from the same estimator,
and the run-to-run noise of η̂* (grid resolution, loss noise) is inside every seed's value and so inside the
interval — no separate grid term is added.

Why t over per-seed statistics and not a percentile bootstrap: with n = 3–5 seeds a bootstrap resamples at
most 5 values, its distribution is too narrow by a factor √((n−1)/n) and has no tails beyond the sample's own
extremes; its 95 % percentile interval covers the truth only ≈ 75–85 % of the time at n ≤ 5. The t interval
is exact for normal per-seed values and robust for mildly skewed ones; ``tests/test_transfer_statistics.py``
checks its coverage on simulated experiments (400 × 5 seeds → 90–99 %).

* :func:`fit_optimum`, :func:`refine_grid` (from :mod:`deeplimit.transfer.optimum`) — η̂* of one curve (one
  rule, size, seed) by a weighted quadratic in log2 η around the grid argmin (:class:`SeedOptimum`, with
  ``loss_at`` to read the loss at another LR); the second-pass LR points of a two-pass search.
* :func:`transfer_test` — one rule's verdict: slope of log2 η̂* per doubling of the size, transfer regret,
  "transfers" / "shifts" / "degrades" / "inconclusive" (:class:`TransferTest`).
* :func:`paired_slope_difference` — rule a's slope minus rule b's, paired by seed (:class:`PairedSlope`).
* :func:`relabelling` — detects a rule that is another one with the LR relabelled (:class:`Relabelling`):
  such a control calibrates the estimator and is not evidence.

Margins (``margin`` per doubling for the slope, ``regret_margin`` as a fraction of the best loss) are
pre-registered in the report's protocol, never tuned on the data they decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import SeedOptimum, fit_optimum, json_safe, refine_grid

__all__ = [
    "SeedOptimum",
    "fit_optimum",
    "refine_grid",
    "TransferTest",
    "transfer_test",
    "PairedSlope",
    "paired_slope_difference",
    "Relabelling",
    "relabelling",
    "CENSORED_FRACTION",
    "DEGRADE_RATIO",
    "loss_rises",
]

DEGRADE_RATIO = 1.5  # best loss at the largest size above 1.5x the smallest size's: the rule breaks there

# More than this fraction of (seed, size) optima on a grid edge and the slope is not estimated: the
# uncensored ones are a selected subset (the edge ones are the extreme η*), so their mean would be biased.
CENSORED_FRACTION = 1.0 / 3.0


def loss_rises(first: float, last: float) -> bool:
    """Whether the best loss at the largest size, ``last``, exceeds ``DEGRADE_RATIO`` × the smallest size's
    ``first``. A ratio of losses means something only for a positive loss: a fitted best loss at or below 0 (a
    sharp curve's quadratic vertex on a coarse grid) would read −0.0028 against −0.0028 as a rise of more than
    1.5×, so a non-positive or non-finite ``first`` never counts as a rise."""
    return math.isfinite(first) and first > 0 and last > DEGRADE_RATIO * first


# ------------------------------------------------------------------------------------------------
# Tables → per-seed optima
# ------------------------------------------------------------------------------------------------
def _fmt(v: float, spec: str = "+.2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    out = format(v, spec)
    if float(out) == 0:  # no "−0.00" for a mean that is zero up to rounding
        out = format(0.0, spec)
    return out.replace("-", "−")


def _t_interval(values: Sequence[float], level: float) -> tuple[float, tuple[float, float]]:
    """Mean and two-sided Student-t ``level`` interval of ``values`` (NaN interval with < 2 values; a +∞
    value makes the mean and the upper end +∞)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return math.nan, (math.nan, math.nan)
    if np.any(np.isposinf(v)):
        return math.inf, (math.nan, math.inf)
    mean = float(v.mean())
    if v.size < 2:
        return mean, (math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, (mean - half, mean + half)


@dataclass(frozen=True)
class _Table:
    """One rule's runs as arrays sorted by (seed, size, log2_lr); value +∞ where a run diverged."""

    seed: np.ndarray  # labels (object)
    size: np.ndarray
    log2_lr: np.ndarray
    value: np.ndarray
    bounds: tuple[int, ...]  # start of each (seed, size) curve, then len

    def curves(self):
        """Yield ((seed, size), log2_lr, value) per curve."""
        for i, j in zip(self.bounds[:-1], self.bounds[1:]):
            yield (self.seed[i], float(self.size[i])), self.log2_lr[i:j], self.value[i:j]


def _prepare(runs: pd.DataFrame, size: str, what: str) -> _Table:
    """One row per run with columns ``size``, ``seed`` (optional: one seed), ``log2_lr`` (or ``lr``), ``value``
    (non-finite or ``status == 'diverged'`` → +∞). Plain arrays from here on: this runs inside simulations."""
    if not isinstance(runs, pd.DataFrame):
        raise DeeplimitError(f"{what} must be a pandas DataFrame with columns {size!r}, 'seed', 'log2_lr' (or 'lr'), "
                             f"'value'; got {type(runs).__name__}")
    cols = list(runs.columns)
    if "log2_lr" in cols:
        lr = pd.to_numeric(runs["log2_lr"], errors="coerce").to_numpy(float)
    elif "lr" in cols:
        lr = np.log2(pd.to_numeric(runs["lr"], errors="coerce").to_numpy(float))
    else:
        lr = None
    missing = [c for c in (size, "value") if c not in cols] + ([] if lr is not None else ["log2_lr"])
    if missing:
        raise DeeplimitError(f"{what} lacks columns {missing} (has {cols}); pass size= the size column's name "
                             "or add the columns (one row per run: size, seed, log2_lr, value)")
    if runs.empty:
        raise DeeplimitError(f"{what} is empty; run the sweep (or select the right group) first")
    if not np.all(np.isfinite(lr)):
        raise DeeplimitError(f"{what} has runs without a finite learning rate; drop them or fill log2_lr")
    value = pd.to_numeric(runs["value"], errors="coerce").to_numpy(float)
    if "status" in cols:
        value = np.where(runs["status"].astype(str).to_numpy() == "diverged", math.inf, value)
    value = np.where(np.isfinite(value), value, math.inf)
    sz = pd.to_numeric(runs[size], errors="coerce").to_numpy(float)
    if not (np.all(np.isfinite(sz)) and np.all(sz > 0)):
        raise DeeplimitError(f"column {size!r} must hold positive numbers (the model size of each run)")
    codes, labels = pd.factorize(runs["seed"] if "seed" in cols else pd.Series(np.zeros(len(runs), int)))
    lr = np.round(lr, 9)  # grid points computed two ways (log2 of lr, a linspace) must compare equal
    order = np.lexsort((lr, sz, codes))
    codes, sz, lr, value = codes[order], sz[order], lr[order], value[order]
    new_curve = np.r_[True, (codes[1:] != codes[:-1]) | (sz[1:] != sz[:-1])]
    if np.any(~new_curve[1:] & (lr[1:] == lr[:-1])):
        raise DeeplimitError(f"{what} has several runs with the same ({size}, seed, log2_lr); pass ONE rule's runs "
                             "(select one group, e.g. runs[runs.rule == 'depth_mup'])")
    seeds = np.asarray(labels, dtype=object)[codes]
    seeds = np.array([v.item() if isinstance(v, np.generic) else v for v in seeds], dtype=object)
    return _Table(seed=seeds, size=sz, log2_lr=lr, value=value,
                  bounds=(*np.flatnonzero(new_curve).tolist(), len(lr)))


def _optima(table: _Table, points: int) -> dict[tuple[Any, float], SeedOptimum]:
    """(seed, size) → that curve's :func:`fit_optimum`."""
    return {key: fit_optimum(x, y, points=points) for key, x, y in table.curves()}


def _slopes(optima: dict[tuple[Any, float], SeedOptimum]) -> dict[Any, float]:
    """seed → OLS slope of its uncensored, finite log2 η̂* on log2 size (per doubling); seeds with fewer than
    two distinct sizes are left out."""
    by_seed: dict[Any, list[tuple[float, float]]] = {}
    for (seed, sz), opt in optima.items():
        if not opt.censored and math.isfinite(opt.log2_lr):
            by_seed.setdefault(seed, []).append((math.log2(sz), opt.log2_lr))
    out = {}
    for seed, pts in by_seed.items():
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        if len(x) >= 2 and np.ptp(x) > 0:
            xc = x - x.mean()
            out[seed] = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    return out


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise DeeplimitError(f"level must be a confidence level in (0, 1), got {level!r}; e.g. 0.95")


# ------------------------------------------------------------------------------------------------
# One rule's transfer test
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferTest:
    """Verdict of :func:`transfer_test` for one rule (slopes in log2 η* per doubling of the size; regret as a
    fraction of the best loss at the largest size). ``n_seeds``: seeds with a slope (≥ 2 uncensored sizes);
    ``n_censored`` of ``n_optima`` (seed, size) optima lie on a grid edge; ``per_seed_regret`` holds the seeds
    whose base and largest-size optima are both uncensored."""

    slope: float
    slope_ci: tuple[float, float]
    margin: float
    regret: float
    regret_ci: tuple[float, float]
    regret_margin: float
    predicted: float | None
    n_seeds: int
    n_censored: int
    per_seed: dict[Any, float]
    verdict: str
    reason: str
    level: float = 0.95
    n_optima: int = 0
    per_seed_regret: dict[Any, float] = field(default_factory=dict)
    base: float = math.nan
    largest: float = math.nan
    best_loss_base: float = math.nan
    best_loss_largest: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN and ±∞ → None)."""
        return json_safe({
            "slope": self.slope, "slope_ci": self.slope_ci, "margin": self.margin, "regret": self.regret,
            "regret_ci": self.regret_ci, "regret_margin": self.regret_margin, "predicted": self.predicted,
            "n_seeds": self.n_seeds, "n_censored": self.n_censored, "n_optima": self.n_optima,
            "per_seed": self.per_seed, "per_seed_regret": self.per_seed_regret, "verdict": self.verdict,
            "reason": self.reason, "level": self.level, "base": self.base, "largest": self.largest,
            "best_loss_base": self.best_loss_base, "best_loss_largest": self.best_loss_largest})

    def text(self) -> str:
        """One line, e.g. ``slope +0.04 [−0.08, +0.16] /doubling (margin ±0.25), regret 0.4% [0.1, 0.8] (< 2%)``."""
        lo, hi = self.slope_ci
        s = f"slope {_fmt(self.slope)} [{_fmt(lo)}, {_fmt(hi)}] /doubling (margin ±{self.margin:g})"
        if self.predicted is not None:
            s += f", predicted {_fmt(self.predicted)}"
        rlo, rhi = self.regret_ci
        def pct(v: float) -> str:  # two significant digits below 10 %, whole percents above
            if math.isnan(v) or math.isinf(v):
                return "n/a" if math.isnan(v) else "∞"
            return _fmt(100 * v, ".2g" if abs(100 * v) < 10 else ".0f")

        s += (f", regret {pct(self.regret)}% [{pct(rlo)}, {pct(rhi)}] (< {100 * self.regret_margin:g}%)"
              f"; {self.n_seeds} seed{'' if self.n_seeds == 1 else 's'}")
        return s


def transfer_test(runs: pd.DataFrame, *, size: str, margin: float, regret_margin: float,
                  predicted: float | None = None, level: float = 0.95, base: float | None = None,
                  points: int = 5) -> TransferTest:
    """Transfer verdict for ONE rule from its runs (columns ``size``, ``seed``, ``log2_lr`` or ``lr``, ``value``;
    one row per run; diverged = non-finite value or status 'diverged').

    Per seed and size: :func:`fit_optimum`. Per seed: the OLS slope b_s of log2 η̂* on log2 size (per
    doubling; censored optima left out) and the transfer regret
    r_s = (L_max,s(η̂*_base,s) − min L_max,s) / min L_max,s — the loss at the largest size at that seed's
    base-size optimum (base = the smallest size unless given) over that seed's best loss there. Centre and
    interval of each: mean and Student-t ``level`` interval over seeds.

    Verdict (in this order):

    * "degrades": the seed-mean best loss at the largest size exceeds ``DEGRADE_RATIO`` × the smallest size's,
      or every run at the largest size diverged — an η* that stays put means nothing if the model breaks;
    * "inconclusive" (too few seeds) with < 2 seeds; (censored) with > ⅓ of the (seed, size) optima on a grid
      edge or < 2 seeds left with a slope;
    * "transfers": the slope interval ⊂ [−margin, +margin] — containment of the two-sided ``level`` interval
      is a TOST with (1 − level)/2 on each side, so the interval shown is the one that decides — and the
      regret interval's upper end < ``regret_margin``;
    * "shifts": the slope interval excludes 0 and, when ``predicted`` (per doubling) is given, comes within
      ``margin`` of it;
    * otherwise "inconclusive" with the reason (straddles the margin, regret too large or unknown, shift not
      as predicted).
    """
    _check_level(level)
    if not (margin > 0 and regret_margin > 0):
        raise DeeplimitError(f"margin and regret_margin must be positive, got {margin!r} and {regret_margin!r}; "
                             "take them from the pre-registered protocol (e.g. margin=0.25 per doubling, "
                             "regret_margin=0.02)")
    table = _prepare(runs, size, "the runs table")
    sizes = sorted(set(table.size.tolist()))
    if len(sizes) < 2:
        raise DeeplimitError(f"transfer_test needs at least two values of {size!r}, got {sizes}; add sizes")
    base_size = float(sizes[0] if base is None else base)
    if base_size not in sizes:
        raise DeeplimitError(f"base={base!r} is not one of the sizes {sizes}")
    largest = float(sizes[-1])
    if base_size == largest:
        raise DeeplimitError("base must be smaller than the largest size (the regret transfers the base η* there)")
    optima = _optima(table, points)
    seeds = sorted(set(table.seed.tolist()), key=str)
    n_opt = len(optima)
    n_cen = sum(o.censored for o in optima.values())
    slopes = _slopes(optima)
    slope, slope_ci = _t_interval(list(slopes.values()), level)

    regrets: dict[Any, float] = {}
    for seed in seeds:
        ob, ol = optima.get((seed, base_size)), optima.get((seed, largest))
        if ob is None or ol is None or ob.censored or ol.censored or not math.isfinite(ob.log2_lr):
            continue
        if not math.isfinite(ol.best_loss) or ol.best_loss <= 0:
            continue
        at = ol.loss_at(ob.log2_lr)
        if not math.isnan(at):
            regrets[seed] = (at - ol.best_loss) / ol.best_loss
    regret, regret_ci = _t_interval(list(regrets.values()), level)

    def mean_best(sz: float) -> float:
        v = [o.best_loss for (s, z), o in optima.items() if z == sz]
        return float(np.mean(v)) if v else math.nan

    best_first, best_last = mean_best(sizes[0]), mean_best(largest)
    all_div = bool(np.all(np.isinf(table.value[table.size == largest])))
    common = dict(slope=slope, slope_ci=slope_ci, margin=float(margin), regret=regret, regret_ci=regret_ci,
                  regret_margin=float(regret_margin), predicted=None if predicted is None else float(predicted),
                  n_seeds=len(slopes), n_censored=n_cen, per_seed=slopes, level=float(level), n_optima=n_opt,
                  per_seed_regret=regrets, base=base_size, largest=largest, best_loss_base=mean_best(base_size),
                  best_loss_largest=best_last)
    lo, hi = slope_ci
    pct = f"{100 * level:g}%"

    if all_div or loss_rises(best_first, best_last):
        why = ("every run diverged" if all_div else
               f"the best loss rises from {best_first:.4g} to {best_last:.4g} (> {DEGRADE_RATIO:g}×)")
        return TransferTest(verdict="degrades", reason=f"degrades: at {size} {largest:g} {why}", **common)
    if len(seeds) < 2:
        return TransferTest(verdict="inconclusive", reason=f"inconclusive (too few seeds): {len(seeds)} seed, no "
                            "interval; run ≥ 3 seeds", **common)
    if n_cen > CENSORED_FRACTION * n_opt or len(slopes) < 2:
        return TransferTest(verdict="inconclusive", reason=f"inconclusive (censored): {n_cen} of {n_opt} optima on a "
                            f"grid edge, {len(slopes)} seeds with a slope; widen the LR grid", **common)
    inside = -margin <= lo and hi <= margin
    regret_ok = math.isfinite(regret_ci[1]) and regret_ci[1] < regret_margin
    if inside and regret_ok:
        return TransferTest(verdict="transfers", reason=f"transfers: the {pct} slope interval [{_fmt(lo)}, {_fmt(hi)}] "
                            f"lies within ±{margin:g} per doubling and the regret's upper end "
                            f"{100 * regret_ci[1]:.2g}% is below {100 * regret_margin:g}%", **common)
    excludes0 = lo > 0 or hi < 0
    if excludes0:
        if predicted is None or (lo - margin <= predicted <= hi + margin):
            as_pred = "" if predicted is None else f", consistent with the predicted {_fmt(predicted)} (±{margin:g})"
            return TransferTest(verdict="shifts", reason=f"shifts: the {pct} slope interval [{_fmt(lo)}, {_fmt(hi)}] "
                                f"per doubling excludes 0{as_pred}", **common)
        return TransferTest(verdict="inconclusive", reason=f"inconclusive (not as predicted): η* moves "
                            f"[{_fmt(lo)}, {_fmt(hi)}] per doubling, more than {margin:g} from the predicted "
                            f"{_fmt(predicted)}", **common)
    if inside:
        unknown = ("no seed with a positive best loss at the largest size: the regret is a fraction of that loss"
                   if math.isfinite(best_last) and best_last <= 0 else
                   "no seed with an uncensored optimum at both the base and the largest size")
        rtxt = (f"unknown ({unknown})" if math.isnan(regret_ci[1]) else
                f"upper end {_fmt(100 * regret_ci[1], '.2g')}% is not below {100 * regret_margin:g}%")
        return TransferTest(verdict="inconclusive", reason=f"inconclusive (regret): the slope is within ±{margin:g} "
                            f"but the regret's {rtxt}", **common)
    return TransferTest(verdict="inconclusive", reason=f"inconclusive (straddles): the {pct} slope interval "
                        f"[{_fmt(lo)}, {_fmt(hi)}] per doubling neither lies within ±{margin:g} nor excludes 0",
                        **common)


# ------------------------------------------------------------------------------------------------
# Two rules: paired slope difference, relabelled controls
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedSlope:
    """Per-seed slope of rule a minus rule b (log2 η* per doubling), paired by seed, with its t interval."""

    difference: float
    ci: tuple[float, float]
    n: int
    per_seed: dict[Any, float]
    verdict: str
    reason: str
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN → None)."""
        return json_safe({"difference": self.difference, "ci": self.ci, "n": self.n, "per_seed": self.per_seed,
                      "verdict": self.verdict, "reason": self.reason, "level": self.level})

    def text(self) -> str:
        lo, hi = self.ci
        return (f"slope a − b {_fmt(self.difference)} [{_fmt(lo)}, {_fmt(hi)}] /doubling ({self.n} paired seeds): "
                f"{self.verdict}")


def paired_slope_difference(runs_a: pd.DataFrame, runs_b: pd.DataFrame, *, size: str, level: float = 0.95,
                            points: int = 5) -> PairedSlope:
    """Rule a's per-seed slope of log2 η̂* on log2 ``size`` minus rule b's, paired by seed (e.g. Depth-μP − ODE:
    the same seeds give the same data order and initialisation, so the pairing removes their shared noise).

    Seeds with a slope in both rules (≥ 2 uncensored sizes each) are paired; the interval is Student-t at
    ``level`` over the per-seed differences. Verdict: "a < b" / "a > b" when it excludes 0, else
    "no difference shown" (also with fewer than 2 pairs).
    """
    _check_level(level)
    sa = _slopes(_optima(_prepare(runs_a, size, "runs_a"), points))
    sb = _slopes(_optima(_prepare(runs_b, size, "runs_b"), points))
    seeds = sorted(set(sa) & set(sb), key=str)
    diffs = {s: sa[s] - sb[s] for s in seeds}
    mean, (lo, hi) = _t_interval(list(diffs.values()), level)
    n = len(diffs)
    if n < 2:
        return PairedSlope(mean, (lo, hi), n, diffs, "no difference shown",
                           f"{n} seed(s) with a slope under both rules; pair ≥ 3 seeds", float(level))
    if hi < 0:
        v = "a < b"
    elif lo > 0:
        v = "a > b"
    else:
        v = "no difference shown"
    why = f"the {100 * level:g}% interval [{_fmt(lo)}, {_fmt(hi)}] per doubling over {n} paired seeds"
    why += " includes 0" if v == "no difference shown" else " excludes 0"
    return PairedSlope(mean, (lo, hi), n, diffs, v, why, float(level))


@dataclass(frozen=True)
class Relabelling:
    """Rule a's losses at log2 η + ``shifts[size]`` equal rule b's at log2 η: b is a with the LR relabelled.

    ``shifts``: size → c(size) = log2 η*_a − log2 η*_b; ``unchecked``: sizes with no two common grid points at
    any shift; ``linear``: c is affine in log2 size (a pure LR-exponent difference, ``exponent`` per doubling,
    ``intercept`` at size 1). Such a control measures only the estimator: its η* slope is rule a's minus
    ``exponent`` by construction.
    """

    shifts: dict[float, float]
    unchecked: tuple[float, ...]
    linear: bool
    exponent: float
    intercept: float
    n_compared: int

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"shifts": self.shifts, "unchecked": self.unchecked, "linear": self.linear,
                      "exponent": self.exponent, "intercept": self.intercept, "n_compared": self.n_compared})

    def text(self) -> str:
        s = ", ".join(f"{k:g}: {_fmt(v, '+g')}" for k, v in self.shifts.items())
        kind = (f"η* exponent differs by {_fmt(self.exponent, '+.3g')} per doubling" if self.linear
                else "shift not affine in log2 size")
        return f"relabelled LR (shift per size {s}; {kind}; {self.n_compared} losses compared)"


def _equal(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    both_inf = np.isinf(a) & np.isinf(b)
    fin = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):  # ∞ − ∞ where both diverged: decided by both_inf
        close = np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b))
    return bool(np.all(both_inf | (fin & close)))


def relabelling(runs_a: pd.DataFrame, runs_b: pd.DataFrame, *, size: str, rtol: float = 1e-6) -> Relabelling | None:
    """Detect an exact reparametrization: for every size, a shift c(size) of the log2 LR such that rule a's loss
    at log2_lr + c equals rule b's at log2_lr (within ``rtol``; diverged matches diverged) on every common grid
    point of every common seed.

    Candidate shifts are the differences between a's and b's grid points (so multiples of the grid step on a
    shared lattice); a candidate needs ≥ 2 common points (with a finite loss in a or b) for every seed. Where
    several shifts match (a flat curve), the one with the most common points, then the smallest |c|, is kept.
    A size where no candidate has ≥ 2 common points is *unchecked*. Returns None when some checked size has no
    matching shift, when the rules share no seed, or when no size could be checked.
    """
    if not rtol >= 0:
        raise DeeplimitError(f"rtol must be ≥ 0, got {rtol!r}")
    ta, tb = _prepare(runs_a, size, "runs_a"), _prepare(runs_b, size, "runs_b")
    seeds = sorted(set(ta.seed.tolist()) & set(tb.seed.tolist()), key=str)
    sizes = sorted(set(ta.size.tolist()) & set(tb.size.tolist()))
    if not seeds or not sizes:
        return None
    la = {k: dict(zip(x.tolist(), y.tolist())) for k, x, y in ta.curves()}
    lb = {k: dict(zip(x.tolist(), y.tolist())) for k, x, y in tb.curves()}
    shifts: dict[float, float] = {}
    unchecked: list[float] = []
    n_compared = 0
    for sz in sizes:
        curves = [(la.get((s, sz), {}), lb.get((s, sz), {})) for s in seeds]
        cands = sorted({round(xa - xb, 9) for ca, cb in curves for xa in ca for xb in cb}, key=lambda c: (abs(c), c))
        best: tuple[int, float] | None = None
        any_checked = False
        for c in cands:
            counts = []
            ok = True
            for ca, cb in curves:
                common = [xb for xb in cb if round(xb + c, 9) in ca]
                ya = np.array([ca[round(xb + c, 9)] for xb in common])
                yb = np.array([cb[xb] for xb in common])
                # Two diverged runs agree but show nothing: only pairs with a finite loss count as compared.
                counts.append(int((np.isfinite(ya) | np.isfinite(yb)).sum()))
                if counts[-1] < 2:
                    break
                ok = ok and _equal(ya, yb, rtol)
            if min(counts) < 2:
                continue
            any_checked = True
            if ok and (best is None or sum(counts) > best[0]):
                best = (sum(counts), c)
        if not any_checked:
            unchecked.append(sz)
            continue
        if best is None:
            return None
        shifts[sz] = best[1]
        n_compared += best[0]
    if not shifts:
        return None
    x = np.log2(np.array(list(shifts), dtype=float))
    y = np.array(list(shifts.values()))
    if len(x) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        linear = bool(np.max(np.abs(y - (intercept + slope * x))) < 1e-6)
    else:
        slope, intercept, linear = math.nan, float(y[0]), False
    return Relabelling(shifts=shifts, unchecked=tuple(unchecked), linear=linear, exponent=float(slope),
                       intercept=float(intercept), n_compared=n_compared)
