"""The sweep sections' plumbing: a sweep's name (its spec and code fingerprint), running it with the workers
(through :func:`deeplimit.transfer.sweeps.run_transfer_sweep`, the runner the CLI uses too), analysing it, the
tier's cuts in words, the standalone commands, and the helpers that read drifts, best losses and paired
differences out of an analysis."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.io import atomic_save, ensure_dir
from deeplimit.report.context import Context


def sweep_name(ctx: Context, experiment: str, spec) -> str:
    """The sweep's name: experiment, tier and a fingerprint of its spec, of the code it trains with and of the
    content of its data, so a changed grid, changed training code or other data under the same name never
    reuses old trials (and ``--fresh`` gets a new name)."""
    from deeplimit.data.digest import content_digest
    from deeplimit.data.text import CORPORA

    data = spec.fixed.get("data")
    digest = content_digest(data, text=data in CORPORA) if data else None
    key = json.dumps({"spec": asdict(spec), "code": ctx.code.get("sweep", ""), "data": digest}, sort_keys=True,
                     default=str)
    if ctx.fresh:
        key += f"fresh {time.time()}"
    return f"{experiment}-{ctx.tier}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def spec_settings(spec) -> dict:
    return {"axes": {k: list(v) for k, v in spec.axes.items()}, "fixed": dict(spec.fixed), "metric": spec.metric}


def spec_words(spec) -> str:
    """A sweep spec's grid in words: sizes, steps, seeds, LRs (and the fixed width)."""
    size = next((k for k in ("depth", "width") if k in spec.axes and len(spec.axes[k]) > 1), None)
    lrs = list(spec.axes["log2_lr"])
    step = (lrs[1] - lrs[0]) if len(lrs) > 1 else 0
    parts = [f"{size}s {list(spec.axes[size])}" if size else f"depth {list(spec.axes.get('depth', []))}",
             f"{spec.fixed['steps']} steps", f"{len(spec.axes['seed'])} seed(s)",
             f"{len(lrs)} LRs 2^{lrs[0]:g}…2^{lrs[-1]:g} (step {step:g})"]
    if "width" in spec.fixed:
        parts.append(f"width {spec.fixed['width']}")
    return ", ".join(parts)


def tier_cuts(experiment: str, tier: str) -> str:
    """What this tier runs vs the ``full`` tier (the spec's settings), in words — cuts are never silent."""
    from deeplimit.transfer.experiments import experiment as build

    here, full = build(experiment, tier), build(experiment, "full")
    if tier == "full":
        return f"this tier runs the spec's settings: {spec_words(here)}."
    return f"this tier ({tier}): {spec_words(here)}; the spec's full setting: {spec_words(full)}."


def run_sweep(ctx: Context, key: str, spec):
    """Create (or resume) the sweep of ``spec`` under ``<out>/sweeps/<key>`` and run what is left with the
    workers (:func:`deeplimit.transfer.sweeps.run_transfer_sweep`, the steps of ``deeplimit sweep create`` and
    ``launch``); its name, status and long results table. Part of a grid is never analysed: points left undone
    fail the section (red, non-zero exit) and the next run re-queues them."""
    from deeplimit.transfer.sweeps import run_transfer_sweep

    name = sweep_name(ctx, key, spec)
    status, table = run_transfer_sweep(name, spec, storage=ctx.storage, run_dir=ctx.out / "sweeps" / key,
                                       workers=ctx.workers)
    return name, status, table


def second_pass(ctx: Context, experiment: str, spec, status, table, search):
    """Run the second pass of a two-pass LR search (:func:`deeplimit.transfer.experiments.refine_specs`) after
    ``spec``'s sweep; the combined status and long table (first-pass rows, then second-pass rows). Each
    second-pass spec is a sweep of its own, named from its spec like the first, so a resumed report reuses it."""
    from deeplimit.sweep.results import SweepStatus
    from deeplimit.transfer.experiments import ANALYSIS, refine_specs

    group, size = ANALYSIS[experiment]
    statuses, tables = [status], [table]
    for i, rspec in enumerate(refine_specs(spec, table, group=group, size=size, search=search)):
        _, st, tab = run_sweep(ctx, f"{experiment}-pass2-{i:03d}", rspec)
        statuses.append(st)
        tables.append(tab)
    if len(statuses) == 1:
        return status, table
    counts = {k: sum(getattr(s, k) for s in statuses)
              for k in ("total", "done", "diverged", "running", "waiting", "failed", "pending")}
    return (SweepStatus(**counts, table=pd.concat([s.table for s in statuses], ignore_index=True)),
            pd.concat(tables, ignore_index=True))


