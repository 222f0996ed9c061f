"""Named experiments of the depth-mup spec §11 at CPU scale, as sweep specs (grids over the real trainer).

Each builder takes a tier (``smoke`` for CI, ``quick`` for ``deeplimit reproduce``, ``standard`` for the
documented evidence runs, ``full`` for the long version) and returns a :class:`~deeplimit.sweep.SweepSpec`
whose objective is :data:`deeplimit.transfer.objectives.train_objective`. Axes are swept; everything else is
fixed. Learning rates are swept as ``log2_lr`` (``lr = 2**log2_lr``) on grids made by :func:`log2_grid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec

__all__ = ["EXPERIMENTS", "ANALYSIS", "EXPERIMENT_TIERS", "experiment", "customise", "log2_grid", "LRSearch",
           "lr_search", "refine_specs"]

OBJECTIVE = "deeplimit.transfer.objectives:train_objective"
EXPERIMENT_TIERS = ("smoke", "quick", "standard", "full")


def log2_grid(start: float, stop: float, step: float = 1.0) -> list[float]:
    """Inclusive log2-LR grid ``start, start+step, …, stop`` with values rounded to avoid float drift."""
    for what, v in (("start", start), ("stop", stop), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DeeplimitError(f"log2 grid {what} must be a finite number, got {v!r}; e.g. -10:-5:0.5")
    if step <= 0:
        raise DeeplimitError(f"log2 grid step must be positive, got {step!r}; e.g. step=1.0 or 0.5")
    if stop < start:
        raise DeeplimitError(f"log2 grid stop {stop!r} is below start {start!r}; swap them")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > 10_000:
        raise DeeplimitError(f"log2 grid {start}:{stop}:{step} has {n} points; use a larger step")
    return [round(start + i * step, 10) for i in range(n)]


def _tier(tier: str, smoke, quick, full, standard=None):
    """Pick a tier's settings: smoke (CI), quick (``deeplimit reproduce``), standard (the documented evidence
    runs; defaults to quick), full (the spec's long version). For grids outside the protocol (the oracle's
    exploratory sweeps); a claim's grid comes from the protocol (:func:`_protocol_grid`)."""
    if tier not in EXPERIMENT_TIERS:
        raise DeeplimitError(f"unknown tier {tier!r}; choose one of {EXPERIMENT_TIERS}")
    return {"smoke": smoke, "quick": quick, "standard": standard or quick, "full": full}[tier]


def _protocol_grid(claim: str, tier: str) -> tuple[dict, list[float], list[int]]:
    """A claim's tier settings from the frozen protocol: the settings, the log2-LR grid and the seed *indices*
    (0 … n−1; :func:`experiment` maps them onto the pilot or confirmation seeds)."""
    from deeplimit.protocol import protocol

    _tier(tier, *(None,) * 3)  # the same unknown-tier error as every other experiment
    t = protocol().tier(claim, tier)
    return t, log2_grid(*t["log2_lr"]), list(range(t["seeds"]))


def _early_stop(t: dict) -> dict:
    """The trainer setting of a protocol tier's optional ``diverge_patience`` (none when the tier has none, so a
    tier without it keeps its sweep's name and cache)."""
    return {"diverge_patience": int(t["diverge_patience"])} if t.get("diverge_patience") is not None else {}


def depth_transfer(tier: str = "quick") -> SweepSpec:
    """TP6 Fig. 10/11: LR transfer over depth for Depth-μP against the ODE rule (1, 0) and SP; U, V frozen (§11.2).

    Sizes, steps, grid and seeds are the protocol's (``protocol.toml``, claim ``depth-transfer``). With U and V
    frozen, (½, 0) would only relabel Depth-μP's LR by m_L^−½, so it is not run as a control: the report derives
    that calibration from Depth-μP's own runs (the full tier still runs it, to show the relabelling is exact)."""
    t, lrs, seeds = _protocol_grid("depth-transfer", tier)
    return SweepSpec(
        axes={"rule": list(t["rules"]), "depth": list(t["sizes"]), "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "depth_transfer", "model": "mlp-resnet", "width": t["width"], "base_width": t["width"],
               "base_depth": 4, "steps": t["steps"], "batch_size": 128, "train_io": False, "data": "fashion-mnist",
               "activation": "relu", **_early_stop(t)},
        objective=OBJECTIVE, metric="window_loss",
        description="TP6 depth transfer on Fashion-MNIST MLP-ResNets (hidden weights trained, U and V frozen)")


