"""The transfer oracle: optimal learning rate (and batch size, weight decay) at a target scale, with an interval.

From any table of runs (one row per training run: its size variables, learning rate, final loss, optionally
batch size, weight decay, seed and labels) — a CSV or Parquet file, or the long table of one of the project's
own sweeps — the oracle

1. groups the runs by the size variables ``x`` (and the ``group`` columns, one law per value of those),
2. estimates per group and seed the optimal log2 LR — and log2 batch / weight decay where swept inside the
   group — with the report's estimator (:func:`~deeplimit.transfer.oracle_fit.cell_optima`, built on
   :func:`~deeplimit.transfer.optimum.fit_optimum`); a group's optimum is the mean over its seeds, and a
   group is *censored* (no estimate) when more than ⅓ of its seeds have their optimum on a grid edge,
3. fits ``log2 η* = a + Σᵢ bᵢ log2 xᵢ`` (and ``log2 B*`` likewise) by least squares over the groups, some
   exponents optionally fixed (0 for width under μP), and
4. predicts at targets with a prediction interval that widens with the distance from the fitted sizes.

:func:`fit_oracle` → :class:`Oracle` (``predict``); :func:`evaluate_oracle` holds out the largest groups along
the first size variable and scores the forecast against them and against the naive one (reuse the nearest
fitted group's optimum). ``deeplimit predict`` is the command line over these. docs/oracle.md has the laws,
their sources and when not to trust the forecast.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle_fit import INTERVALS, PowerLaw, SeedOptima, cell_optima, fit_power_law

__all__ = ["load_runs", "runs_from_sweep", "parse_where", "apply_where", "parse_at", "GroupOptimum",
           "Prediction", "Oracle", "fit_oracle", "Evaluation", "evaluate_oracle", "AXES", "CENSORED_FRACTION"]

AXES = ("lr", "batch", "wd")  # what the oracle predicts, in this order
# More than this fraction of a group's seeds on a grid edge and the group gives no estimate for that axis (as
# deeplimit.transfer.statistics.CENSORED_FRACTION: the uncensored seeds alone would be a biased subset).
CENSORED_FRACTION = 1.0 / 3.0


# ------------------------------------------------------------------------------------------------
# Tables in
# ------------------------------------------------------------------------------------------------
def load_runs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A table of runs from a ``.csv`` or ``.parquet`` file (one row per run, or a sweep's long table)."""
    p = Path(path)
    if not p.is_file():
        raise DeeplimitError(f"no table of runs at {p}; give a .csv or .parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as exc:
        raise DeeplimitError(f"cannot read {p} as a table ({type(exc).__name__}: {exc}); fix or re-export the "
                             "file") from None
    raise DeeplimitError(f"{p} is neither .csv nor .parquet; export the runs as one of those")


def runs_from_sweep(storage: str, name: str) -> pd.DataFrame:
    """The long results table of the project's sweep ``name`` in ``storage`` (what ``deeplimit sweep results``
    writes); :func:`fit_oracle` reduces it to one row per run."""
    from deeplimit.transfer.table import transfer_results

    return transfer_results(storage, name)


def _one_row_per_run(frame: pd.DataFrame, loss: str) -> tuple[pd.DataFrame, str]:
    """A sweep's long table (columns ``run_id, step, metric, value``) → one row per run with column ``loss``
    holding the metric ``loss`` at the run's last step; any other table unchanged."""
    if not {"run_id", "metric", "value"} <= set(frame.columns):
        return frame, loss
    from deeplimit.transfer.analysis import final_values

    metrics = sorted(map(str, frame["metric"].dropna().unique()))
    if loss == "value":
        if len(metrics) != 1:
            raise DeeplimitError(f"the long table holds several metrics {metrics}; name one with --loss METRIC")
        loss = metrics[0]
    if loss not in metrics:
        raise DeeplimitError(f"--loss {loss!r} is neither a column nor a metric of the long table (metrics: "
                             f"{metrics}); pass --loss METRIC")
    runs = final_values(frame, metric=loss)
    return runs.rename(columns={"value": f"_{loss}"}), f"_{loss}"


_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|<=|>=|=|<|>)|(?P<quoted>'[^']*'|\"[^\"]*\")|(?P<word>[^\s=!<>'\"]+))")
_OPS = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_WHERE_HELP = "write COL OP VALUE [and COL OP VALUE …], OP one of == != < <= > >=, e.g. \"rule == 'mup' and N >= 1e6\""


