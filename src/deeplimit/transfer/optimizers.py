"""Optimizer experiments of issue #14: Muon LR transfer over width and depth, weight-decay transfer over width.

Spec builders return :class:`~deeplimit.sweep.grid.SweepSpec` grids over the real trainer (tiers ``smoke`` for
CI, ``quick``, ``standard`` — the runs recorded in docs/optimizers.md); :func:`analyze_axis` runs the transfer
analysis of depth-mup spec §11.4 on any log2 axis (the weight decay, not only the LR); and
:func:`analyses` and :func:`thresholds` feed the verdict rows of the "Muon transfer" report section
(:func:`deeplimit.transfer.optimizer_verdicts.muon_transfer_section`: the slope statistic, relabelled rows as
calibrations).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.analysis import SLOPE_MARGIN, TransferAnalysis, analyze, drift_interval, final_values
from deeplimit.transfer.experiments import EXPERIMENT_TIERS as TIERS  # "full" is "standard" here: the runs
from deeplimit.transfer.experiments import OBJECTIVE, log2_grid  # recorded in docs/optimizers.md

# Muon's base LR over AdamW's at the MLP-ResNet base shape (n₀ = 64, L₀ = 4): the pilot in docs/optimizers.md
# found η*_Muon ≈ 2^-6.5 (U, V frozen) and η*_AdamW ≈ 2^-9, so 2^3 puts both optima on one base-LR grid.
MUON_LR_RATIO = 8.0


def _tier(tier: str, smoke, quick, standard):
    if tier not in TIERS:
        raise DeeplimitError(f"unknown tier {tier!r}; choose one of {TIERS}")
    return {"smoke": smoke, "quick": quick, "standard": standard, "full": standard}[tier]


# The recorded width grid: integer steps, plus half steps where the first pass found the optimum (the interval
# of a flat optimum is floored at the half step, so the half steps narrow it).
WIDTH_GRID = sorted([*log2_grid(-12, -6, 1), -12.5, -11.5, -10.5, -9.5])


def _mlp(experiment: str, **fixed) -> dict:
    return {"experiment": experiment, "model": "mlp-resnet", "optimizer": "muon", "batch_size": 128,
            "data": "fashion-mnist", "muon_lr_ratio": MUON_LR_RATIO, **fixed}


def muon_width_transfer(tier: str = "standard", rules: Sequence[str] = ("mup",)) -> SweepSpec:
    """Muon LR transfer over width (MLP-ResNet, L = L₀ = 4, all layers trained; hidden on Muon, the rest AdamW)."""
    widths, lrs, seeds, steps = _tier(tier, ([16, 32], log2_grid(-10, -8, 1), [0], 20),
                                      ([64, 128, 256], log2_grid(-12, -6, 1), [0, 1], 200),
                                      ([64, 128, 256, 512], WIDTH_GRID, [0, 1, 2], 300))
    return SweepSpec(
        axes={"rule": list(rules), "width": widths, "log2_lr": lrs, "seed": seeds},
        fixed=_mlp("muon_width_transfer", depth=4, base_width=widths[0], base_depth=4, steps=steps,
                   train_io=True),
        objective=OBJECTIVE, metric="window_loss",
        description="Muon LR transfer over width on Fashion-MNIST MLP-ResNets (muon_lr_ratio 8)")


def muon_depth_transfer(tier: str = "standard", rules: Sequence[str] = ("depth_mup", "blocks_only")) -> SweepSpec:
    """Muon LR transfer over depth (MLP-ResNet n = 64, U and V frozen as TP6 §10.2, so only Muon trains).

    ``depth_mup`` carries the predicted Muon depth factor m_L^{α−1} = m_L^{-1/2}; ``blocks_only`` (α = ½, γ = 0)
    leaves it out, so its η* should fall by ½ octave per doubling if the prediction holds (optimizers spec §3).
    """
    depths, lrs, seeds, steps = _tier(tier, ([2, 4], log2_grid(-10, -8, 1), [0], 20),
                                      ([4, 16, 64], log2_grid(-13, -5, 1), [0, 1], 200),
                                      # L = 128 decided the control (docs/optimizers.md); both optima there
                                      # (2^-11.6, 2^-9.2) sit inside this grid
                                      ([4, 8, 16, 32, 64, 128], [-13.0, -12.0, *log2_grid(-11, -5, 1)], [0, 1, 2],
                                       300))
    return SweepSpec(
        axes={"rule": list(rules), "depth": depths, "log2_lr": lrs, "seed": seeds},
        fixed=_mlp("muon_depth_transfer", width=64, base_width=64, base_depth=4, steps=steps, train_io=False,
                   activation="relu"),
        objective=OBJECTIVE, metric="window_loss",
        description="Muon LR transfer over depth on Fashion-MNIST MLP-ResNets (U, V frozen)")


def muon_transformer_depth(tier: str = "standard",
                           rules: Sequence[str] = ("completep", "depth_mup")) -> SweepSpec:
    """Muon LR transfer over depth on the pre-LN byte transformer (n = 64, L₀ = 1, all layers trained)."""
    depths, lrs, seeds, steps, data = _tier(tier, ([1, 2], log2_grid(-9, -8, 1), [0], 10, "stdlib"),
                                            ([1, 2, 4], log2_grid(-10, -3, 1), [0, 1], 120, "shakespeare"),
                                            ([1, 2, 4, 8], log2_grid(-11, -3, 1), [0, 1, 2], 150, "shakespeare"))
    return SweepSpec(
        axes={"rule": list(rules), "depth": depths, "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "muon_transformer_depth", "model": "transformer", "optimizer": "muon", "width": 64,
               "base_width": 64, "base_depth": 1, "n_heads": 4, "steps": steps, "batch_size": 16, "seq_len": 64,
               "warmup_frac": 0.05, "data": data, "min_window": 20, "muon_lr_ratio": MUON_LR_RATIO},
        objective=OBJECTIVE, metric="window_loss",
        description="Muon LR transfer over depth on the pre-LN byte transformer (muon_lr_ratio 8)")


def weight_decay_width(tier: str = "standard", parametrization: str = "timescale") -> SweepSpec:
    """Weight-decay transfer over width (AdamW, μP, MLP-ResNet L = 4, fixed base LR 2^-9).

    ``timescale``: the axis is τ as a fraction of the run (λ = 1/(η_g·τ) per tensor, optimizers spec §4);
    ``constant``: the axis is one λ for every tensor (``weight_decay_mode="torch"``). Under μP the hidden AdamW LR
    falls like 1/n, so a constant λ lengthens the hidden timescale ∝ n and its optimum should drift (+1 octave
    per width doubling if the hidden tensors dominate), while the optimal τ should stay put.
    """
    widths, seeds, steps = _tier(tier, ([16, 32], [0], 20), ([64, 128, 256], [0, 1], 300),
                                 ([64, 128, 256, 512], [0, 1, 2], 400))
    if parametrization == "timescale":
        axis, values, extra = "wd_timescale_fraction", [2.0**k for k in range(-1, 6)], {}
    elif parametrization == "constant":
        axis, values, extra = "weight_decay", [2.0**k for k in range(-5, 4)], {"weight_decay_mode": "torch"}
    else:
        raise DeeplimitError(f"parametrization must be 'timescale' or 'constant', got {parametrization!r}")
    if tier == "smoke":
        values = values[::3]
    return SweepSpec(
        axes={"width": widths, axis: values, "seed": seeds},
        fixed={"experiment": f"weight_decay_width_{parametrization}", "model": "mlp-resnet", "rule": "mup",
               "optimizer": "adamw", "depth": 4, "base_width": widths[0], "base_depth": 4, "log2_lr": -9.0,
               "steps": steps, "batch_size": 128, "train_io": True, "data": "fashion-mnist", **extra},
        objective=OBJECTIVE, metric="window_loss",
        description=f"weight-decay transfer over width, {parametrization} parametrization (AdamW, muP)")


def weight_decay_hidden_width(tier: str = "standard", parametrization: str = "timescale") -> SweepSpec:
    """Weight decay on the hidden matrices alone, over width (AdamW, μP, MLP-ResNet L = 4, input and readout
    frozen, fixed base LR 2^-9, 400 steps).

    With input and readout trained (:func:`weight_decay_width`) they share λ's optimum and their timescale does
    not move with width, which hides the hidden tensors' drift. Frozen, they do not decay, so every decayed tensor
    is a μP hidden matrix whose LR falls like 1/n: a constant λ lengthens its timescale ∝ n, the prediction is a
    shift of +1 octave per width doubling, and τ should not move. On a run shorter than one epoch the decay only
    costs here (a pilot found no interior optimum), so the statistic is :func:`decay_threshold` — where the loss
    first exceeds the no-decay loss by δ. The ``constant`` grid holds λ = 0, the no-decay reference of both.
    """
    widths, seeds, steps = _tier(tier, ([16, 32], [0, 1], 20), ([64, 256], [0, 1, 2], 300),
                                 ([64, 128, 256, 512], [0, 1, 2], 400))
    if parametrization == "timescale":
        axis, values, extra = "wd_timescale_fraction", [2.0**k for k in range(-4, 3)], {}
    elif parametrization == "constant":
        axis, values, extra = "weight_decay", [0.0, *(2.0**k for k in range(0, 8))], {"weight_decay_mode": "torch"}
    else:
        raise DeeplimitError(f"parametrization must be 'timescale' or 'constant', got {parametrization!r}")
    if tier == "smoke":
        values = values[:1] + values[1::3] if parametrization == "constant" else values[::3]
    return SweepSpec(
        axes={"width": widths, axis: values, "seed": seeds},
        fixed={"experiment": f"weight_decay_hidden_{parametrization}", "model": "mlp-resnet", "rule": "mup",
               "optimizer": "adamw", "depth": 4, "base_width": widths[0], "base_depth": 4, "log2_lr": -9.0,
               "steps": steps, "batch_size": 128, "train_io": False, "data": "fashion-mnist", **extra},
        objective=OBJECTIVE, metric="window_loss",
        description=f"hidden-only weight decay over width, {parametrization} parametrization (AdamW, muP, "
                    "input and readout frozen)")


@dataclass(frozen=True)
class DecayThreshold:
    """Result of :func:`decay_threshold`.

    ``per_size``: one row per size — ``log2_threshold`` (seed-mean curve), ``seed_thresholds`` (one per seed),
    ``reference_loss`` (no-decay loss, seed mean); a threshold outside the grid is NaN and the size is censored.
    ``drift``: the threshold's change over the size range with its 95 % interval (descriptive). ``slope``: the
    mean of the per-seed slopes of the threshold per doubling of the size with its Student-t 95 % interval
    (``slope_ci``, over ``n_slopes`` seeds) — the slope statistic that decides ``verdict``:
    :func:`threshold_verdict` against ±``margin`` per doubling.
    """

    axis: str
    size: str
    delta: float
    per_size: pd.DataFrame
    drift: float
    drift_ci: tuple[float, float]
    n_seeds: int
    verdict: str
    slope: float = math.nan
    slope_ci: tuple[float, float] = (math.nan, math.nan)
    n_slopes: int = 0
    margin: float = SLOPE_MARGIN


def threshold_verdict(slope_ci: tuple[float, float], margin: float, n_slopes: int,
                      predicted: float | None = None) -> str:
    """The slope statistic's word for a decay threshold (no regret: the threshold is not an optimum):
    "transfers" when the 95 % interval of the slope per doubling lies inside ±``margin`` (a TOST); "shifts" when
    it excludes 0 and, with ``predicted``, comes within ``margin`` of it; else "inconclusive" (also with fewer
    than two seeds with a slope)."""
    lo, hi = slope_ci
    if n_slopes < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if -margin <= lo and hi <= margin:
        return "transfers"
    if (lo > 0 or hi < 0) and (predicted is None or lo - margin <= predicted <= hi + margin):
        return "shifts"
    return "inconclusive"


def _seed_slopes(per_size: pd.DataFrame, size: str) -> dict[str, float]:
    """seed → OLS slope of that seed's finite thresholds on log2 size (per doubling); seeds with < 2 sizes out."""
    points: dict[str, list[tuple[float, float]]] = {}
    for _, r in per_size.iterrows():
        for sd, thr in zip(r["_seeds"], r["seed_thresholds"]):
            if math.isfinite(thr):
                points.setdefault(str(sd), []).append((math.log2(float(r[size])), float(thr)))
    out = {}
    for sd, pts in points.items():
        x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        if len(x) >= 2 and np.ptp(x) > 0:
            out[sd] = float(np.polyfit(x, y, 1)[0])
    return out


