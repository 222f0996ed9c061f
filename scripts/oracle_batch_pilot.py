"""The transfer oracle's batch law on real runs, on the PILOT seeds (exploratory: a pilot for a future protocol
claim, never a verdict).

    python scripts/oracle_batch_pilot.py --out runs/oracle-batch-pilot            # ~14 min on 2 quiet cores
    python scripts/oracle_batch_pilot.py --out /tmp/obp --tiny --workers 1        # the pipeline in ~2 minutes
    python scripts/oracle_batch_pilot.py --out runs/oracle-batch-pilot --rescore --critical 0.01 0.02 0.05

The ``oracle-mlp`` grid's model (Depth-μP MLP-ResNet, width 32, depth 2, all layers trained, Fashion-MNIST,
Adam, constant LR) at data budgets of 1024, 2048 and 4096 images (fitted) and 32768 (held out: 8× the largest
fitted), each with a batch axis (steps = images / batch) and an LR grid per batch size. Per group (a budget)
and seed the oracle's estimator (:func:`deeplimit.transfer.oracle.fit_oracle` with ``batch``, what
``deeplimit predict --batch`` runs) profiles the batch axis — the best loss over the LR at each batch, a
quadratic in log2 B around the argmin gives B* — and reads η* off the LR optima at B*. The laws log2 B* =
a + d·log2 samples and log2 η* = a' + c·log2 samples are fitted on the three small budgets and checked at the
held-out one (:func:`deeplimit.transfer.oracle_eval.evaluate_oracle`: |log2 error|, regret, coverage of the 80%
interval, beside the naive forecast = the 4096-image group's optima). Writes ``runs.csv`` (one row per run),
``oracle_batch_pilot.json`` and prints the per-budget profiles and the scores.

``--critical TOL …`` scores the same runs a second way per tolerance: B* read as the critical batch
(``batch_estimator="critical"``, :func:`deeplimit.transfer.oracle_fit.critical_batch`: the largest batch whose
best loss over the LR is within TOL of the best, interpolated in log2 B), η* read there; the argmin's scores
stay where they were in the JSON, each tolerance's go under ``critical``. ``--rescore`` scores the ``runs.csv``
of an earlier run in ``--out`` without running anything (the run's record is kept, the scoring's commit added).

Why the design is what it is (single runs at pilot seed 0 while this script was written: a rough guide, not a
measurement):

* the loss is ``eval_loss`` on a fixed set of 2048 held-out images (``eval_batches`` = 2048 / batch), not
  ``window_loss``: the window is min(steps, max(50, 10% of the steps)), so a run of ≤ 50 steps is averaged from
  its first step, which penalises large batches for their early losses (at 16384 images, batch 128: window
  0.511, held-out 0.490; batch 8: 0.459 and 0.498) — the earlier pilot's "B* at the smallest batch" was that bias;
* the batch axis runs from 2 (4 on the held-out budget, where a batch-2 run would take 16384 steps and the
  published laws put B* higher) up to the batch that leaves 16 steps: with the held-out loss the profile (best
  over 4 LRs) was flat within 0.025 nats from batch 2 to 128 at 16384 images, while at 2048 images batch 128
  (16 steps) was 0.06-0.1 nats worse than batches 2-32;
* the LR grid of each batch size is centred on a rough prior from those runs, log2 η ≈ −10.5 + ½·log2(B/8)
  − 0.3·log2(samples/2048) (Adam's square-root rule and a shorter-horizon shift), ±3 octaves.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from oracle_pilot_common import loss_runs, pilot_args, pilot_seed_count, provenance, run_seconds, run_sweeps
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle import group_optima, prepared
from deeplimit.transfer.oracle_eval import evaluate_oracle
from deeplimit.transfer.oracle_fit import PowerLaw, check_batch_estimator
from deeplimit.transfer.oracle_grids import oracle_mlp

EVAL_IMAGES = 2048  # the held-out images every run is scored on (eval_batches × batch_size)
FULL = {"fit_samples": (1024, 2048, 4096), "held_samples": 32768, "min_batch": 2, "held_min_batch": 4,
        "min_steps": 16, "lr_half_width": 3}
TINY = {"fit_samples": (64, 128, 256), "held_samples": 1024, "min_batch": 2, "held_min_batch": 4, "min_steps": 16,
        "lr_half_width": 1}


def lr_centre(samples: int, batch: int) -> float:
    """The prior log2 η* that centres a batch size's LR grid (see the module docstring)."""
    return -10.5 + 0.5 * math.log2(batch / 8) - 0.3 * math.log2(samples / 2048)


def batches(samples: int, lowest: int, min_steps: int) -> list[int]:
    """Powers of two from ``lowest`` up to the batch that leaves ``min_steps`` steps of ``samples`` images."""
    out, b = [], lowest
    while samples // b >= min_steps:
        out.append(b)
        b *= 2
    return out