def width_transfer(tier: str = "quick") -> SweepSpec:
    """TP5 / spec §11.5: LR transfer over width, μP vs SP, depth fixed at the base depth, all layers trained, the
    readout initialised as the protocol says (zero, as mup and TP5 recommend). Settings from ``protocol.toml``."""
    from deeplimit.protocol import protocol

    t, lrs, seeds = _protocol_grid("width-transfer", tier)
    sizes = list(t["sizes"])
    return SweepSpec(
        axes={"rule": list(t["rules"]), "width": sizes, "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "width_transfer", "model": "mlp-resnet", "depth": t["depth"], "base_width": sizes[0],
               "base_depth": t["depth"], "steps": t["steps"], "batch_size": 128, "train_io": True,
               "data": "fashion-mnist",
               "readout_zero_init": bool(protocol().claim("width-transfer").get("readout_zero_init", False)),
               **_early_stop(t)},
        objective=OBJECTIVE, metric="window_loss",
        description="muP width transfer on Fashion-MNIST MLP-ResNets (all layers trained)")


def activation(tier: str = "quick") -> SweepSpec:
    """TP6 Fig. 3: |x| vs ReLU under Depth-μP (log2 a = −1.5 for both); |x| should give the lower best loss.
    Depths, steps, grid and seeds are the protocol's (claim ``activation``)."""
    t, lrs, seeds = _protocol_grid("activation", tier)
    return SweepSpec(
        axes={"activation": ["relu", "abs"], "depth": list(t["sizes"]), "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "activation", "model": "mlp-resnet", "rule": "depth_mup", "width": 64,
               "base_width": 64, "base_depth": 4, "steps": t["steps"], "batch_size": 128, "train_io": False,
               "block_mult": 2**-1.5, "data": "fashion-mnist"},
        objective=OBJECTIVE, metric="window_loss", description="TP6 |x| vs ReLU under Depth-muP")


def block_depth(tier: str = "quick") -> SweepSpec:
    """TP6 §9, Figs. 4–6: block depth 1 vs 2 under Depth-μP; expect an η* shift for k = 2. Depths, steps, grid and
    seeds are the protocol's (claim ``block-depth``)."""
    t, lrs, seeds = _protocol_grid("block-depth", tier)
    return SweepSpec(
        axes={"block_depth": [1, 2], "depth": list(t["sizes"]), "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "block_depth", "model": "mlp-resnet", "rule": "depth_mup", "width": 64,
               "base_width": 64, "base_depth": 2, "steps": t["steps"], "batch_size": 128, "train_io": False,
               "data": "fashion-mnist"},
        objective=OBJECTIVE, metric="window_loss", description="TP6 block depth 1 vs 2 under Depth-muP")


def transformer_depth(tier: str = "quick") -> SweepSpec:
    """Spec §11.7: byte-level LM, LR transfer over depth for CompleteP (α = 1), Depth-μP (α = ½) and μP. Rules,
    depths, steps, grid, data and seeds are the protocol's (claim ``transformer-depth``)."""
    t, lrs, seeds = _protocol_grid("transformer-depth", tier)
    return SweepSpec(
        axes={"rule": list(t["rules"]), "depth": list(t["sizes"]), "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "transformer_depth", "model": "transformer", "width": 64, "base_width": 64,
               "base_depth": 2, "n_heads": 4, "optimizer": "adamw", "steps": t["steps"], "batch_size": 16,
               "seq_len": 64, "warmup_frac": 0.05, "data": t["data"], "min_window": 20},
        objective=OBJECTIVE, metric="window_loss",
        description="Pre-LN byte transformer: LR transfer over depth (CompleteP vs Depth-muP vs muP)")


def shaped_vs_preln(tier: str = "quick") -> SweepSpec:
    """Shaped Transformer (no LayerNorm) vs Pre-LN on bytes: loss vs LR at one depth.

    The shaped model trains with the paper's recipe (``protocol.toml``, claim ``shaped-vs-preln``: γ1, γ2 and the
    shaped-ReLU slope trainable, "learn"), not with γ frozen, which the paper says trains "at much slower rates";
    the setting applies to the shaped model only (Pre-LN has no γ). Depths, steps, grid, data and seeds are the
    protocol's."""
    from deeplimit.protocol import protocol

    t, lrs, seeds = _protocol_grid("shaped-vs-preln", tier)
    return SweepSpec(
        axes={"model": ["transformer", "shaped-transformer"], "depth": list(t["sizes"]), "log2_lr": lrs,
              "seed": seeds},
        fixed={"experiment": "shaped_vs_preln", "shaping": protocol().claim("shaped-vs-preln")["shaping"],
               "rule": "mup", "width": 64, "base_width": 64, "base_depth": 2,
               "n_heads": 4, "optimizer": "adamw", "steps": t["steps"], "batch_size": 16, "seq_len": 64,
               "warmup_frac": 0.05, "data": t["data"], "min_window": 20},
        objective=OBJECTIVE, metric="window_loss",
        description="Shaped Transformer (no LayerNorm) vs Pre-LN on bytes")