def _crossing(x: np.ndarray, excess: np.ndarray, delta: float, decay_grows: bool) -> float:
    """log2 axis value where ``excess`` first reaches ``delta`` coming from the weak-decay end (linear
    interpolation between grid points; a diverged point counts as reached there); NaN when the curve starts at or
    above δ or never reaches it."""
    order = np.argsort(x) if decay_grows else np.argsort(x)[::-1]
    xs, ys = x[order], excess[order]
    if not (np.isfinite(ys[0]) and ys[0] < delta):
        return math.nan
    for i in range(1, len(xs)):
        if not np.isfinite(ys[i]):
            return float(xs[i])
        if ys[i] >= delta:
            return float(xs[i - 1] + (delta - ys[i - 1]) * (xs[i] - xs[i - 1]) / (ys[i] - ys[i - 1]))
    return math.nan


def decay_threshold(table: pd.DataFrame, axis: str, reference: pd.DataFrame, *, delta: float = 0.1,
                    size: str = "width", metric: str = "window_loss", margin: float = SLOPE_MARGIN,
                    predicted: float | None = None) -> DecayThreshold:
    """Where weight decay starts to cost: the log2 ``axis`` value at which the loss first exceeds the no-decay
    loss of the same (size, seed) by ``delta`` nats, per size, and its drift over the size range.

    ``table``: the long table of one parametrization's sweep (``axis`` = ``weight_decay`` or
    ``wd_timescale_fraction``; rows with ``weight_decay == 0`` are ignored as points). ``reference``: runs
    without decay (``weight_decay == 0``) at the same sizes and seeds. The threshold is read from the weak-decay
    end (large τ, small λ), interpolated linearly in log2. The drift is ``D = slope · log2(size range)`` of the
    seed-mean thresholds; its interval comes from the per-seed drifts (one threshold per seed and size) with a
    Student-t quantile (descriptive). The verdict is the slope statistic (:func:`threshold_verdict`): per seed,
    the OLS slope of its thresholds on log2 size; their mean and t interval against ±``margin`` per doubling
    (the protocol's). Under a constant λ on μP hidden matrices the prediction is +1 per doubling.
    """
    if axis not in ("weight_decay", "wd_timescale_fraction"):
        raise DeeplimitError(f"axis must be 'weight_decay' or 'wd_timescale_fraction', got {axis!r}")
    if not (isinstance(delta, (int, float)) and delta > 0):
        raise DeeplimitError(f"delta must be a positive loss difference in nats, e.g. 0.1; got {delta!r}")
    runs = final_values(table, metric)
    ref = final_values(reference, metric)
    for name, frame, cols in (("table", runs, [axis, size, "seed", "value"]),
                              ("reference", ref, [size, "seed", "value"])):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DeeplimitError(f"the {name} has no column(s) {missing} (columns: {sorted(frame.columns)})")
    if "weight_decay" in ref.columns and (pd.to_numeric(ref["weight_decay"]) != 0).any():
        ref = ref[pd.to_numeric(ref["weight_decay"]) == 0]
    values = pd.to_numeric(runs[axis], errors="coerce").astype(float)
    runs = runs[values > 0].assign(_x=np.log2(values[values > 0]))
    ref_loss = ref.groupby([size, "seed"])["value"].mean()
    decay_grows = axis == "weight_decay"  # λ grows → more decay; τ grows → less
    rows = []
    for s, sub in runs.groupby(size, sort=True):
        pivot = sub.pivot_table(index="seed", columns="_x", values="value", aggfunc="mean")
        x = pivot.columns.to_numpy(float)
        seeds = [sd for sd in pivot.index if (s, sd) in ref_loss.index]
        if not seeds:
            raise DeeplimitError(f"no no-decay reference run at {size} {s:g}; run weight_decay=0 at every size "
                                 "and seed (the 'constant' grid of weight_decay_hidden_width holds it)")
        M = pivot.loc[seeds].to_numpy(float) - ref_loss.loc[[(s, sd) for sd in seeds]].to_numpy(float)[:, None]
        thr = [_crossing(x, m, delta, decay_grows) for m in M]
        mean_thr = _crossing(x, M.mean(axis=0), delta, decay_grows)
        rows.append({size: float(s), "log2_threshold": mean_thr, "seed_thresholds": thr, "n_seeds": len(seeds),
                     "reference_loss": float(ref_loss.loc[[(s, sd) for sd in seeds]].mean()),
                     "censored": not math.isfinite(mean_thr), "_seeds": seeds})
    per_size = pd.DataFrame.from_records(rows)
    ok = per_size[~per_size["censored"]]
    drift, ci, n = math.nan, (math.nan, math.nan), 0
    if len(ok) >= 2:
        xs = np.log2(ok[size].to_numpy(float))
        drift = float(np.polyfit(xs, ok["log2_threshold"].to_numpy(float), 1)[0] * float(xs.max() - xs.min()))
        # the LR analysis's interval, fed the per-seed thresholds; interpolated, so no grid-resolution term
        usable = ok.assign(seed_ids=[";".join(map(str, v)) for v in ok["_seeds"]],
                           per_seed_argmins=[";".join(map(repr, v)) for v in ok["seed_thresholds"]], refined=True)
        lo, hi, n, _, _ = drift_interval(usable, size, drift)
        ci = (lo, hi)
    slopes = list(_seed_slopes(per_size, size).values())
    slope, slope_ci = math.nan, (math.nan, math.nan)
    if slopes:
        slope = float(np.mean(slopes))
    if len(slopes) >= 2:
        half = float(stats.t.ppf(0.975, len(slopes) - 1) * np.std(slopes, ddof=1) / math.sqrt(len(slopes)))
        slope_ci = (slope - half, slope + half)
    per_size = per_size.drop(columns="_seeds")
    return DecayThreshold(axis=axis, size=size, delta=float(delta), per_size=per_size, drift=drift, drift_ci=ci,
                          n_seeds=n, verdict=threshold_verdict(slope_ci, margin, len(slopes), predicted),
                          slope=slope, slope_ci=slope_ci, n_slopes=len(slopes), margin=float(margin))


