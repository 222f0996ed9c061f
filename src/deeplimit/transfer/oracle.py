"""The transfer oracle: optimal learning rate (and batch size, weight decay) at a target scale, with an interval.

From any table of runs (one row per training run: its size variables, learning rate, final loss, optionally
batch size, weight decay, seed and labels) — a CSV or Parquet file, or the long table of one of the project's
own sweeps — the oracle

1. groups the runs by the size variables ``x`` (and the ``group`` columns, one law per value of those),
2. estimates per group and seed the optimal log2 LR — and log2 batch / weight decay where swept inside the
   group — with the report's estimator (:func:`~deeplimit.transfer.oracle_fit.cell_optima`, built on
   :func:`~deeplimit.transfer.optimum.fit_optimum`) — or, with ``batch_estimator="critical"``, the batch as the
   critical batch (:func:`~deeplimit.transfer.oracle_fit.critical_batch`: the largest batch within a tolerance of
   the best loss); a group's optimum is the mean over its seeds, and a group is *censored* (no estimate) when
   more than ⅓ of its seeds have their optimum on a grid edge,
3. fits ``log2 η* = a + Σᵢ bᵢ log2 xᵢ`` (and ``log2 B*`` likewise) by least squares over the groups, some
   exponents optionally fixed (0 for width under μP), and
4. predicts at targets with a prediction interval that widens with the distance from the fitted sizes.

:func:`fit_oracle` → :class:`Oracle` (``predict``). Tables come in through
:mod:`deeplimit.transfer.oracle_table` (re-exported here); :func:`deeplimit.transfer.oracle_eval.evaluate_oracle`
holds out the largest groups along the first size variable and scores the forecast against them and against
the naive one (reuse the nearest fitted group's optimum). ``deeplimit predict`` is the command line over these.
docs/oracle.md has the laws, their sources and when not to trust the forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle_fit import (
    INTERVALS,
    PowerLaw,
    SeedOptima,
    cell_optima,
    check_batch_estimator,
    fit_power_law,
)
from deeplimit.transfer.oracle_table import (
    apply_where,
    load_runs,
    one_row_per_run,
    parse_at,
    parse_where,
    runs_from_sweep,
)

__all__ = ["load_runs", "runs_from_sweep", "parse_where", "apply_where", "parse_at", "GroupOptimum",
           "Prediction", "Oracle", "fit_oracle", "AXES", "CENSORED_FRACTION"]

AXES = ("lr", "batch", "wd")  # what the oracle predicts, in this order
# More than this fraction of a group's seeds on a grid edge and the group gives no estimate for that axis (as
# deeplimit.transfer.statistics.CENSORED_FRACTION: the uncensored seeds alone would be a biased subset).
CENSORED_FRACTION = 1.0 / 3.0


# ------------------------------------------------------------------------------------------------
# Per-group optima
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupOptimum:
    """One group's optima: ``sizes`` (variable → value), ``group`` (label column → value), ``log2`` (axis →
    mean over seeds of the log2 optimum, NaN when censored), ``censored`` (axis → bool), ``per_seed`` (axis →
    the seeds' values, NaN where censored), ``best_loss`` (mean over seeds), ``flat`` (every run has the same
    loss: no optimum at all)."""

    sizes: dict[str, float]
    group: dict[str, Any]
    log2: dict[str, float]
    censored: dict[str, bool]
    per_seed: dict[str, tuple[float, ...]]
    n_seeds: int
    best_loss: float
    flat: bool = False

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"sizes": self.sizes, "group": self.group, "log2": self.log2, "censored": self.censored,
                          "n_seeds": self.n_seeds, "best_loss": self.best_loss, "flat": self.flat})


@dataclass(frozen=True)
class _Columns:
    x: tuple[str, ...]
    lr: str
    loss: str
    tuned: dict[str, str]  # axis ("batch", "wd") → column
    group: tuple[str, ...]
    seed: str | None
    # How the batch axis is read (not a column, but it travels with the columns' roles to every estimate):
    # "argmin" or "critical", and the critical estimator's relative tolerance (NaN for argmin).
    batch_estimator: str = "argmin"
    batch_tolerance: float = math.nan

    @property
    def critical(self) -> dict[str, float]:
        """Extra axis → tolerance of the axes read as a critical batch (for :func:`cell_optima`)."""
        return {"batch": self.batch_tolerance} if self.batch_estimator == "critical" and "batch" in self.tuned else {}

    def batch_setting(self) -> dict[str, Any]:
        """The fit block's record of the batch estimator (None without a batch axis)."""
        if "batch" not in self.tuned:
            return {"batch_estimator": None, "batch_tolerance": None}
        return {"batch_estimator": self.batch_estimator,
                "batch_tolerance": self.batch_tolerance if self.batch_estimator == "critical" else None}


