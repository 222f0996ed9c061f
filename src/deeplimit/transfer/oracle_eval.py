"""Held-out evaluation of the transfer oracle (``deeplimit predict --evaluate``): hold out the groups at the
largest value of the first size variable, fit :mod:`deeplimit.transfer.oracle` on the rest, and score the
forecast there beside the naive one (reuse the nearest fitted group's optimum)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle import GroupOptimum, Oracle, check_settings, group_optima, num, oracle_from, prepared

__all__ = ["Evaluation", "evaluate_oracle"]


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
                    interval: str = "t", points: int = 5, n_boot: int = 2000, rng_seed: int = 0,
                    batch_estimator: str = "argmin", batch_tolerance: float | None = None) -> Evaluation:
    """Hold out the groups at the largest value of the first size variable (per set of laws), fit on the
    rest, and score the forecast at each held-out group: |log2 error| of each optimum, the regret (the loss at
    the grid point nearest the forecast over the group's best loss, − 1) and whether the ``level`` interval
    covers the group's measured optimum — beside the naive forecast (the nearest fitted group's optimum,
    nearest in log2 sizes). Held-out groups with a censored optimum are not scored for that axis.
    ``batch_estimator``/``batch_tolerance``: as :func:`~deeplimit.transfer.oracle.fit_oracle` (the held-out
    groups' measured batch is read the same way)."""
    axes = ("lr", *(a for a, c in (("batch", batch), ("wd", wd)) if c))
    fixed = check_settings(level, interval, fixed, axes)
    prep, cols = prepared(runs, x, lr, loss, batch=batch, wd=wd, group=group, seed=seed, where=where,
                          batch_estimator=batch_estimator, batch_tolerance=batch_tolerance)
    optima = group_optima(prep, cols, points)
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
    oracle = oracle_from(kept, cols, axes, fixed, level=level, interval=interval, n_boot=n_boot,
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
               "held_out_value": ", ".join(num(v) for v in top_vals), "n_held_out": len(held),
               "n_fitted": len(kept), "n_scored": n_scored,
               "mean_abs_log2_error": {a: mean(f"abs_log2_error_{a}") for a in axes},
               "naive_mean_abs_log2_error": {a: mean(f"naive_abs_log2_error_{a}") for a in axes},
               "mean_regret": mean("regret"), "naive_mean_regret": mean("naive_regret"), "coverage": cover}
    return Evaluation(rows=table, summary=summary, oracle=oracle)