def analyze_axis(table: pd.DataFrame, axis: str = "log2_lr", *, metric: str = "window_loss",
                 group: str | Sequence[str] = "rule", size: str = "width", n_boot: int = 1000,
                 rng: int = 0) -> TransferAnalysis:
    """The transfer analysis of depth-mup spec §11.4 with the optimum taken over ``axis`` instead of the LR.

    ``axis`` is a column of positive values (e.g. ``weight_decay`` or ``wd_timescale_fraction``), analysed on a
    log2 scale; in the result its log2 sits in the ``log2_lr`` columns (η̂* reads "optimal log2 ``axis``").
    """
    if axis == "log2_lr":
        frame = table
    else:
        if axis not in table.columns:
            raise DeeplimitError(f"the table has no column {axis!r} (columns: {sorted(table.columns)})")
        values = pd.to_numeric(table[axis], errors="coerce").astype(float)
        if not (values > 0).all():
            raise DeeplimitError(f"column {axis!r} must hold positive numbers to be analysed on a log2 scale")
        frame = table.drop(columns=[c for c in ("lr", "log2_lr") if c in table.columns])
        frame = frame.assign(log2_lr=np.log2(values))
    groups = [group] if isinstance(group, str) else list(group)
    missing = [g for g in groups if g not in frame.columns]
    if missing:
        frame = frame.assign(**{g: "all" for g in missing})
    return analyze(frame, metric=metric, group=groups, size=size, n_boot=n_boot, rng=rng)