def _positive(frame: pd.DataFrame, col: str, what: str) -> np.ndarray:
    v = pd.to_numeric(frame[col], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DeeplimitError(f"{what} column {col!r} must hold positive numbers (fitted in log space); row {row} has "
                             f"{frame[col].iloc[row]!r}; drop such rows (--where) or fix the table")
    return v


def _prepare(runs: pd.DataFrame, cols: _Columns) -> pd.DataFrame:
    """Internal frame: size and label columns, ``_seed``, ``_lr`` (log2), ``_loss`` (+∞ when diverged) and
    ``_batch``/``_wd`` (log2)."""
    need = [*cols.x, cols.lr, cols.loss, *cols.tuned.values(), *cols.group] + ([cols.seed] if cols.seed else [])
    missing = [c for c in dict.fromkeys(need) if c not in runs.columns]
    if missing:
        raise DeeplimitError(f"the table lacks column(s) {missing} (columns: {list(runs.columns)}); name the right "
                             "ones with --x/--lr/--loss/--batch/--group")
    clash = [c for c in cols.x if c in (cols.lr, cols.loss, *cols.tuned.values(), *cols.group)]
    if clash:
        raise DeeplimitError(f"size variable(s) {clash} are also the LR, loss, batch or a group column; each column "
                             "plays one part")
    if runs.empty:
        raise DeeplimitError("the table holds no runs")
    out: dict[str, Any] = {c: _positive(runs, c, "size") for c in cols.x}
    out.update({c: runs[c].to_numpy() for c in cols.group})
    out["_seed"] = runs[cols.seed].astype(str).to_numpy() if cols.seed else np.full(len(runs), "0")
    out["_lr"] = np.round(np.log2(_positive(runs, cols.lr, "learning-rate")), 9)
    loss = pd.to_numeric(runs[cols.loss], errors="coerce").to_numpy(float)
    if "status" in runs.columns:
        loss = np.where(runs["status"].astype(str).to_numpy() == "diverged", math.inf, loss)
    out["_loss"] = np.where(np.isfinite(loss), loss, math.inf)
    for axis, c in cols.tuned.items():
        out[f"_{axis}"] = np.round(np.log2(_positive(runs, c, axis)), 9)
    if cols.critical:
        fin = np.isfinite(out["_loss"])
        bad = np.flatnonzero(fin & (out["_loss"] <= 0))
        if bad.size:
            row = int(bad[0])
            raise DeeplimitError(f"the critical batch estimator takes a tolerance relative to the best loss, but loss "
                                 f"column {cols.loss!r} holds {out['_loss'][row]:g} (row {row}, ≤ 0); use a positive "
                                 "loss (e.g. cross-entropy, not a log-likelihood) or --batch-estimator argmin")
    return pd.DataFrame(out)


def group_optima(prep: pd.DataFrame, cols: _Columns, points: int) -> list[GroupOptimum]:
    keys = [*cols.group, *cols.x]
    tuned = list(cols.tuned)
    dup_cols = [*keys, "_seed", "_lr", *(f"_{a}" for a in tuned)]
    if prep.duplicated(dup_cols).any():
        row = prep[prep.duplicated(dup_cols, keep=False)].iloc[0]
        shown = ", ".join(f"{c}={row[c]}" for c in keys)
        raise DeeplimitError(f"several runs share the same group ({shown}), seed and learning rate; add the column "
                             "that tells them apart to --group, --batch or --seed, or select one with --where")
    out: list[GroupOptimum] = []
    # One factorisation of the keys, then numpy slices: a pandas groupby per group and seed costs ~100× more,
    # and the coverage simulations fit thousands of tables.
    gid = prep.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    sid = pd.factorize(prep["_seed"], sort=True)[0]
    order = np.lexsort((sid, gid))
    gid, sid = gid[order], sid[order]
    lr_all, loss_all = prep["_lr"].to_numpy(float)[order], prep["_loss"].to_numpy(float)[order]
    tuned_all = {a: prep[f"_{a}"].to_numpy(float)[order] for a in tuned}
    key_cols = {c: prep[c].to_numpy()[order] for c in keys}
    g_starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    for g0, g1 in zip(g_starts, [*g_starts[1:], len(gid)]):
        key = tuple(key_cols[c][g0] for c in keys)
        for axis in tuned:
            if np.unique(tuned_all[axis][g0:g1]).size < 2:
                raise DeeplimitError(f"--{axis} {cols.tuned[axis]!r} takes one value in the group "
                                     f"{dict(zip(keys, key))}, so its optimum cannot be estimated; drop --{axis} or "
                                     "sweep it inside every group")
        s_starts = g0 + np.flatnonzero(np.r_[True, sid[g0 + 1:g1] != sid[g0:g1 - 1]])
        seeds: list[SeedOptima] = []
        for s0, s1 in zip(s_starts, [*s_starts[1:], g1]):
            extra = {a: v[s0:s1] for a, v in tuned_all.items()}
            seeds.append(cell_optima(lr_all[s0:s1], loss_all[s0:s1], extra, points=points, critical=cols.critical))
        finite = loss_all[g0:g1]
        finite = finite[np.isfinite(finite)]
        flat = finite.size > 1 and float(np.ptp(finite)) <= 1e-12 * max(1.0, float(np.abs(finite).max()))
        log2, cen, per = {}, {}, {}
        for axis in ("lr", *tuned):
            vals = np.array([s.log2[axis] if not s.censored[axis] else math.nan for s in seeds])
            per[axis] = tuple(vals.tolist())
            n_cen = int(np.isnan(vals).sum())
            cen[axis] = flat or n_cen > CENSORED_FRACTION * len(vals) or n_cen == len(vals)
            log2[axis] = math.nan if cen[axis] else float(np.nanmean(vals))
        best = [s.best_loss for s in seeds]
        out.append(GroupOptimum(sizes={c: float(v) for c, v in zip(keys, key) if c in cols.x},
                                group={c: (v.item() if isinstance(v, np.generic) else v)
                                       for c, v in zip(keys, key) if c in cols.group},
                                log2=log2, censored=cen, per_seed=per, n_seeds=len(seeds),
                                best_loss=float(np.mean(best)), flat=bool(flat)))
    return out


# ------------------------------------------------------------------------------------------------
# Laws and predictions
# ------------------------------------------------------------------------------------------------
def _label(group: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all runs"


def _fit_laws(optima: Sequence[GroupOptimum], axes: Sequence[str], x: Sequence[str],
              fixed: Mapping[str, Mapping[str, float]], interval: str, n_boot: int, seed: int) -> PowerLaw | dict:
    out: dict[str, PowerLaw] = {}
    for axis in axes:
        ok = [g for g in optima if not g.censored[axis]]
        n_flat = sum(g.flat for g in optima)
        free = [v for v in x if v not in fixed.get(axis, {})]
        if len(ok) < len(free) + 2:
            where = _label(optima[0].group) if optima else "all runs"
            if not ok:
                raise DeeplimitError(
                    f"no group ({where}) has an interior {axis} optimum: " + (
                        f"{n_flat} of {len(optima)} have a flat loss surface (every run the same loss) and the rest "
                        if n_flat else f"in all {len(optima)} groups ") +
                    f"the best {axis} lies on the edge of its grid; widen the {axis} grid past the optimum")
            if len(ok) < len(optima):
                raise DeeplimitError(
                    f"too few groups for the {axis} law ({where}): {len(ok)} of {len(optima)} have an interior "
                    f"optimum ({len(optima) - len(ok)} on a grid edge{f', {n_flat} flat' if n_flat else ''}) for "
                    f"{len(free) + 1} coefficients and the scatter; widen the {axis} grid, add groups or fix "
                    "exponents (--fix X=VALUE)")
        out[axis] = fit_power_law(axis, {v: [g.sizes[v] for g in ok] for v in x}, [g.log2[axis] for g in ok],
                                  fixed=fixed.get(axis), interval=interval, n_boot=n_boot, seed=seed)
    return out


@dataclass(frozen=True)
class Prediction:
    """The forecast at one target: ``log2`` and ``ci`` per predicted axis (lr, and batch / wd when fitted),
    ``extrapolation``: size variable → how far outside the fitted range the target lies (target / largest or
    smallest fitted value; 1 inside)."""

    at: dict[str, Any]
    group: dict[str, Any]
    log2: dict[str, float]
    ci: dict[str, tuple[float, float]]
    level: float
    extrapolation: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"at", "log2_lr", "log2_lr_ci", "lr", "log2_batch", "log2_batch_ci", "batch", …}`` (None for an axis
        that was not fitted)."""
        d: dict[str, Any] = {"at": self.at}
        for axis in AXES:
            if axis == "wd" and axis not in self.log2:
                continue
            v = self.log2.get(axis)
            d[f"log2_{axis}"] = v
            d[f"log2_{axis}_ci"] = list(self.ci[axis]) if axis in self.ci else None
            d[axis] = None if v is None else 2.0 ** v
        d.update({"group": self.group, "level": self.level, "extrapolation": self.extrapolation})
        return json_safe(d)

    def text(self) -> str:
        where = ", ".join(f"{k}={num(v)}" for k, v in self.at.items())
        parts = []
        for axis in AXES:
            if axis in self.log2:
                lo, hi = self.ci[axis]
                parts.append(f"{axis} {num(2 ** self.log2[axis])} ({100 * self.level:g}% interval "
                             f"{num(2 ** lo)} – {num(2 ** hi)}; log2 {self.log2[axis]:+.2f} [{lo:+.2f}, {hi:+.2f}])")
        far = [f"{k} {r:.3g}× past the fitted range" for k, r in self.extrapolation.items() if r > 1]
        tail = f"  [extrapolating: {'; '.join(far)}]" if far else ""
        return f"at {where}: " + "; ".join(parts) + tail


def num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def _matches(group: Mapping[str, Any], at: Mapping[str, Any]) -> bool:
    for k, v in group.items():
        if k not in at:
            continue
        want = at[k]
        if str(want) == str(v):
            continue
        try:
            if float(want) == float(v):
                continue
        except (TypeError, ValueError):
            pass
        return False
    return True


@dataclass
class Oracle:
    """Fitted laws, one set per value of the group columns. ``laws``: group key (tuple of group values) → axis
    → :class:`~deeplimit.transfer.oracle_fit.PowerLaw`; ``optima``: every group's :class:`GroupOptimum`."""

    x: tuple[str, ...]
    group_columns: tuple[str, ...]
    axes: tuple[str, ...]
    level: float
    laws: dict[tuple, dict[str, PowerLaw]]
    optima: list[GroupOptimum]
    columns: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=lambda: {"batch_estimator": None, "batch_tolerance": None})

    def predict(self, at: Mapping[str, Any]) -> list[Prediction]:
        """Forecasts at ``at`` (size variable → value, optionally group column → value): one per set of laws
        whose group matches (all of them when ``at`` names no group column)."""
        unknown = sorted(set(at) - set(self.x) - set(self.group_columns))
        if unknown:
            raise DeeplimitError(f"--at names {unknown}, which are neither size variables {list(self.x)} nor group "
                                 f"columns {list(self.group_columns)}")
        sizes = {}
        for v in self.x:
            if v not in at:
                raise DeeplimitError(f"--at lacks {v}; give every size variable, e.g. --at "
                                     f"{','.join(f'{w}=…' for w in self.x)}")
            if not (isinstance(at[v], int | float) and not isinstance(at[v], bool) and math.isfinite(at[v])
                    and at[v] > 0):
                raise DeeplimitError(f"--at {v}={at[v]!r} must be a positive number")
            sizes[v] = float(at[v])
        out = []
        for key, laws in self.laws.items():
            group = dict(zip(self.group_columns, key))
            if not _matches(group, at):
                continue
            log2, ci = {}, {}
            for axis, law in laws.items():
                log2[axis] = law.predict(sizes)
                ci[axis] = law.predict_interval(sizes, self.level)
            rng = laws["lr"].x_range
            extra = {v: max(sizes[v] / rng[v][1], rng[v][0] / sizes[v], 1.0) for v in self.x}
            out.append(Prediction(at=dict(at), group=group, log2=log2, ci=ci, level=self.level,
                                  extrapolation=extra))
        if not out:
            raise DeeplimitError(f"--at {at} matches no group; the groups are "
                                 f"{[dict(zip(self.group_columns, k)) for k in self.laws]}")
        return out

    def fit_dict(self) -> dict[str, Any]:
        """The fit as JSON-safe data: the laws per group, the per-group optima, the settings."""
        return json_safe({"x": list(self.x), "group_columns": list(self.group_columns), "axes": list(self.axes),
                          "level": self.level, "columns": self.columns, **self.batch,
                          "laws": [{"group": dict(zip(self.group_columns, k)),
                                    **{a: law.to_dict() for a, law in laws.items()}}
                                   for k, laws in self.laws.items()],
                          "groups": [g.to_dict() for g in self.optima]})

    def text(self) -> str:
        lines = []
        for key, laws in self.laws.items():
            head = f"[{_label(dict(zip(self.group_columns, key)))}] " if self.group_columns else ""
            for axis, law in laws.items():
                how = ""
                if axis == "batch" and self.batch.get("batch_estimator") == "critical":
                    how = f" (critical batch, tolerance {self.batch['batch_tolerance']:g})"
                terms = " ".join(f"{b:+.3f}·log2 {v}{' (fixed)' if v in law.fixed else ''}"
                                 for v, b in law.exponents.items())
                lines.append(f"{head}log2 {axis}*{how} = {law.intercept:+.3f} {terms}   ({law.n_groups} groups, "
                             f"scatter {law.residual_sd:.3f} octaves, {law.df} df)")
        return "\n".join(lines)