def parse_where(expr: str) -> list[tuple[str, str, str | float]]:
    """``"rule == 'mup' and N >= 1e6"`` → ``[("rule", "==", "mup"), ("N", ">=", 1e6)]``.

    The grammar is ``COL OP VALUE`` joined by ``and``; a quoted VALUE is a string, an unquoted one a number if
    it parses as one. Nothing is evaluated as code."""
    text = str(expr)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise DeeplimitError(f"--where {expr!r}: cannot read {text[pos:].strip()!r}; {_WHERE_HELP}")
        kind = m.lastgroup or "word"
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    clauses: list[list[tuple[str, str]]] = [[]]
    for kind, tok in tokens:
        if kind == "word" and tok.lower() == "and":
            clauses.append([])
        else:
            clauses[-1].append((kind, tok))
    out: list[tuple[str, str, str | float]] = []
    for clause in clauses:
        if len(clause) != 3 or clause[0][0] != "word" or clause[1][0] != "op" or clause[2][0] == "op":
            shown = " ".join(t for _, t in clause) or "(nothing)"
            raise DeeplimitError(f"--where {expr!r}: {shown!r} is not COL OP VALUE; {_WHERE_HELP}")
        (_, col), (_, op), (kind, raw) = clause
        value: str | float
        if kind == "quoted":
            value = raw[1:-1]
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        out.append((col, _OPS[op], value))
    return out


def apply_where(frame: pd.DataFrame, expr: str | None) -> pd.DataFrame:
    """The rows of ``frame`` that satisfy every clause of :func:`parse_where` (``None``: all rows)."""
    if expr is None or not str(expr).strip():
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for col, op, value in parse_where(expr):
        if col not in frame.columns:
            raise DeeplimitError(f"--where names column {col!r}, which the table lacks (columns: "
                                 f"{list(frame.columns)})")
        series = frame[col]
        if isinstance(value, float):
            nums = pd.to_numeric(series, errors="coerce")
            if nums.isna().all() and series.notna().any():
                raise DeeplimitError(f"--where {col} {op} {value:g}: column {col!r} holds text; quote the value "
                                     f"({col} {op} '…')")
            left = nums.to_numpy(float)
        else:
            if op not in ("==", "!="):
                raise DeeplimitError(f"--where {col} {op} {value!r}: only == and != compare text; use a number")
            left = series.astype(str).to_numpy()
        with np.errstate(invalid="ignore"):
            hit = {"==": left == value, "!=": left != value, "<": left < value, "<=": left <= value,
                   ">": left > value, ">=": left >= value}[op]
        mask &= np.asarray(hit, dtype=bool)
    out = frame[mask]
    if out.empty:
        raise DeeplimitError(f"--where {expr!r} keeps no run; check the column values")
    return out


def parse_at(text: str) -> dict[str, float | str]:
    """``"N=1.07e9,D=2e10"`` → ``{"N": 1.07e9, "D": 2e10}`` (numbers where they parse; group labels as text)."""
    out: dict[str, float | str] = {}
    for item in str(text).split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise DeeplimitError(f"--at {text!r}: expected NAME=VALUE[,NAME=VALUE…], e.g. --at N=1.07e9,D=2e10")
        if key in out:
            raise DeeplimitError(f"--at {text!r} names {key} twice")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


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
    return pd.DataFrame(out)


def _group_optima(prep: pd.DataFrame, cols: _Columns, points: int) -> list[GroupOptimum]:
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
            seeds.append(cell_optima(lr_all[s0:s1], loss_all[s0:s1], extra, points=points))
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
        where = ", ".join(f"{k}={_num(v)}" for k, v in self.at.items())
        parts = []
        for axis in AXES:
            if axis in self.log2:
                lo, hi = self.ci[axis]
                parts.append(f"{axis} {_num(2 ** self.log2[axis])} ({100 * self.level:g}% interval "
                             f"{_num(2 ** lo)} – {_num(2 ** hi)}; log2 {self.log2[axis]:+.2f} [{lo:+.2f}, {hi:+.2f}])")
        far = [f"{k} {r:.3g}× past the fitted range" for k, r in self.extrapolation.items() if r > 1]
        tail = f"  [extrapolating: {'; '.join(far)}]" if far else ""
        return f"at {where}: " + "; ".join(parts) + tail