# What theory predicts (optimizers spec §1–§4) for each (experiment, group): "transfers" or "shifts"; a group
# absent here has no prediction (its row is reported, never counted for or against).
EXPECTED = {
    ("muon_width_transfer", "mup"): "transfers",
    ("muon_width_transfer", "sp"): "shifts",
    ("muon_depth_transfer", "depth_mup"): "transfers",
    ("muon_depth_transfer", "blocks_only"): "shifts",
    ("muon_transformer_depth", "completep"): "transfers",
    # ("muon_transformer_depth", "depth_mup"): no prediction — block depth 2 with α = ½ (depth-mup spec §9)
    ("weight_decay_width_timescale", "mup"): "transfers",
    ("weight_decay_width_constant", "mup"): "shifts",
    ("weight_decay_hidden_timescale", "mup"): "transfers",
    ("weight_decay_hidden_constant", "mup"): "shifts",
}
SIZES = {"muon_width_transfer": "width", "muon_depth_transfer": "depth", "muon_transformer_depth": "depth",
         "weight_decay_width_timescale": "width", "weight_decay_width_constant": "width",
         "weight_decay_hidden_timescale": "width", "weight_decay_hidden_constant": "width"}
AXES = {"weight_decay_width_timescale": "wd_timescale_fraction", "weight_decay_width_constant": "weight_decay",
        "weight_decay_hidden_timescale": "wd_timescale_fraction", "weight_decay_hidden_constant": "weight_decay"}