def no_ln_control(tier: str = "quick") -> SweepSpec:
    """Negative control of :func:`shaped_vs_preln`: the Pre-LN transformer with its LayerNorms removed (softmax
    attention, plain residual) on the same grid (the protocol's ``shaped-vs-preln`` tier); it should train clearly
    worse than both."""
    t, lrs, seeds = _protocol_grid("shaped-vs-preln", tier)
    return SweepSpec(
        axes={"model": ["transformer"], "depth": list(t["sizes"]), "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "no_ln_control", "rule": "mup", "norm": "none", "width": 64, "base_width": 64,
               "base_depth": 2, "n_heads": 4, "optimizer": "adamw", "steps": t["steps"], "batch_size": 16,
               "seq_len": 64, "warmup_frac": 0.05, "data": t["data"], "min_window": 20},
        objective=OBJECTIVE, metric="window_loss",
        description="negative control: softmax transformer without LayerNorm on bytes")


EXPERIMENTS: dict[str, Callable[[str], SweepSpec]] = {
    "depth-transfer": depth_transfer,
    "width-transfer": width_transfer,
    "activation": activation,
    "block-depth": block_depth,
    "transformer-depth": transformer_depth,
    "shaped-vs-preln": shaped_vs_preln,
    "no-ln-control": no_ln_control,
}
# the protocol claim whose seeds an experiment runs on (a control runs on its claim's seeds)
CLAIM_OF = {"no-ln-control": "shaped-vs-preln"}
# how each experiment is analysed: (group columns, size column)
ANALYSIS = {
    "depth-transfer": ("rule", "depth"),
    "width-transfer": ("rule", "width"),
    "activation": ("activation", "depth"),
    "block-depth": ("block_depth", "depth"),
    "transformer-depth": ("rule", "depth"),
    "shaped-vs-preln": ("model", "depth"),
    "no-ln-control": ("model", "depth"),
}


def customise(spec: SweepSpec, **overrides: Any) -> SweepSpec:
    """Change an experiment's grid from ``--set key=value`` pairs without writing a JSON spec.

    * an axis name replaces that axis: ``depth=(8, 16, 32)`` (``--set depth=8,16,32``), a single value, or for
      ``log2_lr`` a ``"start:stop:step"`` string (``--set log2_lr=-10:-5:0.5``);
    * ``seeds=N`` sets the seed axis to the first N seeds of the seed set (:func:`experiment`'s ``seed_set``);
    * a fixed setting takes a new value (``--set steps=400``), or becomes an axis when given several.
    Unknown keys are errors that list the axes and settings.
    """
    axes, fixed = dict(spec.axes), dict(spec.fixed)
    for key, value in overrides.items():
        if key == "seeds":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise DeeplimitError(f"seeds must be a whole number ≥ 1 (the first N seeds of the seed set), got "
                                     f"{value!r}; e.g. --set seeds=2")
            axes["seed"] = list(range(value))
        elif key == "log2_lr" and isinstance(value, str):
            try:
                start, stop, step = (float(x) for x in value.split(":"))
            except ValueError:
                raise DeeplimitError(f"log2_lr={value!r}: use start:stop:step, e.g. -10:-5:0.5") from None
            axes[key] = log2_grid(start, stop, step)
        elif key in axes or (key in fixed and isinstance(value, (list, tuple))):
            axes[key] = list(value) if isinstance(value, (list, tuple)) else [value]
            fixed.pop(key, None)
        elif key in fixed:
            fixed[key] = value
        else:
            raise DeeplimitError(
                f"this experiment has no axis or setting {key!r}; axes: {sorted(axes)} (and seeds=N), "
                f"settings: {sorted(fixed)}"
            )
    if not overrides:
        return spec
    note = ", ".join(f"{k}={v}" for k, v in overrides.items())
    return replace(spec, axes=axes, fixed=fixed, description=f"{spec.description} [customised: {note}]")


def experiment(name: str, tier: str = "quick", seed_set: str = "confirmation", **overrides: Any) -> SweepSpec:
    """The named experiment at ``tier``, with optional :func:`customise` overrides.

    Its seed axis (indices 0 … n−1 in the builders) is mapped onto the protocol's ``seed_set``: "confirmation"
    seeds decide verdicts, "pilot" seeds tune settings (``protocol.toml``); the two never overlap."""
    from deeplimit.protocol import seed_values

    key = name.replace("_", "-")
    if key not in EXPERIMENTS:
        raise DeeplimitError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    spec = customise(EXPERIMENTS[key](tier), **overrides)
    if "seed" in spec.axes:
        idx = list(spec.axes["seed"])
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx):
            raise DeeplimitError(f"seed indices must be whole numbers ≥ 0, got {idx}; use seeds=N")
        values = seed_values(max(idx) + 1, seed_set, CLAIM_OF.get(key, key))
        spec = replace(spec, axes={**spec.axes, "seed": [values[i] for i in idx]})
    return spec