def run_experiment(ctx: Context, experiment: str):
    """Create (or resume) the sweep of ``experiment`` at this tier, run it with the workers, analyse it. With
    ``lr_search = "two-pass"`` in the protocol's tier, the second LR pass runs after the first
    (:func:`second_pass`) and the analysis reads both."""
    from deeplimit.transfer.analysis import analyze
    from deeplimit.transfer.experiments import ANALYSIS, lr_search
    from deeplimit.transfer.experiments import experiment as build
    from deeplimit.transfer.plots import plot_analysis

    spec = build(experiment, ctx.tier, seed_set=ctx.seed_set)
    name, status, table = run_sweep(ctx, experiment, spec)
    search = lr_search(experiment, ctx.tier)
    if search.two_pass:
        status, table = second_pass(ctx, experiment, spec, status, table, search)
    group, size = ANALYSIS[experiment]
    analysis = analyze(table, metric=spec.metric, group=group, size=size)
    figs_dir = ensure_dir(ctx.out / "figures" / experiment, "output folder")
    figures = plot_analysis(analysis, figs_dir)
    tables_dir = ensure_dir(ctx.out / "tables", "output folder")
    for stem, frame in (("long", table), ("summary", analysis.summary), ("drift", analysis.drift)):
        atomic_save(tables_dir / f"{experiment}_{stem}.csv", lambda fh, f=frame: f.to_csv(fh, index=False))
    figs = [Path(f) for f in (figures.values() if isinstance(figures, dict) else figures)]
    if analysis.summary[size].nunique() < 2:  # one size: an "optimum vs size" panel would be a one-point trend
        figs = [f for f in figs if "optimum_vs_size" not in f.name]
    return spec, status, analysis, figs, name


def sweep_command(ctx: Context, experiment: str, name: str) -> str:
    """The standalone sweep commands that rebuild this section's sweep and its analysis."""
    from deeplimit.transfer.experiments import ANALYSIS

    group, size = ANALYSIS[experiment]
    run_dir = f"runs/{experiment}"
    common = f"--name {name} --run-dir {run_dir}"
    return (f"deeplimit sweep create {common} --grid {experiment} --set tier={ctx.tier} && "
            f"deeplimit sweep launch {common} --workers {ctx.workers} && "
            f"deeplimit sweep analyze {common} --group {group} --size {size}")


def best_at(analysis, key, size) -> float:
    s = analysis.summary
    row = s[np.logical_and.reduce([s[c].astype(str) == str(v) for c, v in zip(analysis.group, key)])
            & (s[analysis.size] == size)]
    return float(row["best_loss"].iloc[0]) if len(row) else float("nan")


def seed_best(analysis, key, size) -> pd.Series:
    """Best-over-LR loss of each seed at ``size`` for group ``key`` (diverged runs count as +∞)."""
    r = analysis.runs
    sel = np.logical_and.reduce([r[c].astype(str) == str(v) for c, v in zip(analysis.group, key)])
    sub = r[sel & (r[analysis.size] == size)]
    return sub.groupby("seed")["value"].min().sort_index()


def paired_best(analysis, key_a, key_b, size, margin: float = 0.0):
    from deeplimit.transfer.analysis import paired_difference

    a, b = seed_best(analysis, key_a, size), seed_best(analysis, key_b, size)
    seeds = sorted(set(a.index) & set(b.index))
    return paired_difference(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy(), margin)


def seeds_note(spec) -> str:
    n = len(spec.axes["seed"])
    return "" if n >= 3 else (f" With {n} seed(s) at this tier no drift or difference has an interval, so nothing "
                              "is conclusive here (run the quick tier for ≥ 3 seeds).")


def transfer_words(stats: dict) -> str:
    """One line per rule of a transfer claim's statistics: slope, interval, regret and verdict."""
    parts = []
    for rule, s in stats.items():
        if not isinstance(s, dict) or "slope_ci" not in s:
            continue
        lo, hi = (float("nan") if x is None else x for x in s["slope_ci"])
        slope = float("nan") if s["slope"] is None else s["slope"]
        reg = s.get("regret")
        rlo, rhi = (float("nan") if x is None else x for x in s.get("regret_ci") or (None, None))
        regret = "" if reg is None else f", regret {100 * reg:.1f}% [{100 * rlo:.1f}, {100 * rhi:.1f}]"
        word, m = s["verdict"], s.get("margin")
        if word == "shifts" and m is not None and not (lo > m or hi < -m):
            # the estimator's "shifts" only says the interval excludes 0; inside ±margin the claim rules read it as
            # neither transfer nor a shift (transfer.verdicts._claim_outcome), so the line must not say "shifts"
            word = f"moves, but not beyond ±{m:g}"
        parts.append(f"{rule} {slope:+.2f} [{lo:+.2f}, {hi:+.2f}] per doubling{regret} → {word}")
    return "; ".join(parts) + "."


def protocol_note(ctx: Context, claim: str, spec) -> str:
    """' The settings differ from protocol X: …' when this run's sweep is not the protocol's (an override, another
    seed set), else ''. Verdicts from such a run are not confirmatory."""
    from deeplimit.protocol import protocol
    from deeplimit.transfer.experiments import experiment as build

    p = protocol()
    want = build(claim, ctx.tier, seed_set="confirmation")
    diffs = [k for k in sorted(set(want.axes) | set(spec.axes))
             if list(want.axes.get(k, [])) != list(spec.axes.get(k, []))]
    diffs += [k for k in sorted(set(want.fixed) | set(spec.fixed)) if want.fixed.get(k) != spec.fixed.get(k)]
    if not diffs:
        return ""
    return (f" The settings differ from protocol {p.version} ({', '.join(diffs)}): this verdict is exploratory, "
            "not confirmatory.")