def _num(v: Any) -> str:
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
                          "level": self.level, "columns": self.columns,
                          "laws": [{"group": dict(zip(self.group_columns, k)),
                                    **{a: law.to_dict() for a, law in laws.items()}}
                                   for k, laws in self.laws.items()],
                          "groups": [g.to_dict() for g in self.optima]})

    def text(self) -> str:
        lines = []
        for key, laws in self.laws.items():
            head = f"[{_label(dict(zip(self.group_columns, key)))}] " if self.group_columns else ""
            for axis, law in laws.items():
                terms = " ".join(f"{b:+.3f}·log2 {v}{' (fixed)' if v in law.fixed else ''}"
                                 for v, b in law.exponents.items())
                lines.append(f"{head}log2 {axis}* = {law.intercept:+.3f} {terms}   ({law.n_groups} groups, scatter "
                             f"{law.residual_sd:.3f} octaves, {law.df} df)")
        return "\n".join(lines)


def _columns(x: Sequence[str] | str, lr: str, loss: str, batch: str | None, wd: str | None,
             group: Sequence[str] | str, seed: str | None, frame: pd.DataFrame) -> _Columns:
    xs = (x,) if isinstance(x, str) else tuple(x)
    gs = (group,) if isinstance(group, str) else tuple(group or ())
    if not xs:
        raise DeeplimitError("give at least one size variable (--x N D)")
    if len(set(xs)) != len(xs):
        raise DeeplimitError(f"--x {' '.join(xs)} names a column twice")
    if seed == "seed" and "seed" not in frame.columns:
        seed = None
    tuned = {a: c for a, c in (("batch", batch), ("wd", wd)) if c}
    return _Columns(x=xs, lr=lr, loss=loss, tuned=tuned, group=gs, seed=seed)


