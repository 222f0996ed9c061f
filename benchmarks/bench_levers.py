"""Sweep time levers for ``deeplimit reproduce --standard``: what each would save, measured, and the tier's estimate.

* **Several seeds per process** (timed here, :func:`benchmarks.common.paired_rounds`): ``k`` seeds of one grid point
  trained as ``k`` models one after another (the trainer's model, plan and optimizer, as ``k`` trials do) vs one
  ``torch.func`` model over the ``k`` stacked parameter sets (``stack_module_state`` + ``vmap``; Adam steps the
  stacked tensors, elementwise, so each seed's update is its own). Peer outputs (every seed's loss at every step)
  asserted equal (rtol 1e-4). Ratio = vmapped / sequential time per training step of all ``k`` seeds (< 1: faster).
* **Two-pass LR search** (from pilot runs, :mod:`benchmarks.levers_pilot`): each LR search of
  ``levers_pilot.CONFIGS`` replayed on the quick depth-transfer grid trained on PILOT seeds 0–4 with every point
  any of them asks for: its runs and train time, and its per-(rule, depth, seed) η̂* against the reference η̂*
  (all measured points of the curve, ½-octave spacing near the optimum).
* **Early stop of diverged runs** (``diverge_patience``: stop once the loss stays above the step-0 loss for N
  steps), replayed on the per-step losses of pilot runs: runs stopped, of which "ok" at the end (must be 0), and
  the train time saved.
* **The standard tier's estimate**: each sweep section's runs (its spec at ``standard``) × the per-run time
  measured here on this machine's CPU clock (one thread; ``fixed + steps · per_step`` from two short runs of the
  real trainer per model size), on two workers; the sections without LR sweeps at their time in
  docs/reproduce.md (not re-measured). With each lever: the two-pass search's run ratio on the transfer claims,
  early stop's saved share, the vmapped ratio on the MLP sweeps.

The pilot data (``two_pass.csv``, ``early_stop.csv``) is read from ``$DEEPLIMIT_LEVERS_PILOT`` (default
``benchmarks/results/levers_pilot``); without it those parts of the record say so. ``--quick`` times a tiny model
only (a few seconds).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, assert_same_outputs, paired_ratio, paired_rounds, rounds_summary

NAME = "levers"
WORKERS = 2
# Section times of the standard tier's sections without an LR sweep, from docs/reproduce.md (commit 3ecfe4d run):
# SDE sections 2 min, feature diversity 5 min; coordinate checks and stopping inside the remainder.
OTHER_SECTIONS_S = {"sde sections (docs)": 120.0, "feature diversity (docs)": 300.0}


# ------------------------------------------------------------------------------------------------
# Several seeds per process: k models in turn vs one vmapped model
# ------------------------------------------------------------------------------------------------
def _models(model: str, width: int, depth: int, k: int, batch: int):
    """``k`` seeds of one grid point built by the trainer (model, plan, optimizer settings), and a batch each:
    images for the MLP (depth transfer's rule, U and V frozen), bytes for the Pre-LN transformer (CompleteP)."""
    from deeplimit.train import TrainConfig, build

    g = torch.Generator().manual_seed(0)
    if model == "transformer":
        seq = 64
        cfgs = [TrainConfig(model="transformer", width=width, depth=depth, rule="completep", base_width=width,
                            base_depth=2, optimizer="adamw", betas=(0.9, 0.95), batch_size=batch, seq_len=seq,
                            data="shakespeare", seed=s, lr=2**-6, model_kwargs={"n_heads": 4}) for s in range(k)]
        shapes = {"vocab_size": 256, "max_seq_len": seq}
        x = torch.randint(0, 256, (k, batch, seq), generator=g)
        y = torch.randint(0, 256, (k, batch, seq), generator=g)
    else:
        cfgs = [TrainConfig(width=width, depth=depth, rule="depth_mup", base_width=width, base_depth=4,
                            train_io=False, seed=s, lr=2**-7) for s in range(k)]
        shapes = {"d_in": 784, "d_out": 10}
        x, y = torch.randn(k, batch, 784, generator=g), torch.randint(0, 10, (k, batch), generator=g)
    return cfgs, [build(c, shapes) for c in cfgs], x, y


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _optimizer(model, plan, cfg):
    from deeplimit.scaling.optim import make_optimizer

    return make_optimizer(model, plan, cfg.lr, eps=cfg.eps, betas=cfg.betas)


class Sequential:
    """``k`` seeds as ``k`` models, stepped one after another (what ``k`` trials compute)."""

    def __init__(self, model: str, width: int, depth: int, k: int, batch: int) -> None:
        cfgs, built, self.x, self.y = _models(model, width, depth, k, batch)
        self.models = [m for m, _ in built]
        self.opts = [_optimizer(m, plan, c) for (m, plan), c in zip(built, cfgs)]

    def step(self) -> torch.Tensor:
        out = []
        for m, opt, x, y in zip(self.models, self.opts, self.x, self.y):
            loss = _loss(m(x), y)
            out.append(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return torch.stack(out)


class Vmapped:
    """``k`` seeds as one ``torch.func`` model over stacked parameters; each tensor keeps its seed-0 optimizer
    group's hyper-parameters (LR, ε, λ: the plan's per-tensor scaling), so every seed steps as in
    :class:`Sequential`."""

    def __init__(self, model: str, width: int, depth: int, k: int, batch: int) -> None:
        from torch.func import functional_call, stack_module_state

        cfgs, built, self.x, self.y = _models(model, width, depth, k, batch)
        m0, plan0 = built[0]
        opt0 = _optimizer(m0, plan0, cfgs[0])
        names = {id(p): n for n, p in m0.named_parameters()}
        params, self.buffers = stack_module_state([m for m, _ in built])
        self.params = {n: p.detach() for n, p in params.items()}
        groups = []
        for grp in opt0.param_groups:
            hyper = {key: v for key, v in grp.items() if key != "params"}
            for p0 in grp["params"]:
                n = names[id(p0)]
                self.params[n] = self.params[n].requires_grad_(True)
                groups.append({"params": [self.params[n]], **hyper})
        self.opt = type(opt0)(groups)
        base = copy.deepcopy(m0).to("meta")

        def loss(p, b, x, y):
            return _loss(functional_call(base, (p, b), (x,)), y)

        self.loss = torch.vmap(loss, randomness="different")

    def step(self) -> torch.Tensor:
        losses = self.loss(self.params, self.buffers, self.x, self.y)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # seeds are independent: the sum's gradient is each seed's own
        self.opt.step()
        return losses.detach()


def seeds_per_process(quick: bool) -> dict:
    cases = [("mlp-resnet", 16, 2, 3, 32)] if quick else [
        ("mlp-resnet", 64, 2, 5, 128), ("mlp-resnet", 64, 8, 5, 128), ("mlp-resnet", 64, 32, 5, 128),
        ("mlp-resnet", 256, 4, 5, 128), ("transformer", 64, 4, 3, 16)]
    steps, repeats = (2, 2) if quick else (5, 7)
    out = {}
    for model, width, depth, k, batch in cases:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SDPA has no batching rule: vmap warns that it loops (timed as is)
            out.update(_seeds_case(model, width, depth, k, batch, steps, repeats))
    return out


def _seeds_case(model: str, width: int, depth: int, k: int, batch: int, steps: int, repeats: int) -> dict:
    seq_check, vm_check = Sequential(model, width, depth, k, batch), Vmapped(model, width, depth, k, batch)
    assert_same_outputs({"sequential": torch.stack([seq_check.step() for _ in range(3)]),
                         "vmapped": torch.stack([vm_check.step() for _ in range(3)])}, rtol=1e-4, atol=1e-6)
    seq, vm = Sequential(model, width, depth, k, batch), Vmapped(model, width, depth, k, batch)
    times = paired_rounds({"sequential": lambda: [seq.step() for _ in range(steps)],
                           "vmapped": lambda: [vm.step() for _ in range(steps)]}, repeats=repeats)
    return {f"{model} width {width}, depth {depth}, {k} seeds": {
        "settings": {"model": model, "width": width, "depth": depth, "seeds": k, "batch": batch,
                     "steps_per_round": steps},
        "per_step_ms": rounds_summary({n: {"median_s": v["median_s"] / steps,
                                           "wall_median_s": v["wall_median_s"] / steps} for n, v in times.items()}),
        "ratio_vmapped_over_sequential": round(paired_ratio(times, "vmapped", "sequential"), 3)}}


# ------------------------------------------------------------------------------------------------
# Two-pass LR search, replayed on the pilot runs
# ------------------------------------------------------------------------------------------------
def _pilot_dir() -> Path:
    return Path(os.environ.get("DEEPLIMIT_LEVERS_PILOT", RESULTS / "levers_pilot"))


def two_pass_record() -> dict:
    import pandas as pd

    from benchmarks.levers_pilot import CONFIGS
    from deeplimit.transfer.experiments import experiment
    from deeplimit.transfer.optimum import fit_optimum, second_pass_points

    path = _pilot_dir() / "two_pass.csv"
    if not path.exists():
        return {"skipped": f"no pilot runs at {path} (python -m benchmarks.levers_pilot two-pass --out DIR)"}
    runs = pd.read_csv(path)
    assert (runs["seed"] < 1000).all(), "pilot seeds only"
    grid = [float(x) for x in experiment("depth-transfer", "quick", seed_set="pilot").axes["log2_lr"]]
    # A run's cost: the median train time of the full-length runs at its (rule, depth), scaled by the steps it
    # ran — the runs were trained at different times on a shared machine, so their own wall times would
    # mix the machine's load into the comparison.
    full = runs[runs["steps_done"] == runs["steps_done"].max()]
    unit = full.groupby(["preset", "depth"])["wall_s"].median()
    runs["cost_s"] = [unit[(p, d)] * n / runs["steps_done"].max()
                      for p, d, n in zip(runs["preset"], runs["depth"], runs["steps_done"])]
    curves = {key: c.sort_values("log2_lr") for key, c in runs.groupby(["preset", "depth", "seed"])}
    ref = {key: fit_optimum(c["log2_lr"].to_numpy(float), c["value"].to_numpy(float)) for key, c in curves.items()}
    out: dict = {"pilot": {"runs": len(runs), "curves": len(curves), "seeds": sorted(runs["seed"].unique().tolist()),
                           "grid": grid, "steps": int(runs["steps_done"].max()), "source": str(path.name),
                           "reference": "per curve, fit_optimum over every measured point (the 1-octave grid and "
                                        "every second-pass point of every search below)"},
                 "searches": {}}
    for name, (coarse_of, step, half) in CONFIGS.items():
        coarse = coarse_of(grid)
        n_runs, cost, errs, missing, cens, optima, sets = 0, 0.0, [], 0, 0, {}, set()
        for key, c in curves.items():
            x = c["log2_lr"].to_numpy(float)
            on = np.isin(np.round(x, 9), np.round(coarse, 9))
            pts = second_pass_points(x[on], c["value"].to_numpy(float)[on], coarse, step=step,
                                     half_width=half) if step else []
            use = on | np.isin(np.round(x, 9), np.round(pts, 9))
            if pts:
                sets.add((*key[:2], tuple(pts)))  # refine_specs runs one sweep per (rule, depth, point set)
            missing += len(pts) - int((np.isin(np.round(x, 9), np.round(pts, 9))).sum())
            n_runs += int(use.sum())
            cost += float(c["cost_s"].to_numpy(float)[use].sum())
            opt = optima[key] = fit_optimum(x[use], c["value"].to_numpy(float)[use])
            cens += int(opt.censored)
            if math.isfinite(opt.log2_lr) and math.isfinite(ref[key].log2_lr) and not ref[key].censored:
                errs.append(abs(opt.log2_lr - ref[key].log2_lr))
        mine, theirs = _slopes(optima), _slopes(ref)
        slope_err = [abs(mine[k] - theirs[k]) for k in mine.keys() & theirs.keys()]
        out["searches"][name] = {
            "coarse": coarse, "refine_step": step, "refine_half_width": half, "runs": n_runs,
            "runs_per_curve": round(n_runs / len(curves), 3), "train_s": round(cost, 1), "censored": cens,
            "points_not_run": missing, "second_pass_sweeps": len(sets),
            "second_pass_sweeps_per_rule_size": round(len(sets) / len({k[:2] for k in curves}), 3),
            "eta_vs_reference_octaves": {"median": round(statistics.median(errs), 3),
                                         "p90": round(float(np.quantile(errs, 0.9)), 3),
                                         "max": round(max(errs), 3), "n": len(errs)},
            "slope_vs_reference_per_doubling": {"median": round(statistics.median(slope_err), 3),
                                                "max": round(max(slope_err), 3), "n": len(slope_err)}}
    one = out["searches"]["grid 1 octave (protocol 1.1)"]
    for s in out["searches"].values():
        s["runs_ratio_vs_grid"] = round(s["runs"] / one["runs"], 3)
        s["train_s_ratio_vs_grid"] = round(s["train_s"] / one["train_s"], 3)
    return out


def _slopes(optima: dict) -> dict:
    """(rule, seed) → OLS slope of the uncensored log2 η̂* on log2 depth (per doubling), in a fixed key order."""
    pts: dict = {}
    for (rule, depth, seed), opt in sorted(optima.items()):
        if not opt.censored and math.isfinite(opt.log2_lr):
            pts.setdefault((rule, seed), []).append((math.log2(depth), opt.log2_lr))
    return {k: float(np.polyfit(*zip(*v), 1)[0]) for k, v in sorted(pts.items()) if len(v) >= 2}


# ------------------------------------------------------------------------------------------------
# Early stop of diverged runs, replayed on per-step losses
# ------------------------------------------------------------------------------------------------
def early_stop_record() -> dict:
    import pandas as pd

    from benchmarks.levers_pilot import PATIENCES

    path = _pilot_dir() / "early_stop.csv"
    if not path.exists():
        return {"skipped": f"no pilot replay at {path} (python -m benchmarks.levers_pilot losses RUN_DIR... --out DIR)"}
    runs = pd.read_csv(path)
    assert all(json.loads(r)["seed"] < 1000 for r in runs["run"]), "pilot seeds only"
    out: dict = {}
    for root, part in runs.groupby("root"):
        ok = part[part["status"] == "ok"]
        rec = {"runs": len(part), "diverged": int((part["status"] == "diverged").sum()),
               "train_s": round(float(part["wall_s"].sum()), 1),
               # the smallest patience that stops no run that finished "ok" is one more than this
               "longest_above_step0_in_ok_runs": int(ok["longest_above"].max()) if len(ok) else 0,
               "by_patience": {}}
        for n in PATIENCES:
            stop = pd.to_numeric(part[f"stop_{n}"], errors="coerce")
            hit = stop.notna()
            saved = float((part["wall_s"][hit] * (part["steps_done"][hit] - stop[hit]) / part["steps"][hit]).sum())
            frac = (part["steps_done"][hit] - stop[hit]) / part["steps"][hit]
            rec["by_patience"][str(n)] = {"stopped": int(hit.sum()),
                                          "steps_saved_share_of_stopped": round(float(frac.mean()), 3)
                                          if hit.any() else None,
                                          "stopped_but_ok": int((hit & (part["status"] == "ok")).sum()),
                                          "saved_s": round(saved, 1),
                                          "saved_share": round(saved / max(float(part["wall_s"].sum()), 1e-9), 4)}
        out[root] = rec
    return out


# ------------------------------------------------------------------------------------------------
# The standard tier's estimate
# ------------------------------------------------------------------------------------------------
SWEEPS = ("depth-transfer", "width-transfer", "activation", "block-depth", "transformer-depth", "shaped-vs-preln",
          "no-ln-control")
MLP = ("depth-transfer", "width-transfer", "activation", "block-depth")
PROTOCOL_CLAIMS = ("depth-transfer", "width-transfer")
# sweeps whose group changes what a step costs (block depth 2 doubles the blocks; shaped vs Pre-LN are two models);
# in the others the group is a rule or an activation, timed at the first one
COST_GROUPS = ("block-depth", "shaped-vs-preln")
# diverged runs of the standard depth-transfer section and their depths, from docs/reproduce.md (0f424bd run)
DOC_DIVERGED = (16, (16, 32, 64))


def _cpu_train_s(point: dict) -> float:
    from deeplimit.train import config_from_point, train

    t0 = time.thread_time()
    train(config_from_point(point))
    return time.thread_time() - t0


def per_run_costs(name: str, steps: tuple[int, int] = (10, 30)) -> dict:
    """Per model size of experiment ``name`` at the standard tier: ``fixed`` + ``per_step`` CPU seconds of one
    run of the real trainer (two short runs at ``steps``, pilot seed, the grid's middle LR)."""
    from deeplimit.transfer.experiments import ANALYSIS, experiment

    spec = experiment(name, "standard", seed_set="pilot")
    group, size = ANALYSIS[name]
    lrs = list(spec.axes["log2_lr"])
    costs = {}
    groups = list(spec.axes.get(group, [spec.fixed.get(group)]))
    _cpu_train_s({**spec.fixed, **spec.points()[0], "steps": 1, "min_window": 1})  # reads the data: once a worker
    for g in groups if name in COST_GROUPS else groups[:1]:
        for sz in spec.axes[size]:
            point = {**spec.fixed, **{k: v[0] for k, v in spec.axes.items()}, group: g, size: sz,
                     "log2_lr": lrs[len(lrs) // 2]}
            a, b = (_cpu_train_s({**point, "steps": s, "min_window": 1}) for s in steps)
            per_step = max(0.0, (b - a) / (steps[1] - steps[0]))
            costs[(str(g), sz)] = {"fixed_s": max(0.0, a - steps[0] * per_step), "per_step_s": per_step}
    return {"spec": spec, "group": group, "size": size, "costs": costs}


def worker_start_cpu_s(repeats: int = 3) -> float:
    """CPU seconds a sweep worker spends before its first run: a new Python process importing the worker, the
    trainer and torch, and reading Fashion-MNIST (each worker process reads it once). Median of ``repeats``."""
    import resource
    import subprocess
    import sys

    code = ("import deeplimit.sweep.worker, deeplimit.transfer.objectives\n"
            "from deeplimit.train import cached_image_data\ncached_image_data('fashion-mnist', None)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(out)


def standard_estimate(two_pass: dict, early: dict, vmap: dict, runner: dict) -> dict:
    sections = {}
    for name in SWEEPS:
        c = per_run_costs(name)
        spec, group, size = c["spec"], c["group"], c["size"]
        timed = {g for g, _ in c["costs"]}
        keys = [(g if (g := str(p.get(group, spec.fixed.get(group)))) in timed else next(iter(timed)), p[size])
                for p in spec.points()]
        per_point = [c["costs"][key] for key in keys]
        steps = spec.fixed["steps"]
        total = sum(x["fixed_s"] + steps * x["per_step_s"] for x in per_point) / WORKERS
        points = spec.points()
        rule_sizes = len({(p.get(group), p[size]) for p in points})
        by_size = {f"{g} {s}": keys.count((g, s)) for g, s in c["costs"]}
        sections[name] = {"runs": len(per_point), "steps": steps, "section_s": round(total, 1),
                          "rule_sizes": rule_sizes, "size": size, "seeds": len(spec.axes["seed"]),
                          "log2_lr": [float(x) for x in spec.axes["log2_lr"]],
                          "runs_by_size": by_size,
                          "per_run_s_by_size": {f"{g} {s}": round(x["fixed_s"] + steps * x["per_step_s"], 2)
                                                for (g, s), x in c["costs"].items()}}
    base = sum(s["section_s"] for s in sections.values()) + sum(OTHER_SECTIONS_S.values())
    levers = {}
    start = worker_start_cpu_s()
    for search in ("two-pass 2 octaves + 1 within 1", "two-pass 2 octaves + 1/2 within 1/2"):
        tp = two_pass.get("searches", {}).get(search)
        if not tp:
            continue
        # runs per curve on each section's own grid: its 2-octave coarse grid plus the second-pass runs per
        # curve measured on the pilot (beyond its coarse points)
        extra = tp["runs_per_curve"] - len(tp["coarse"])
        per = tp["second_pass_sweeps_per_rule_size"]
        for names, label in ((PROTOCOL_CLAIMS, "transfer claims"),
                             (SWEEPS, "every LR sweep (the others need protocol entries first)")):
            saved, n_sweeps, ratios = 0.0, 0.0, {}
            for n in names:
                grid = sections[n]["log2_lr"]
                ratios[n] = r = min(1.0, (len(grid[::2]) + extra) / len(grid))
                saved += sections[n]["section_s"] * (1 - r)
                n_sweeps += per * sections[n]["rule_sizes"]
            saved -= n_sweeps * start  # each second-pass sweep starts its workers afresh (in parallel)
            levers[f"{search}, {label}"] = {"runs_ratio_by_section": ratios, "second_pass_sweeps": round(n_sweeps),
                                            "saved_s": round(saved, 1), "total_s": round(base - saved, 1)}
    es = early.get("depth-transfer-standard", {}).get("by_patience", {}).get("50")
    if es and es["steps_saved_share_of_stopped"] is not None:
        # the diverged runs of the standard depth-transfer section (docs/reproduce.md: 16 of 800, SP at 2^-5 and
        # 2^-6 at 16-64 blocks, 0f424bd), each cut by the share of its steps the slice's stopped runs saved
        n_div, depths = DOC_DIVERGED
        per_run = statistics.mean(v for k, v in sections["depth-transfer"]["per_run_s_by_size"].items()
                                  if int(k.split()[-1]) in depths)
        saved = n_div * per_run * es["steps_saved_share_of_stopped"] / WORKERS
        levers["early stop (diverge_patience 50), depth transfer"] = {
            "diverged_runs_used": n_div, "steps_saved_share_used": es["steps_saved_share_of_stopped"],
            "stopped_but_ok_on_pilot": sum(r["by_patience"]["50"]["stopped_but_ok"] for k, r in early.items()
                                           if "no-ln" not in k),
            "saved_s": round(saved, 1), "total_s": round(base - saved, 1)}
    cases = [(v["settings"], v["ratio_vmapped_over_sequential"]) for v in vmap.values()]
    if cases:
        saved, used = 0.0, {}
        for n in SWEEPS:
            model = "transformer" if n not in MLP else "mlp-resnet"
            mine = [(st, r) for st, r in cases if st["model"] == model]
            if not mine:
                continue
            for size_key, run_s in sections[n]["per_run_s_by_size"].items():
                size = int(size_key.split()[-1])
                w = size if sections[n]["size"] == "width" else 64
                d = size if sections[n]["size"] == "depth" else 4
                # the timed case nearest in log2 width and depth
                st, r = min(mine, key=lambda c: abs(math.log2(c[0]["width"] / w)) + abs(math.log2(c[0]["depth"] / d)))
                share = sections[n]["runs_by_size"][size_key] * run_s / WORKERS
                saved += share * max(0.0, 1 - r)  # where vmap is slower, the section would not use it
                used[f"{n} {size_key}"] = r
        levers["vmapped seeds (ratio of the nearest timed case per section and size)"] = {
            "ratio_used": used, "saved_s": round(saved, 1), "total_s": round(base - saved, 1)}
    if "overhead_per_trial_s" in runner:
        saved = sum(s["runs"] * runner["overhead_per_trial_s"] * (1 - 1 / s["seeds"]) for s in sections.values())
        saved /= WORKERS
        levers["all seeds of a point in one trial, no vmap (the runner's time per trial saved for all but one)"] = {
            "overhead_per_trial_s_used": runner["overhead_per_trial_s"], "saved_s": round(saved, 1),
            "total_s": round(base - saved, 1)}
    together = [k for k in levers if k.startswith(("two-pass 2 octaves + 1 within 1, every", "early stop",
                                                    "vmapped", "all seeds"))]
    if together:
        saved = sum(levers[k]["saved_s"] for k in together)
        levers["together (sum of the savings above: two-pass on every LR sweep, early stop, vmapped seeds in one "
               "trial; they overlap, so a lower bound on the total)"] = {
            "levers": together, "saved_s": round(saved, 1), "total_s": round(base - saved, 1),
            "total_h": round((base - saved) / 3600, 2)}
    return {"workers": WORKERS, "worker_start_cpu_s": round(start, 2), "sections": sections,
            "other_sections_s": OTHER_SECTIONS_S,
            "total_s": round(base, 1), "total_h": round(base / 3600, 2), "levers": levers,
            "clock": "this thread's CPU time per run, one torch thread, divided over two workers (no contention)"}


def runner_record() -> dict:
    """Time per trial outside the trainer in a real pilot sweep (``levers_pilot runner``), against its run time:
    what running ``k`` seeds in one trial could save at most, (k − 1)/k of it."""
    path = _pilot_dir() / "runner_overhead.json"
    if not path.exists():
        return {"skipped": f"no {path} (python -m benchmarks.levers_pilot runner ...)"}
    per = json.loads(path.read_text())
    over = statistics.median(v["overhead_per_trial_s"] for v in per.values())
    train = statistics.median(v["mean_train_s"] for v in per.values())
    return {"workers": per, "overhead_per_trial_s": over, "mean_train_s": train,
            "overhead_share": round(over / (over + train), 4)}


def run(quick: bool) -> dict:
    vmap = seeds_per_process(quick)
    from benchmarks.levers_pilot import CONFIGS, PATIENCES

    record: dict = {"settings": {"workers": WORKERS, "pilot_data": str(_pilot_dir().relative_to(RESULTS.parent.parent))
                                 if _pilot_dir().is_relative_to(RESULTS.parent.parent) else str(_pilot_dir()),
                                 "lr_searches": list(CONFIGS), "patiences": list(PATIENCES),
                                 "seed_set": "pilot (0-4)", "tier_estimated": "standard"},
                    "seeds_per_process": vmap, "runner_overhead": runner_record(), "two_pass": two_pass_record(),
                    "early_stop": early_stop_record()}
    if not quick:
        record["standard_estimate"] = standard_estimate(record["two_pass"], record["early_stop"], vmap,
                                                        record["runner_overhead"])
    record["summary"] = {
        "vmapped_over_sequential": {k: v["ratio_vmapped_over_sequential"] for k, v in vmap.items()},
        "two_pass_runs_ratio": {k: v["runs_ratio_vs_grid"] for k, v in record["two_pass"].get("searches", {}).items()},
        "runner_overhead_share": record["runner_overhead"].get("overhead_share"),
        "early_stop_patience_50": {root: {k: v["by_patience"]["50"][k] for k in ("stopped", "stopped_but_ok",
                                                                                  "saved_share")}
                                   for root, v in record["early_stop"].items() if "by_patience" in v},
        **({"standard_total_h": record["standard_estimate"]["total_h"]} if not quick else {})}
    return record
