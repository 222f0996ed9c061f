"""The transfer oracle's width extrapolation on real runs, on the PILOT seeds (exploratory: a pilot for a future
protocol claim, never a verdict).

    python scripts/oracle_width_pilot.py --out runs/oracle-width-pilot           # ~7 min on 2 quiet cores
    python scripts/oracle_width_pilot.py --out /tmp/owp --tiny --workers 1       # the pipeline in ~2 minutes

μP MLP-ResNet (the ``oracle-mlp`` grid's model under the ``mup`` rule with a zero-initialised readout, as the
protocol's width-transfer claim: base width 32, depth 2, all layers trained, Fashion-MNIST, Adam, batch 32,
constant LR). The oracle (:func:`deeplimit.transfer.oracle.fit_oracle`) is fitted on widths {32, 64, 128} ×
data budgets {4096, 8192, 16384} images (128-512 steps) and forecasts η* at two groups it never sees: width 512
(16× the smallest fitted width, 4× the largest) and 1024 (32×, 8×), both at 16384 images — width is the only
size that extrapolates. Scored as the report's ``oracle`` claim
(:func:`deeplimit.transfer.oracle_verdict.heldout_validation`: per-seed η̂*, per-seed 80% intervals, regret, the
naive forecast = the nearest fitted group's η̂* (width 128, 16384 images), the ±1-octave control) twice: with
the width exponent fitted, and held at 0 (``--fix width=0``: μP's promise). Writes ``runs.csv`` and
``oracle_width_pilot.json`` under ``--out`` and prints both scores.

The LR grid 2^-13 … 2^-6 leaves ≥ 2.5 octaves either side of the η̂* ≈ 2^-10 … 2^-9 the MLP oracle pilots found
at width 32 (docs/oracle.md); the zero readout and the widths may move it, so a group whose optimum lands on an
edge is reported as censored rather than extrapolated.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from oracle_pilot_common import loss_runs, pilot_args, pilot_seed_count, provenance, run_seconds, run_sweeps

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.experiments import log2_grid
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle_grids import oracle_mlp_mup
from deeplimit.transfer.oracle_verdict import heldout_validation

FULL = {"fit_widths": (32, 64, 128), "fit_samples": (4096, 8192, 16384), "held_widths": (512, 1024),
        "held_samples": 16384, "batch_size": 32, "log2_lr": (-13.0, -6.0, 1.0)}
TINY = {"fit_widths": (8, 16, 32), "fit_samples": (128, 256), "held_widths": (64,), "held_samples": 256,
        "batch_size": 16, "log2_lr": (-7.0, -4.5, 0.5)}
X = ("width", "samples")


def design(tiny: bool = False) -> dict[str, Any]:
    """The fitted and held-out (width, samples) groups and the shared settings."""
    d = dict(TINY if tiny else FULL)
    d["fitted"] = [(w, s) for w in d["fit_widths"] for s in d["fit_samples"]]
    d["held_out"] = [(w, d["held_samples"]) for w in d["held_widths"]]
    d["base_width"] = d["fit_widths"][0]
    return d


def _spec(widths: list[int], samples: list[int], seeds: int, d: dict[str, Any]) -> SweepSpec:
    spec = oracle_mlp_mup(tier="smoke", seed_set="pilot", depth=[2], samples=samples, batch_size=[d["batch_size"]],
                          log2_lr=log2_grid(*d["log2_lr"]), seeds=seeds, width=widths, base_width=d["base_width"])
    return replace(spec, description=f"oracle width pilot: MLP-ResNet (muP, zero readout), widths {widths}, "
                                     f"budgets {samples}")


def build_specs(seeds: int, tiny: bool = False) -> dict[str, SweepSpec]:
    """``fit``: the fitted widths × budgets; ``held``: the held-out widths at the held-out budget."""
    d = design(tiny)
    return {"fit": _spec(list(d["fit_widths"]), list(d["fit_samples"]), seeds, d),
            "held": _spec(list(d["held_widths"]), [d["held_samples"]], seeds, d)}


def score(runs: pd.DataFrame, d: dict[str, Any]) -> dict[str, Any]:
    """The held-out scores with the width exponent fitted (``free``) and held at 0 (``fix_width_0``), each
    :func:`heldout_validation`'s dict — or ``{"error": …}``, the oracle's one-line refusal (too few interior
    optima is a result of the pilot, not a crash)."""
    out: dict[str, Any] = {}
    for name, fixed in (("free", None), ("fix_width_0", {"width": 0.0})):
        try:
            out[name] = heldout_validation(runs, d["fitted"], d["held_out"], x=X, lr="lr", loss="loss", fixed=fixed)
        except DeeplimitError as exc:
            out[name] = {"error": str(exc)}
    return out


def _num(v: float | None) -> str:
    return "censored" if v is None else f"{v:+.2f}"


def main() -> None:
    a = pilot_args(__doc__, "runs/oracle-width-pilot", "window_loss")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    d = design(a.tiny)
    meta = provenance()
    t0 = time.perf_counter()
    tables, walls = run_sweeps(build_specs(pilot_seed_count(a.seeds), a.tiny), out, prefix="oracle-width-pilot",
                               workers=a.workers)
    wall = round(time.perf_counter() - t0, 1)
    runs = loss_runs(tables, a.loss)
    runs.to_csv(out / "runs.csv", index=False)
    result: dict[str, Any] = {
        **meta, "design": d, "seeds": sorted({int(s) for s in runs["seed"]}), "loss": a.loss, "workers": a.workers,
        "wall_s": wall, "sweep_wall_s": walls, "runs_wall_s": run_seconds(runs), "n_runs": len(runs),
        "n_diverged": int(runs["status"].astype(str).eq("diverged").sum())}
    result.update(score(runs, d))
    (out / "oracle_width_pilot.json").write_text(json.dumps(json_safe(result), indent=1))
    print(f"{len(runs)} runs ({result['n_diverged']} diverged), {wall:.0f} s with {a.workers} workers; "
          f"loss = {a.loss}")
    for name in ("free", "fix_width_0"):
        val = result[name]
        print(f"--- width exponent {'fitted' if name == 'free' else 'held at 0'}")
        if "error" in val:
            print("no fit:", val["error"])
            continue
        print("fit:", json.dumps({k: val["fit"][k] for k in ("intercept", "exponents", "residual_sd_octaves", "df")}))
        print("fitted groups (log2 eta*; None = on the grid's edge):",
              [(g["width"], g["samples"], None if g["log2_lr"] is None else round(g["log2_lr"], 2))
               for g in val["fitted_groups"]])
        for k in ("oracle", "naive", "shift_plus", "shift_minus"):
            print(f"  {k:12s}", json.dumps(val[k]))
        for g in val["groups"]:
            seeds = [None if r["measured_log2_lr"] is None else round(r["measured_log2_lr"], 2)
                     for r in val["rows"] if r["width"] == g["width"]]
            print(f"  width {g['width']:g}: measured {_num(g['measured_log2_lr'])} (seeds {seeds}), oracle "
                  f"{g['predicted_log2_lr']:+.2f} [{g['lo']:+.2f}, {g['hi']:+.2f}], naive {g['naive_log2_lr']:+.2f}; "
                  f"regret oracle {100 * g['regret_oracle']:.2f}%, naive {100 * g['regret_naive']:.2f}%")
    fit_w = max(d["fit_widths"])
    print(f"the law's seed-mean forecast with the CLI: deeplimit predict {out / 'runs.csv'} --x width samples "
          f"--loss loss --where 'width <= {fit_w}' " + " ".join(f"--at width={w},samples={s}" for w, s in d["held_out"])
          + " [--fix width=0]")


if __name__ == "__main__":
    main()
