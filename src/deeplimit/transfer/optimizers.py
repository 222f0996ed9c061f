"""Optimizer experiments of issue #14: Muon LR transfer over width and depth, weight-decay transfer over width.

Spec builders return :class:`~deeplimit.sweep.grid.SweepSpec` grids over the real trainer (tiers ``smoke`` for
CI, ``quick``, ``standard`` — the runs recorded in docs/optimizers.md); :func:`analyze_axis` runs the transfer
analysis of depth-mup spec §11.4 on any log2 axis (the weight decay, not only the LR); and
:func:`muon_transfer_section` turns the sweeps into the verdict rows of the "Muon transfer" report section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.analysis import TransferAnalysis, analyze
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


def muon_width_transfer(tier: str = "standard", presets: Sequence[str] = ("mup",)) -> SweepSpec:
    """Muon LR transfer over width (MLP-ResNet, L = L₀ = 4, all layers trained; hidden on Muon, the rest AdamW)."""
    widths, lrs, seeds, steps = _tier(tier, ([16, 32], log2_grid(-10, -8, 1), [0], 20),
                                      ([64, 128, 256], log2_grid(-12, -6, 1), [0, 1], 200),
                                      ([64, 128, 256, 512], WIDTH_GRID, [0, 1, 2], 300))
    return SweepSpec(
        axes={"preset": list(presets), "width": widths, "log2_lr": lrs, "seed": seeds},
        fixed=_mlp("muon_width_transfer", depth=4, base_width=widths[0], base_depth=4, steps=steps,
                   train_io=True),
        objective=OBJECTIVE, metric="window_loss",
        description="Muon LR transfer over width on Fashion-MNIST MLP-ResNets (muon_lr_ratio 8)")


def muon_depth_transfer(tier: str = "standard", presets: Sequence[str] = ("depth_mup", "blocks_only")) -> SweepSpec:
    """Muon LR transfer over depth (MLP-ResNet n = 64, U and V frozen as TP6 §10.2, so only Muon trains).

    ``depth_mup`` carries the predicted Muon depth factor m_L^{α−1} = m_L^{-1/2}; ``blocks_only`` (α = ½, γ = 0)
    leaves it out, so its η* should fall by ½ octave per doubling if the prediction holds (optimizers spec §3).
    """
    depths, lrs, seeds, steps = _tier(tier, ([2, 4], log2_grid(-10, -8, 1), [0], 20),
                                      ([4, 16, 64], log2_grid(-13, -5, 1), [0, 1], 200),
                                      ([4, 8, 16, 32, 64], [-13.0, -12.0, *log2_grid(-11, -5, 1)], [0, 1, 2], 300))
    return SweepSpec(
        axes={"preset": list(presets), "depth": depths, "log2_lr": lrs, "seed": seeds},
        fixed=_mlp("muon_depth_transfer", width=64, base_width=64, base_depth=4, steps=steps, train_io=False,
                   activation="relu"),
        objective=OBJECTIVE, metric="window_loss",
        description="Muon LR transfer over depth on Fashion-MNIST MLP-ResNets (U, V frozen)")


def muon_transformer_depth(tier: str = "standard",
                           presets: Sequence[str] = ("completep", "depth_mup")) -> SweepSpec:
    """Muon LR transfer over depth on the pre-LN byte transformer (n = 64, L₀ = 1, all layers trained)."""
    depths, lrs, seeds, steps, data = _tier(tier, ([1, 2], log2_grid(-9, -8, 1), [0], 10, "stdlib"),
                                            ([1, 2, 4], log2_grid(-10, -3, 1), [0, 1], 120, "shakespeare"),
                                            ([1, 2, 4, 8], log2_grid(-11, -3, 1), [0, 1, 2], 150, "shakespeare"))
    return SweepSpec(
        axes={"preset": list(presets), "depth": depths, "log2_lr": lrs, "seed": seeds},
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
        fixed={"experiment": f"weight_decay_width_{parametrization}", "model": "mlp-resnet", "preset": "mup",
               "optimizer": "adamw", "depth": 4, "base_width": widths[0], "base_depth": 4, "log2_lr": -9.0,
               "steps": steps, "batch_size": 128, "train_io": True, "data": "fashion-mnist", **extra},
        objective=OBJECTIVE, metric="window_loss",
        description=f"weight-decay transfer over width, {parametrization} parametrization (AdamW, muP)")


def analyze_axis(table: pd.DataFrame, axis: str = "log2_lr", *, metric: str = "window_loss",
                 group: str | Sequence[str] = "preset", size: str = "width", n_boot: int = 1000,
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
}
SIZES = {"muon_width_transfer": "width", "muon_depth_transfer": "depth", "muon_transformer_depth": "depth",
         "weight_decay_width_timescale": "width", "weight_decay_width_constant": "width"}
AXES = {"weight_decay_width_timescale": "wd_timescale_fraction", "weight_decay_width_constant": "weight_decay"}


def analyses(tables: Mapping[str, pd.DataFrame], *, n_boot: int = 1000) -> dict[str, TransferAnalysis]:
    """The transfer analysis of each experiment's long table (keys of :data:`SIZES`), on its own axis and size."""
    out = {}
    for name, table in tables.items():
        if name not in SIZES:
            raise DeeplimitError(f"unknown experiment {name!r}; known: {sorted(SIZES)}")
        out[name] = analyze_axis(table, AXES.get(name, "log2_lr"), size=SIZES[name], n_boot=n_boot)
    return out