# Experiments decided by where the decay starts to cost (decay_threshold), not by an optimum; the λ = 0 runs of
# the constant grid are the no-decay reference of both. δ = 0.1 nat was fixed from a one-seed pilot (n = 64, 512)
# before the sweeps ran: it sits on the steep part of every curve there.
THRESHOLD_EXPERIMENTS = ("weight_decay_hidden_timescale", "weight_decay_hidden_constant")
THRESHOLD_REFERENCE = "weight_decay_hidden_constant"
THRESHOLD_DELTA = 0.1
# The threshold slope per width doubling a predicted shift must be consistent with: a constant λ on μP hidden
# matrices lengthens their timescale ∝ n, so where decay starts to cost moves +1 octave per doubling.
THRESHOLD_PREDICTED = {"weight_decay_hidden_constant": 1.0}


def analyses(tables: Mapping[str, pd.DataFrame], *, n_boot: int = 1000) -> dict[str, TransferAnalysis]:
    """The transfer analysis of each experiment's long table (keys of :data:`SIZES`), on its own axis and size."""
    out = {}
    for name, table in tables.items():
        if name not in SIZES:
            raise DeeplimitError(f"unknown experiment {name!r}; known: {sorted(SIZES)}")
        if name not in THRESHOLD_EXPERIMENTS:
            out[name] = analyze_axis(table, AXES.get(name, "log2_lr"), size=SIZES[name], n_boot=n_boot)
    return out