# ------------------------------------------------------------------------------------------------
# Two-pass LR search (protocol key ``lr_search = "two-pass"``)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LRSearch:
    """How a claim's tier searches the learning rate: ``kind`` "grid" runs the spec's ``log2_lr`` grid once;
    "two-pass" then adds ``refine_step``-octave points within ``half_width`` octaves of each (rule, size,
    seed) optimum (:func:`refine_specs`)."""

    kind: str = "grid"
    refine_step: float = 0.5
    half_width: float = 1.0

    @property
    def two_pass(self) -> bool:
        return self.kind == "two-pass"


def lr_search(name: str, tier: str) -> LRSearch:
    """The LR search the protocol sets for experiment ``name`` at ``tier`` (``lr_search``, ``refine_step``,
    ``refine_half_width`` in the claim's tier; checked when the protocol is read). Experiments without a
    protocol tier search their grid once."""
    from deeplimit.protocol import protocol

    key, p = name.replace("_", "-"), protocol()
    if not p.has_tier(key, tier):
        return LRSearch()
    t = p.tier(key, tier)
    return LRSearch(kind=str(t.get("lr_search", "grid")), refine_step=float(t.get("refine_step", 0.5)),
                    half_width=float(t.get("refine_half_width", 1.0)))


def refine_specs(spec: SweepSpec, table: Any, *, group: str | Sequence[str], size: str,
                 search: LRSearch) -> list[SweepSpec]:
    """The second pass of a two-pass LR search as sweep specs, from the first pass's long results table.

    ``table``: the long table of ``spec``'s sweep (one row per run and metric; columns ``metric``, ``value``,
    ``status``, the group and size columns, ``seed``, ``log2_lr``). For each (group, size, seed) curve,
    :func:`deeplimit.transfer.optimum.second_pass_points` gives the points to add on the lattice
    ``coarse[0] + j·refine_step``; curves of one (group, size) with the same points share a spec (their seeds
    as its seed axis), so every spec is a full grid and no run is added that its curve does not need. Curves
    that diverged at every LR add nothing. Specs come in a fixed order (deterministic given the table), so a
    resumed report finds the same sweeps."""
    import pandas as pd

    from deeplimit.transfer.optimum import second_pass_points

    groups = [group] if isinstance(group, str) else list(group)
    other = sorted(set(spec.axes) - {*groups, size, "seed", "log2_lr"})
    if other or "log2_lr" not in spec.axes:
        raise DeeplimitError(f"a two-pass LR search needs a grid over log2_lr, seed, the size and the group columns "
                             f"only; this one also sweeps {other or 'no log2_lr'} — group by them or sweep once")
    coarse = [float(x) for x in spec.axes["log2_lr"]]
    runs = table[table["metric"] == spec.metric] if "metric" in table.columns else table
    missing = [c for c in (*groups, size, "seed", "log2_lr", "value") if c not in runs.columns]
    if missing:
        raise DeeplimitError(f"the first pass's table lacks columns {missing}; pass the sweep's long results table")
    value = pd.to_numeric(runs["value"], errors="coerce")
    if "status" in runs.columns:
        value = value.where(runs["status"].astype(str) != "diverged", math.inf)
    runs = runs.assign(value=value.fillna(math.inf))
    wanted: dict[tuple, list] = {}
    for key, curve in runs.groupby([*groups, size, "seed"], sort=True):
        pts = second_pass_points(curve["log2_lr"].astype(float).to_numpy(), curve["value"].to_numpy(), coarse,
                                 step=search.refine_step, half_width=search.half_width)
        if pts:
            wanted.setdefault((*key[:-1], tuple(round(p, 10) for p in pts)), []).append(key[-1])
    specs = []
    for key, seeds in wanted.items():
        *gvals, sz, pts = key
        fixed_axes = dict(zip([*groups, size], [*gvals, sz]))
        axes = {}
        for name, values in spec.axes.items():
            val = fixed_axes.get(name)
            axes[name] = (list(pts) if name == "log2_lr" else sorted(_plain(s) for s in seeds) if name == "seed"
                          else [_plain(val)] if name in fixed_axes else list(values))
        specs.append(replace(spec, axes=axes, description=f"{spec.description} [second LR pass]"))
    return specs


def _plain(v: Any) -> Any:
    """A numpy scalar from a table as the Python scalar a sweep axis holds."""
    return v.item() if hasattr(v, "item") else v