def muon_transfer_section(tables: Mapping[str, pd.DataFrame], *, n_boot: int = 1000) -> pd.DataFrame:
    """Verdict rows of the "Muon transfer" section from the long tables of the sweeps above.

    ``tables`` maps an experiment name (a key of :data:`SIZES`, e.g. ``"muon_width_transfer"``) to its long
    table (``deeplimit.transfer.table.transfer_results``). One row per (experiment, preset): see
    :func:`section_rows`.
    """
    return section_rows(analyses(tables, n_boot=n_boot))


def section_rows(results: Mapping[str, TransferAnalysis]) -> pd.DataFrame:
    """Verdict rows from the analyses of :func:`analyses` (for a caller that also plots them). One row per
    (experiment, preset): the drift D of the optimum over the size range with its 95 % interval, the verdict of
    the sweep analysis, what theory expects, and ``agrees`` — True when the verdict is the expected one, False
    when it is the other one, None when the run was inconclusive or degraded (never counted as agreement).
    """
    rows = []
    for name, result in results.items():
        for _, d in result.drift.iterrows():
            preset = d["preset"]
            expected = EXPECTED.get((name, preset))
            verdict = d["verdict"]
            agrees = None if verdict not in ("transfers", "shifts") or expected is None else verdict == expected
            rows.append({"experiment": name, "preset": preset, "size": SIZES[name],
                         "axis": AXES.get(name, "log2_lr"), "drift": d["drift"], "drift_ci_low": d["drift_ci_low"],
                         "drift_ci_high": d["drift_ci_high"], "slope": d["slope"], "verdict": verdict,
                         "expected": expected, "agrees": agrees, "n_sizes": int(d["n_sizes"]),
                         "n_used": int(d["n_used"]), "text": d["verdict_text"]})
    return pd.DataFrame.from_records(rows)