def thresholds(tables: Mapping[str, pd.DataFrame], *, delta: float = THRESHOLD_DELTA) -> dict[str, DecayThreshold]:
    """:func:`decay_threshold` of each hidden-only weight-decay experiment in ``tables`` (both need the
    ``weight_decay_hidden_constant`` table, whose λ = 0 runs are the reference)."""
    wanted = [name for name in tables if name in THRESHOLD_EXPERIMENTS]
    if wanted and THRESHOLD_REFERENCE not in tables:
        raise DeeplimitError(f"{wanted} need the {THRESHOLD_REFERENCE!r} table: its λ = 0 runs are the no-decay "
                             "reference (run the weight-decay-hidden-constant grid too)")
    return {name: decay_threshold(tables[name], AXES[name], tables[THRESHOLD_REFERENCE], delta=delta,
                                  size=SIZES[name], predicted=THRESHOLD_PREDICTED.get(name)) for name in wanted}


AXIS_LABELS = {"wd_timescale_fraction": "log2 τ / run length", "weight_decay": "log2 λ (same for every tensor)",
               "log2_lr": "log2 base learning rate"}


def _finish(fig, path: str, title: str) -> str:
    from deeplimit.plotting import tight_layout
    from deeplimit.transfer.plots import _save  # the package's atomic PNG writer (closes the figure)

    if title:
        fig.suptitle(title, fontsize=10)
    tight_layout(fig)
    return str(_save(fig, path))