def _columns(x: Sequence[str] | str, lr: str, loss: str, batch: str | None, wd: str | None,
             group: Sequence[str] | str, seed: str | None, frame: pd.DataFrame, *,
             estimator: tuple[str, float | None] = ("argmin", None)) -> _Columns:
    xs = (x,) if isinstance(x, str) else tuple(x)
    gs = (group,) if isinstance(group, str) else tuple(group or ())
    if not xs:
        raise DeeplimitError("give at least one size variable (--x N D)")
    if len(set(xs)) != len(xs):
        raise DeeplimitError(f"--x {' '.join(xs)} names a column twice")
    if seed == "seed" and "seed" not in frame.columns:
        seed = None
    tuned = {a: c for a, c in (("batch", batch), ("wd", wd)) if c}
    tol = check_batch_estimator(*estimator)
    if estimator[0] == "critical" and not batch:
        raise DeeplimitError("the critical batch estimator reads the batch axis: name the batch-size column "
                             "(--batch COL) or drop --batch-estimator")
    return _Columns(x=xs, lr=lr, loss=loss, tuned=tuned, group=gs, seed=seed, batch_estimator=estimator[0],
                    batch_tolerance=tol)


def check_settings(level: float, interval: str, fixed: Mapping[str, Mapping[str, float]] | None,
                    axes: Sequence[str]) -> dict[str, dict[str, float]]:
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise DeeplimitError(f"level must be in (0, 1), got {level!r}; e.g. 0.8")
    if interval not in INTERVALS:
        raise DeeplimitError(f"interval must be one of {INTERVALS}, got {interval!r}")
    fixed = {a: dict(v) for a, v in (fixed or {}).items()}
    for a in fixed:
        if a not in axes:
            raise DeeplimitError(f"cannot fix an exponent of the {a} law: the laws fitted are {list(axes)}")
    return fixed