def _check_settings(level: float, interval: str, fixed: Mapping[str, Mapping[str, float]] | None,
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


def _prepared(runs: pd.DataFrame, x: Sequence[str] | str, lr: str, loss: str, **kw: Any) -> tuple[pd.DataFrame,
                                                                                                    _Columns]:
    if not isinstance(runs, pd.DataFrame):
        raise DeeplimitError(f"runs must be a pandas DataFrame (see load_runs), got {type(runs).__name__}")
    runs, loss = _one_row_per_run(runs, loss)
    runs = apply_where(runs, kw.pop("where", None))
    cols = _columns(x, lr, loss, kw["batch"], kw["wd"], kw["group"], kw["seed"], runs)
    return _prepare(runs, cols), cols


def fit_oracle(runs: pd.DataFrame, x: Sequence[str] | str, lr: str = "lr", loss: str = "loss", *,
               batch: str | None = None, wd: str | None = None, group: Sequence[str] | str = (),
               seed: str | None = "seed", where: str | None = None,
               fixed: Mapping[str, Mapping[str, float]] | None = None, level: float = 0.8, interval: str = "t",
               points: int = 5, n_boot: int = 2000, rng_seed: int = 0) -> Oracle:
    """Fit the oracle on a table of runs (one row per run, or a sweep's long table).

    ``x``: the size variables (e.g. ``["N", "D"]``); ``lr``/``loss``: columns of the learning rate (natural
    units) and the final loss (non-finite or ``status == "diverged"`` = diverged); ``batch``/``wd``: columns of
    a batch size / weight decay (or timescale τ) swept inside each group, whose optima are fitted too;
    ``group``: label columns — one set of laws per value; ``seed``: the seed column (default ``"seed"`` when the
    table has one); ``where``: a filter (:func:`parse_where`); ``fixed``: axis → {variable: exponent} held fixed;
    ``level``: of the prediction intervals; ``interval``: "t" (default) or "bootstrap"; ``points``: of the
    quadratic around each argmin (as the report).
    """
    axes = ("lr", *(a for a, c in (("batch", batch), ("wd", wd)) if c))
    fixed = _check_settings(level, interval, fixed, axes)
    prep, cols = _prepared(runs, x, lr, loss, batch=batch, wd=wd, group=group, seed=seed, where=where)
    optima = _group_optima(prep, cols, points)
    return _oracle_from(optima, cols, axes, fixed, level=level, interval=interval, n_boot=n_boot, rng_seed=rng_seed)


def _oracle_from(optima: Sequence[GroupOptimum], cols: _Columns, axes: Sequence[str],
                 fixed: Mapping[str, Mapping[str, float]], *, level: float, interval: str, n_boot: int,
                 rng_seed: int) -> Oracle:
    by_key: dict[tuple, list[GroupOptimum]] = {}
    for g in optima:
        by_key.setdefault(tuple(g.group[c] for c in cols.group), []).append(g)
    laws = {k: _fit_laws(gs, axes, cols.x, fixed, interval, n_boot, rng_seed) for k, gs in by_key.items()}
    return Oracle(x=cols.x, group_columns=cols.group, axes=tuple(axes), level=float(level), laws=laws,
                  optima=list(optima), columns={"lr": cols.lr, "loss": cols.loss, **cols.tuned,
                                                "seed": cols.seed, "interval": interval})


# ------------------------------------------------------------------------------------------------
# Held-out evaluation
# ------------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """:func:`evaluate_oracle`'s result: ``rows`` (one per held-out group) and ``summary``."""

    rows: pd.DataFrame
    summary: dict[str, Any]
    oracle: Oracle

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"summary": self.summary, "held_out": self.rows.to_dict(orient="records"),
                          "fit": self.oracle.fit_dict()})

    def text(self) -> str:
        s = self.summary
        lines = [f"held out {s['n_held_out']} group(s) at the largest {s['held_out_along']} "
                 f"({s['held_out_value']}); fitted on {s['n_fitted']}",
                 f"{'':28s}{'oracle':>12s}{'naive':>12s}"]
        for axis in s["axes"]:
            lines.append(f"{'mean |log2 error| ' + axis:28s}{_cell(s['mean_abs_log2_error'][axis]):>12s}"
                         f"{_cell(s['naive_mean_abs_log2_error'][axis]):>12s}")
        lines.append(f"{'mean regret (of best loss)':28s}{_pct(s['mean_regret']):>12s}"
                     f"{_pct(s['naive_mean_regret']):>12s}")
        for axis in s["axes"]:
            c = s["coverage"][axis]
            label = f"{100 * s['level']:g}% coverage {axis}"
            lines.append(f"{label:28s}{_cell(c):>12s}   ({s['n_scored'][axis]} scored)")
        lines.append("naive = the optimum of the nearest fitted group, reused as is")
        return "\n".join(lines)