def plot_transfer(results: Mapping[str, TransferAnalysis], path: str, *, title: str = "") -> str:
    """One panel per experiment: seed-mean loss vs its log2 axis, one curve per size, η̂* marked (hollow:
    censored), the slope statistic's verdict in the panel title. For the weight-decay sweeps the axis is τ or λ."""
    from deeplimit.transfer.plots import plt  # pyplot on the headless Agg backend

    panels = [(name, rule) for name, an in results.items() for rule in an.drift["rule"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False, sharey=False)
    for ax, (name, rule) in zip(axes[0], panels):
        an = results[name]
        size = an.size
        curves = an.curves[an.curves["rule"] == rule]
        summary = an.summary[an.summary["rule"] == rule].set_index(size)
        sizes = sorted(curves[size].unique())
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sizes)))
        for c, s in zip(colors, sizes):
            cur = curves[(curves[size] == s) & np.isfinite(curves["mean_loss"])]
            ax.plot(cur["log2_lr"], cur["mean_loss"], marker="o", ms=3, color=c, label=f"{size} {s:g}")
            row = summary.loc[s]
            if np.isfinite(row["log2_eta_star"]):
                ax.plot(row["log2_eta_star"], row["loss_at_optimum"], marker="*", ms=13, mec="k",
                        mfc="none" if row["censored"] else c)
        drift = an.drift[an.drift["rule"] == rule].iloc[0]
        lo, hi = drift["seed_slope_ci_low"], drift["seed_slope_ci_high"]
        ci = f"[{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else "n/a"
        ax.set_title(f"{name} / {rule}\n{drift['verdict']}: slope {drift['seed_slope']:+.2f}/doubling, 95% CI {ci}",
                     fontsize=8)
        ax.set_xlabel(AXIS_LABELS.get(AXES.get(name, "log2_lr"), "log2 value"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("train loss, last 10% of steps (nats)")
    return _finish(fig, path, title)


def plot_decay_thresholds(tables: Mapping[str, pd.DataFrame], decay_thresholds: Mapping[str, DecayThreshold],
                          path: str, *, title: str = "") -> str:
    """One panel per hidden-only weight-decay experiment: seed-mean loss above the no-decay loss vs log2 λ or
    log2 τ, one curve per width, the δ line and each width's threshold marked (its slope verdict in the title)."""
    from deeplimit.transfer.plots import plt  # pyplot on the headless Agg backend

    names = list(decay_thresholds)
    fig, axes = plt.subplots(1, len(names), figsize=(4.8 * len(names), 3.6), squeeze=False)
    ref = final_values(tables[THRESHOLD_REFERENCE], "window_loss")
    ref = ref[pd.to_numeric(ref["weight_decay"]) == 0].groupby(["width", "seed"])["value"].mean()
    for ax, name in zip(axes[0], names):
        th = decay_thresholds[name]
        runs = final_values(tables[name], "window_loss")
        runs = runs[pd.to_numeric(runs[th.axis]) > 0]
        sizes = sorted(runs[th.size].unique())
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sizes)))
        for c, s in zip(colors, sizes):
            sub = runs[runs[th.size] == s]
            excess = sub["value"].to_numpy(float) - ref.reindex(list(zip(sub[th.size], sub["seed"]))).to_numpy()
            curve = (sub.assign(_e=excess, _x=np.log2(pd.to_numeric(sub[th.axis])))
                     .groupby("_x")["_e"].mean())
            ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3, color=c, label=f"{th.size} {s:g}")
            row = th.per_size[th.per_size[th.size] == s]
            if len(row) and np.isfinite(row["log2_threshold"].iloc[0]):
                ax.plot(row["log2_threshold"].iloc[0], th.delta, marker="*", ms=13, mec="k", color=c)
        ax.axhline(th.delta, color="grey", lw=0.8, ls="--")
        ax.set_yscale("symlog", linthresh=0.01)
        if ax.get_ylim()[0] < 0 <= min(min(line.get_ydata()) for line in ax.get_lines()[:-1]):
            ax.set_ylim(bottom=0)  # no negative excess to show: keep the panel for the curves
        lo, hi = th.slope_ci
        ci = f"[{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else "n/a"
        ax.set_title(f"{name}\n{th.verdict}: threshold slope {th.slope:+.2f}/doubling, 95% CI {ci}", fontsize=8)
        ax.set_xlabel({"weight_decay": "log2 λ (the hidden matrices'; input and readout frozen)",
                       "wd_timescale_fraction": "log2 τ / run length (hidden matrices)"}[th.axis])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("loss − loss without decay (nats)")
    return _finish(fig, path, title)


# Grid names for ``deeplimit sweep create --grid NAME --set tier=…`` and the report's Muon section: name →
# (experiment key of :data:`SIZES`, spec builder of a tier).
GRIDS: dict[str, tuple[str, Callable[[str], SweepSpec]]] = {
    "muon-width-transfer": ("muon_width_transfer", lambda tier: muon_width_transfer(tier, rules=("mup", "sp"))),
    "muon-depth-transfer": ("muon_depth_transfer", muon_depth_transfer),
    "muon-transformer-depth": ("muon_transformer_depth", muon_transformer_depth),
    "weight-decay-timescale": ("weight_decay_width_timescale", lambda tier: weight_decay_width(tier, "timescale")),
    "weight-decay-constant": ("weight_decay_width_constant", lambda tier: weight_decay_width(tier, "constant")),
    "weight-decay-hidden-timescale": ("weight_decay_hidden_timescale",
                                      lambda tier: weight_decay_hidden_width(tier, "timescale")),
    "weight-decay-hidden-constant": ("weight_decay_hidden_constant",
                                     lambda tier: weight_decay_hidden_width(tier, "constant")),
}