def prepared(runs: pd.DataFrame, x: Sequence[str] | str, lr: str, loss: str, **kw: Any) -> tuple[pd.DataFrame,
                                                                                                    _Columns]:
    if not isinstance(runs, pd.DataFrame):
        raise DeeplimitError(f"runs must be a pandas DataFrame (see load_runs), got {type(runs).__name__}")
    runs, loss = one_row_per_run(runs, loss)
    runs = apply_where(runs, kw.pop("where", None))
    estimator = (kw.get("batch_estimator", "argmin"), kw.get("batch_tolerance"))
    cols = _columns(x, lr, loss, kw["batch"], kw["wd"], kw["group"], kw["seed"], runs, estimator=estimator)
    return _prepare(runs, cols), cols


def fit_oracle(runs: pd.DataFrame, x: Sequence[str] | str, lr: str = "lr", loss: str = "loss", *,
               batch: str | None = None, wd: str | None = None, group: Sequence[str] | str = (),
               seed: str | None = "seed", where: str | None = None,
               fixed: Mapping[str, Mapping[str, float]] | None = None, level: float = 0.8, interval: str = "t",
               points: int = 5, n_boot: int = 2000, rng_seed: int = 0, batch_estimator: str = "argmin",
               batch_tolerance: float | None = None) -> Oracle:
    """Fit the oracle on a table of runs (one row per run, or a sweep's long table).

    ``x``: the size variables (e.g. ``["N", "D"]``); ``lr``/``loss``: columns of the learning rate (natural
    units) and the final loss (non-finite or ``status == "diverged"`` = diverged); ``batch``/``wd``: columns of
    a batch size / weight decay (or timescale τ) swept inside each group, whose optima are fitted too;
    ``group``: label columns — one set of laws per value; ``seed``: the seed column (default ``"seed"`` when the
    table has one); ``where``: a filter (:func:`parse_where`); ``fixed``: axis → {variable: exponent} held fixed;
    ``level``: of the prediction intervals; ``interval``: "t" (default) or "bootstrap"; ``points``: of the
    quadratic around each argmin (as the report). ``batch_estimator``: how each seed's optimal batch is read off
    its profile (the best loss over the LR at each batch): "argmin" (default; the quadratic around the argmin) or
    "critical" (:func:`~deeplimit.transfer.oracle_fit.critical_batch`: the largest batch whose loss is within
    ``batch_tolerance`` — relative, required, above the loss's seed noise — of the best; for surfaces flat over
    the small batches, where the argmin is noise); η* is read at the batch so estimated. The tolerance is refused
    with "argmin"."""
    axes = ("lr", *(a for a, c in (("batch", batch), ("wd", wd)) if c))
    fixed = check_settings(level, interval, fixed, axes)
    prep, cols = prepared(runs, x, lr, loss, batch=batch, wd=wd, group=group, seed=seed, where=where,
                          batch_estimator=batch_estimator, batch_tolerance=batch_tolerance)
    optima = group_optima(prep, cols, points)
    return oracle_from(optima, cols, axes, fixed, level=level, interval=interval, n_boot=n_boot, rng_seed=rng_seed)


def oracle_from(optima: Sequence[GroupOptimum], cols: _Columns, axes: Sequence[str],
                 fixed: Mapping[str, Mapping[str, float]], *, level: float, interval: str, n_boot: int,
                 rng_seed: int) -> Oracle:
    by_key: dict[tuple, list[GroupOptimum]] = {}
    for g in optima:
        by_key.setdefault(tuple(g.group[c] for c in cols.group), []).append(g)
    laws = {k: _fit_laws(gs, axes, cols.x, fixed, interval, n_boot, rng_seed) for k, gs in by_key.items()}
    return Oracle(x=cols.x, group_columns=cols.group, axes=tuple(axes), level=float(level), laws=laws,
                  optima=list(optima), columns={"lr": cols.lr, "loss": cols.loss, **cols.tuned,
                                                "seed": cols.seed, "interval": interval},
                  batch=cols.batch_setting())