def _cell(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _regret(prep: pd.DataFrame, sizes: Mapping[str, float], group: Mapping[str, Any], log2: Mapping[str, float],
            tuned: Sequence[str]) -> float:
    """Loss at the grid point nearest ``log2`` (each tuned axis first, then the LR) over the group's best, − 1;
    losses are seed means (+∞ where a seed diverged)."""
    sel = np.ones(len(prep), dtype=bool)
    for c, v in {**sizes, **group}.items():
        sel &= (prep[c] == v).to_numpy()
    cell = prep[sel].groupby(["_lr", *(f"_{a}" for a in tuned)], sort=True)["_loss"].mean().reset_index()
    finite = cell["_loss"][np.isfinite(cell["_loss"])]
    if finite.empty or not all(math.isfinite(log2.get(a, math.nan)) for a in ("lr", *tuned)):
        return math.nan
    best = float(finite.min())
    for a in tuned:
        vals = cell[f"_{a}"].unique()
        near = vals[np.argmin(np.abs(vals - log2[a]))]
        cell = cell[cell[f"_{a}"] == near]
    at = float(cell["_loss"].iloc[int(np.argmin(np.abs(cell["_lr"].to_numpy() - log2["lr"])))])
    return at / best - 1.0 if best > 0 else math.nan


def evaluate_oracle(runs: pd.DataFrame, x: Sequence[str] | str, lr: str = "lr", loss: str = "loss", *,
                    batch: str | None = None, wd: str | None = None, group: Sequence[str] | str = (),
                    seed: str | None = "seed", where: str | None = None,
                    fixed: Mapping[str, Mapping[str, float]] | None = None, level: float = 0.8,
                    interval: str = "t", points: int = 5, n_boot: int = 2000, rng_seed: int = 0) -> Evaluation:
    """Hold out the groups at the largest value of the first size variable (per set of laws), fit on the
    rest, and score the forecast at each held-out group: |log2 error| of each optimum, the regret (the loss at
    the grid point nearest the forecast over the group's best loss, − 1) and whether the ``level`` interval
    covers the group's measured optimum — beside the naive forecast (the nearest fitted group's optimum,
    nearest in log2 sizes). Held-out groups with a censored optimum are not scored for that axis."""
    axes = ("lr", *(a for a, c in (("batch", batch), ("wd", wd)) if c))
    fixed = _check_settings(level, interval, fixed, axes)
    prep, cols = _prepared(runs, x, lr, loss, batch=batch, wd=wd, group=group, seed=seed, where=where)
    optima = _group_optima(prep, cols, points)
    first = cols.x[0]
    held, kept = [], []
    by_key: dict[tuple, list[GroupOptimum]] = {}
    for g in optima:
        by_key.setdefault(tuple(g.group[c] for c in cols.group), []).append(g)
    for gs in by_key.values():
        top = max(g.sizes[first] for g in gs)
        if all(g.sizes[first] == top for g in gs):
            raise DeeplimitError(f"every group has the same {first}; --evaluate holds out the largest {first}, so "
                                 "it needs groups at two values or more")
        held += [g for g in gs if g.sizes[first] == top]
        kept += [g for g in gs if g.sizes[first] != top]
    oracle = _oracle_from(kept, cols, axes, fixed, level=level, interval=interval, n_boot=n_boot,
                          rng_seed=rng_seed)
    rows = []
    tuned = list(cols.tuned)
    for g in held:
        pred = oracle.predict({**g.sizes, **g.group})[0]
        key = tuple(g.group[c] for c in cols.group)
        pool = [k for k in kept if tuple(k.group[c] for c in cols.group) == key]
        naive: dict[str, float] = {}
        for axis in axes:
            usable = [k for k in pool if not k.censored[axis]]
            near = min(usable, default=None, key=lambda k: sum((math.log2(k.sizes[v]) - math.log2(g.sizes[v])) ** 2
                                                               for v in cols.x))
            naive[axis] = near.log2[axis] if near is not None else math.nan
        row: dict[str, Any] = {**g.sizes, **g.group}
        for axis in axes:
            lo, hi = pred.ci[axis]
            m = g.log2[axis]
            row.update({f"measured_log2_{axis}": m, f"predicted_log2_{axis}": pred.log2[axis],
                        f"log2_{axis}_lo": lo, f"log2_{axis}_hi": hi, f"naive_log2_{axis}": naive[axis],
                        f"abs_log2_error_{axis}": abs(pred.log2[axis] - m),
                        f"naive_abs_log2_error_{axis}": abs(naive[axis] - m),
                        f"covered_{axis}": (lo <= m <= hi) if math.isfinite(m) else None})
        row["regret"] = _regret(prep, g.sizes, g.group, pred.log2, tuned)
        row["naive_regret"] = _regret(prep, g.sizes, g.group, naive, tuned)
        rows.append(row)
    table = pd.DataFrame(rows)

    def mean(col: str) -> float:
        v = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else math.nan

    cover = {}
    n_scored = {}
    for axis in axes:
        c = table[f"covered_{axis}"].dropna()
        n_scored[axis] = int(len(c))
        cover[axis] = float(c.astype(bool).mean()) if len(c) else math.nan
    top_vals = sorted({g.sizes[first] for g in held})
    summary = {"axes": list(axes), "level": float(level), "held_out_along": first,
               "held_out_value": ", ".join(_num(v) for v in top_vals), "n_held_out": len(held),
               "n_fitted": len(kept), "n_scored": n_scored,
               "mean_abs_log2_error": {a: mean(f"abs_log2_error_{a}") for a in axes},
               "naive_mean_abs_log2_error": {a: mean(f"naive_abs_log2_error_{a}") for a in axes},
               "mean_regret": mean("regret"), "naive_mean_regret": mean("naive_regret"), "coverage": cover}
    return Evaluation(rows=table, summary=summary, oracle=oracle)