def agreement(value: object) -> bool | None:
    """A row's ``agrees`` as read back from a table: True, False, or None (undecided; pandas may store NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def section_verdict(section: pd.DataFrame) -> str:
    """The report's word for :func:`muon_transfer_section`: ``holds`` (every row as predicted), ``does not hold``
    (a row decided against the prediction), ``partly`` (some rows as predicted, the rest undecided) or
    ``inconclusive`` (nothing decided at this budget)."""
    agrees = [a for a in map(agreement, section["agrees"]) if a is not None]
    if not agrees:
        return "inconclusive"
    if not all(agrees):
        return "does not hold"
    return "holds" if len(agrees) == len(section) else "partly"


def section_lines(section: pd.DataFrame) -> list[str]:
    """One plain line per row of :func:`muon_transfer_section` (for a report or a terminal)."""
    out = []
    for _, r in section.iterrows():
        ci = (f"[{r['drift_ci_low']:+.2f}, {r['drift_ci_high']:+.2f}]" if math.isfinite(r["drift_ci_low"])
              else "no interval")
        mark = {True: "as predicted", False: "AGAINST the prediction", None: "not decided at this budget"}
        agrees = agreement(r["agrees"])
        expected = r["expected"] if isinstance(r["expected"], str) else None
        note = mark[agrees] if expected is not None else "no prediction to compare with"
        out.append(f"{r['experiment']} / {r['preset']}: {r['verdict']} (drift {r['drift']:+.2f}, 95% CI {ci}; "
                   f"expected {expected or 'nothing'}; {note})")
    return out


AXIS_LABELS = {"wd_timescale_fraction": "log2 τ / run length", "weight_decay": "log2 λ (same for every tensor)",
               "log2_lr": "log2 base learning rate"}


def plot_transfer(results: Mapping[str, TransferAnalysis], path: str, *, title: str = "") -> str:
    """One panel per experiment: seed-mean loss vs its log2 axis, one curve per size, η̂* marked (hollow:
    censored), the drift verdict in the panel title. For the weight-decay sweeps the axis is τ or λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, preset) for name, an in results.items() for preset in an.drift["preset"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False, sharey=False)
    for ax, (name, preset) in zip(axes[0], panels):
        an = results[name]
        size = an.size
        curves = an.curves[an.curves["preset"] == preset]
        summary = an.summary[an.summary["preset"] == preset].set_index(size)
        sizes = sorted(curves[size].unique())
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sizes)))
        for c, s in zip(colors, sizes):
            cur = curves[(curves[size] == s) & np.isfinite(curves["mean_loss"])]
            ax.plot(cur["log2_lr"], cur["mean_loss"], marker="o", ms=3, color=c, label=f"{size} {s:g}")
            row = summary.loc[s]
            if np.isfinite(row["log2_eta_star"]):
                ax.plot(row["log2_eta_star"], row["loss_at_optimum"], marker="*", ms=13, mec="k",
                        mfc="none" if row["censored"] else c)
        drift = an.drift[an.drift["preset"] == preset].iloc[0]
        ci = (f"[{drift['drift_ci_low']:+.2f}, {drift['drift_ci_high']:+.2f}]"
              if math.isfinite(drift["drift_ci_low"]) else "n/a")
        ax.set_title(f"{name} / {preset}\n{drift['verdict']}: D = {drift['drift']:+.2f}, 95% CI {ci}", fontsize=8)
        ax.set_xlabel(AXIS_LABELS.get(AXES.get(name, "log2_lr"), "log2 value"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("train loss, last 10% of steps (nats)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# Grid names for ``deeplimit sweep create --grid NAME --set tier=…`` and the report's Muon section: name →
# (experiment key of :data:`SIZES`, spec builder of a tier).
GRIDS: dict[str, tuple[str, Callable[[str], SweepSpec]]] = {
    "muon-width-transfer": ("muon_width_transfer", lambda tier: muon_width_transfer(tier, presets=("mup", "sp"))),
    "muon-depth-transfer": ("muon_depth_transfer", muon_depth_transfer),
    "muon-transformer-depth": ("muon_transformer_depth", muon_transformer_depth),
    "weight-decay-timescale": ("weight_decay_width_timescale", lambda tier: weight_decay_width(tier, "timescale")),
    "weight-decay-constant": ("weight_decay_width_constant", lambda tier: weight_decay_width(tier, "constant")),
}