def design(tiny: bool = False) -> dict[str, Any]:
    """The budgets, their batch sizes and the LR grid of each (budget set, batch) sweep."""
    d = dict(TINY if tiny else FULL)
    d["fit_batches"] = {s: batches(s, d["min_batch"], d["min_steps"]) for s in d["fit_samples"]}
    d["held_batches"] = batches(d["held_samples"], d["held_min_batch"], d["min_steps"])
    return d


def _lr_grid(budgets: list[int], batch: int, half: int) -> list[float]:
    lo = round(min(lr_centre(s, batch) for s in budgets)) - half
    hi = round(max(lr_centre(s, batch) for s in budgets)) + half
    return [float(v) for v in range(lo, hi + 1)]


def _spec(budgets: list[int], batch: int, seeds: int, half: int) -> SweepSpec:
    spec = oracle_mlp(tier="smoke", seed_set="pilot", depth=[2], samples=budgets, batch_size=[batch],
                      log2_lr=_lr_grid(budgets, batch, half), seeds=seeds)
    return replace(spec, fixed={**spec.fixed, "eval_batches": max(1, EVAL_IMAGES // batch)},
                   description=f"oracle batch pilot: MLP-ResNet (Depth-muP), batch {batch}, budgets {budgets}")


def build_specs(seeds: int, tiny: bool = False) -> dict[str, SweepSpec]:
    """One sweep per batch size over the fitted budgets that run it (``fit-b<B>``), and one per batch size at the
    held-out budget (``held-b<B>``): a sweep is a product grid, and each batch size has its own LR window."""
    d = design(tiny)
    specs = {}
    for b in sorted({b for bs in d["fit_batches"].values() for b in bs}):
        budgets = [s for s in d["fit_samples"] if b in d["fit_batches"][s]]
        specs[f"fit-b{b}"] = _spec(budgets, b, seeds, d["lr_half_width"])
    for b in d["held_batches"]:
        specs[f"held-b{b}"] = _spec([d["held_samples"]], b, seeds, d["lr_half_width"])
    return specs


def profiles(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per budget and batch: the best loss over the LR, per seed and its mean — the profile B* is read from."""
    best = runs.groupby(["samples", "batch_size", "seed"])["loss"].min().reset_index()
    out = []
    for (s, b), g in best.groupby(["samples", "batch_size"]):
        v = g["loss"].to_numpy(float)
        out.append({"samples": int(s), "batch_size": int(b), "best_loss_per_seed": v.tolist(),
                    "best_loss_mean": float(np.mean(v)) if np.isfinite(v).all() else math.inf})
    return out


def optima(runs: pd.DataFrame, estimator: str = "argmin", tolerance: float | None = None) -> list[dict[str, Any]]:
    """Every budget's B* and η* at B* (per seed and seed mean; NaN where censored), with the oracle's estimator
    (``estimator``: "argmin" or "critical" with its ``tolerance``)."""
    prep, cols = prepared(runs, ("samples",), "lr", "loss", batch="batch_size", wd=None, group=(), seed="seed",
                          batch_estimator=estimator, batch_tolerance=tolerance)
    return [{"samples": g.sizes["samples"], "log2_batch": g.log2["batch"], "log2_lr": g.log2["lr"],
             "censored_batch": g.censored["batch"], "censored_lr": g.censored["lr"],
             "log2_batch_per_seed": list(g.per_seed["batch"]), "log2_lr_per_seed": list(g.per_seed["lr"]),
             "best_loss": g.best_loss} for g in group_optima(prep, cols, 5)]


def exponent_interval(law: PowerLaw, var: str, level: float = 0.8) -> dict[str, Any]:
    """The fitted exponent of ``var`` (octaves of the optimum per doubling of ``var``) with its two-sided
    ``level`` Student-t interval, b ± t_df·√cov_bb (df = groups − 2 here: a wide interval on three groups)."""
    j = 1 + law.free.index(var)
    half = float(stats.t.ppf(0.5 + level / 2, law.df)) * math.sqrt(float(law.cov[j, j]))
    b = law.exponents[var]
    return {"exponent": b, "ci": [b - half, b + half], "level": level, "df": law.df}


def score(runs: pd.DataFrame, estimator: str = "argmin", tolerance: float | None = None) -> dict[str, Any]:
    """``optima`` (every budget's B* and η*) and ``evaluation`` (the laws fitted on the smaller budgets, scored at
    the largest: :func:`evaluate_oracle`'s summary, its held-out row, the fitted laws and each law's exponent per
    doubling of data with its 80% interval) — or ``error``, the oracle's one-line refusal (too few interior
    optima is a result of the pilot, not a crash). ``estimator``/``tolerance``: how B* is read."""
    out: dict[str, Any] = {"batch_estimator": estimator, "batch_tolerance": tolerance}
    try:
        out["optima"] = optima(runs, estimator, tolerance)
        ev = evaluate_oracle(runs, x="samples", lr="lr", loss="loss", batch="batch_size", seed="seed",
                             batch_estimator=estimator, batch_tolerance=tolerance)
        (laws,) = ev.oracle.laws.values()
        out["evaluation"] = {"summary": ev.summary, "rows": ev.rows.to_dict(orient="records"),
                             "fit": ev.oracle.fit_dict()["laws"], "text": ev.text(), "law_text": ev.oracle.text(),
                             "exponents": {a: exponent_interval(law, "samples") for a, law in laws.items()}}
    except DeeplimitError as exc:
        out["error"] = str(exc)
    return out


def report(scored: dict[str, Any]) -> None:
    """Print one estimator's per-budget B* (per seed), the laws with their exponents' intervals and the held-out
    scores (or the refusal)."""
    how = scored["batch_estimator"] + (f", tolerance {scored['batch_tolerance']:g}"
                                       if scored["batch_estimator"] == "critical" else "")
    print(f"--- B* by the {how} estimator")
    for g in scored.get("optima", []):
        seeds = np.round(g["log2_batch_per_seed"], 2).tolist()
        print(f"  samples {g['samples']:>7g}: log2 B* {g['log2_batch']:+.2f} (seeds {seeds}), log2 eta* at B* "
              f"{g['log2_lr']:+.2f} (seeds {np.round(g['log2_lr_per_seed'], 2).tolist()})")
    if "evaluation" not in scored:
        print("  no evaluation:", scored["error"])
        return
    ev = scored["evaluation"]
    print(ev["law_text"])
    for axis, e in ev["exponents"].items():
        lo, hi = e["ci"]
        print(f"  {axis} exponent per doubling of samples: {e['exponent']:+.3f} ({100 * e['level']:g}% interval "
              f"{lo:+.3f} … {hi:+.3f}, {e['df']} df)")
    print(ev["text"])


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--critical", nargs="+", type=float, default=[], metavar="TOL",
                    help="also score B* as the critical batch at each relative tolerance TOL (e.g. 0.02)")
    ap.add_argument("--rescore", action="store_true",
                    help="score OUT/runs.csv of an earlier run instead of running the sweeps")


def main() -> None:
    a = pilot_args(__doc__, "runs/oracle-batch-pilot", "eval_loss", extra=_options)
    for tol in a.critical:
        check_batch_estimator("critical", tol)  # a bad tolerance fails before an hour of runs
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = provenance()
    if a.rescore:
        if not (out / "runs.csv").is_file() or not (out / "oracle_batch_pilot.json").is_file():
            raise DeeplimitError(f"--rescore reads {out / 'runs.csv'} and oracle_batch_pilot.json of an earlier run; "
                                 "run the pilot into --out first")
        runs = pd.read_csv(out / "runs.csv")
        old = json.loads((out / "oracle_batch_pilot.json").read_text())
        result = {k: v for k, v in old.items() if k not in ("optima", "evaluation", "error", "critical")}
        result["rescored"] = meta
    else:
        t0 = time.perf_counter()
        specs = build_specs(pilot_seed_count(a.seeds), a.tiny)
        tables, walls = run_sweeps(specs, out, prefix="oracle-batch-pilot", workers=a.workers)
        wall = round(time.perf_counter() - t0, 1)
        runs = loss_runs(tables, a.loss)
        runs.to_csv(out / "runs.csv", index=False)
        result = {
            **meta, "design": design(a.tiny), "seeds": sorted({int(s) for s in runs["seed"]}), "loss": a.loss,
            "eval_images": EVAL_IMAGES, "workers": a.workers, "wall_s": wall, "sweep_wall_s": walls,
            "n_runs": len(runs), "n_diverged": int(runs["status"].astype(str).eq("diverged").sum()),
            "runs_wall_s": run_seconds(runs), "profiles": profiles(runs)}
    result.update(score(runs))
    result["critical"] = {f"{tol:g}": score(runs, "critical", tol) for tol in a.critical}
    (out / "oracle_batch_pilot.json").write_text(json.dumps(json_safe(result), indent=1))
    print(f"{result['n_runs']} runs ({result['n_diverged']} diverged), {result['wall_s']:.0f} s with "
          f"{result['workers']} workers; loss = {result['loss']}")
    print("profile (seed-mean best loss over the LR, per batch):")
    for s in sorted({p["samples"] for p in result["profiles"]}):
        row = [p for p in result["profiles"] if p["samples"] == s]
        print(f"  {s:>6}: " + "  ".join(f"B={p['batch_size']}:{p['best_loss_mean']:.4f}" for p in row))
    report(result)
    for scored in result["critical"].values():
        report(scored)
    print(f"the same with the CLI: deeplimit predict {out / 'runs.csv'} --x samples --batch batch_size --loss loss "
          "--evaluate [--batch-estimator critical --batch-tolerance TOL]")


if __name__ == "__main__":
    main()
