"""Pilot runs behind ``bench_levers``'s two-pass and early-stop records (PILOT seeds only, never confirmation seeds).

``python -m benchmarks.levers_pilot two-pass --out DIR [--reuse SWEEP_DIR]`` trains the quick depth-transfer grid
(protocol's rules, depths, steps; 1-octave LR grid) on pilot seeds 0–4 plus the ½-octave points a two-pass search
would add around each (rule, depth, seed) optimum of the 1-octave and of the 2-octave grid, and writes one row per
run (value, status, train wall time) to ``DIR/two_pass.csv``. ``--reuse`` takes the 1-octave runs from a finished
pilot sweep's run folders (``runs/*/ckpt.pt``: each holds its config and result) instead of training them again.

``python -m benchmarks.levers_pilot losses RUN_DIR... --out DIR`` replays ``diverge_patience`` on the per-step
training losses of every finished run under the given run folders (``**/ckpt.pt``) and writes, per run, its status,
train time and the step each patience would have stopped it at to ``DIR/early_stop.csv``.

``python -m benchmarks.levers_pilot slice --out DIR`` trains :data:`SLICE` (standard-tier points where runs
diverge, pilot seed) with run folders under ``DIR/slice``, for ``losses``.

``python -m benchmarks.levers_pilot runner TABLE.csv... --db SWEEPS.db --out DIR`` writes each worker's time per
trial outside the trainer (from the sweep's own trial timestamps) to ``DIR/runner_overhead.json``.

Runs go through the real trainer (:func:`deeplimit.train.train`) in two processes, one thread each.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The LR searches the two-pass record compares: name → (coarse grid from the protocol's 1-octave grid, refine step,
# refine half-width); a refine step of 0 is a one-pass grid.
CONFIGS = {
    "grid 1 octave (protocol 1.1)": (lambda g: g, 0.0, 0.0),
    "two-pass 1 octave + 1/2 within 1/2": (lambda g: g, 0.5, 0.5),
    "two-pass 2 octaves + 1 within 1": (lambda g: g[::2], 1.0, 1.0),
    "two-pass 2 octaves + 1/2 within 1/2": (lambda g: g[::2], 0.5, 0.5),
    "two-pass 2 octaves + 1/2 within 1": (lambda g: g[::2], 0.5, 1.0),
}
FIELDS = ("preset", "depth", "log2_lr", "seed", "value", "status", "steps_done", "wall_s", "source")


def _train_point(point: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from deeplimit.train import config_from_point, train

    res = train(config_from_point(point))
    value = res.window_loss if res.status == "ok" else math.inf
    return {"preset": point["preset"], "depth": point["depth"], "log2_lr": point["log2_lr"], "seed": point["seed"],
            "value": value, "status": res.status, "steps_done": res.steps_done, "wall_s": res.wall_s,
            "source": "trained"}


def _read_ckpts(run_root: Path) -> list[tuple[dict, dict, list[float]]]:
    """(config, result, per-step losses) of every finished run under ``run_root``."""
    import torch

    out = []
    for ck in sorted(run_root.rglob("ckpt.pt")):
        blob = torch.load(ck, map_location="cpu", weights_only=True)
        extra = blob["extra"]
        if not extra.get("result"):
            continue
        out.append((json.loads(extra["config"]), json.loads(extra["result"]), extra["losses"].tolist()))
    return out


def _pilot_spec():
    from deeplimit.transfer.experiments import experiment

    spec = experiment("depth-transfer", "quick", seed_set="pilot")
    assert all(s < 1000 for s in spec.axes["seed"]), "pilot seeds only"
    return spec


def _second_pass(rows: list[dict], coarse: list[float], step: float, half_width: float) -> set[tuple]:
    """(preset, depth, seed, log2_lr) of the second-pass points of every curve of ``rows`` restricted to
    ``coarse`` (:func:`deeplimit.transfer.optimum.second_pass_points`, as ``refine_specs`` computes them)."""
    from deeplimit.transfer.optimum import second_pass_points

    curves: dict[tuple, dict[float, float]] = {}
    for r in rows:
        if any(math.isclose(float(r["log2_lr"]), c) for c in coarse):
            curves.setdefault((r["preset"], int(r["depth"]), int(r["seed"])), {})[float(r["log2_lr"])] = \
                float(r["value"])
    need = set()
    for key, pts in curves.items():
        xs = sorted(pts)
        for p in second_pass_points(xs, [pts[x] for x in xs], coarse, step=step, half_width=half_width):
            need.add((*key, round(p, 10)))
    return need


def two_pass(out: Path, reuse: Path | None) -> Path:
    spec = _pilot_spec()
    fixed = dict(spec.fixed)
    grid = [float(x) for x in spec.axes["log2_lr"]]
    rows: list[dict] = []
    path = out / "two_pass.csv"
    if path.exists():  # resume: runs already in the table are not trained again
        with path.open() as fh:
            rows = [{**r, "depth": int(r["depth"]), "seed": int(r["seed"]), "log2_lr": float(r["log2_lr"]),
                     "value": float(r["value"])} for r in csv.DictReader(fh)]
    have = {(r["preset"], r["depth"], r["seed"], round(r["log2_lr"], 10)) for r in rows}
    if reuse is not None and not rows:
        for cfg, res, _ in _read_ckpts(reuse):
            if cfg["seed"] not in spec.axes["seed"] or cfg["steps"] != fixed["steps"]:
                continue
            key = (cfg["rule"], cfg["depth"], cfg["seed"], round(math.log2(cfg["lr"]), 10))
            have.add(key)
            rows.append({"preset": key[0], "depth": key[1], "log2_lr": key[3], "seed": key[2],
                         "value": res["window_loss"] if res["status"] == "ok" else math.inf,
                         "status": res["status"], "steps_done": res["steps_done"], "wall_s": res["wall_s"],
                         "source": f"reused {reuse.name}"})
    todo = [(p, d, s, lr) for p in spec.axes["preset"] for d in spec.axes["depth"] for s in spec.axes["seed"]
            for lr in grid if (p, d, s, round(lr, 10)) not in have]
    todo_pts = [{**fixed, "preset": p, "depth": d, "seed": s, "log2_lr": lr} for p, d, s, lr in todo]
    with ProcessPoolExecutor(2) as pool:
        rows += list(pool.map(_train_point, todo_pts))
        need = set()
        for coarse, step, half in CONFIGS.values():
            need |= _second_pass(rows, coarse(grid), step, half) if step else set()
        done = {(r["preset"], r["depth"], r["seed"], round(r["log2_lr"], 10)) for r in rows}
        extra = sorted(need - done)
        print(f"second pass: {len(extra)} runs", flush=True)
        rows += list(pool.map(_train_point, [{**fixed, "preset": p, "depth": d, "seed": s, "log2_lr": lr}
                                              for p, d, s, lr in extra]))
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


PATIENCES = (10, 20, 50, 100)


def patience_stop(losses: list[float], patience: int, warmup: int = 0) -> int | None:
    """The step count at which ``TrainConfig.diverge_patience = patience`` stops a run with these per-step losses
    (the trainer's rule: the loss above the step-0 loss for ``patience`` steps in a row, counted from the end of
    the warm-up), or None when the rule never fires."""
    run = 0
    for t, v in enumerate(losses):
        run = run + 1 if t >= warmup and math.isfinite(v) and v > losses[0] else 0
        if run >= patience:
            return t + 1
    return None


def longest_above(losses: list[float], warmup: int = 0) -> int:
    """The longest run of consecutive post-warm-up steps with a (finite) loss above the step-0 loss: the
    smallest ``diverge_patience`` that would have stopped this run is one more than this, if it finished."""
    best = run = 0
    for t, v in enumerate(losses):
        run = run + 1 if t >= warmup and math.isfinite(v) and v > losses[0] else 0
        best = max(best, run)
    return best


def losses(out: Path, roots: list[Path]) -> Path:
    """One row per finished run under ``roots``: its status, train time, steps and where each patience of
    :data:`PATIENCES` would have stopped it (empty: ran to its end)."""
    rows = []
    for root in roots:
        for cfg, res, ls in _read_ckpts(root):
            if cfg["seed"] >= 1000:
                raise SystemExit(f"{root}: a confirmation seed ({cfg['seed']}); this record uses pilot seeds only")
            warmup = int(cfg["warmup_frac"] * cfg["steps"])
            rows.append({"run": json.dumps({k: cfg[k] for k in ("model", "rule", "width", "depth", "lr", "seed")}),
                         "root": root.parent.name if root.name == "runs" else root.name,
                         "status": res["status"], "wall_s": res["wall_s"], "steps": cfg["steps"],
                         "steps_done": len(ls), "longest_above": longest_above(ls, warmup),
                         **{f"stop_{n}": patience_stop(ls, n, warmup) or "" for n in PATIENCES}})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "early_stop.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _train_logged(job: tuple[dict, str]) -> str:
    import torch

    torch.set_num_threads(1)
    from deeplimit.train import config_from_point, train

    point, run_dir = job
    train(config_from_point(point), run_dir)
    return run_dir


SLICE = {  # standard-tier pilot slices where runs diverge (docs/reproduce.md): SP deep at high LR, no-LN control
    "depth-transfer": {"preset": ["sp"], "depth": [16, 64], "log2_lr": [-6.0, -5.0]},
    "no-ln-control": {"depth": [8], "log2_lr": [-9.0, -7.0, -5.0]},
}


def diverge_slice(out: Path) -> Path:
    """Train the :data:`SLICE` points of the standard tier on pilot seed 0 with run folders (per-step losses)."""
    import itertools

    from deeplimit.transfer.experiments import experiment

    jobs = []
    for name, axes in SLICE.items():
        spec = experiment(name, "standard", seed_set="pilot")
        base = {k: v[0] for k, v in spec.axes.items()}
        for combo in itertools.product(*axes.values()):
            point = {**spec.fixed, **base, **dict(zip(axes, combo)), "seed": spec.axes["seed"][0]}
            assert point["seed"] < 1000, "pilot seeds only"
            tag = "_".join(f"{k}={v}" for k, v in zip(axes, combo))
            jobs.append((point, str(out / "slice" / f"{name}-standard" / tag)))
    with ProcessPoolExecutor(2) as pool:
        done = list(pool.map(_train_logged, jobs))
    return Path(done[0]).parents[1]


def runner_overhead(out: Path, db: Path, tables: list[Path]) -> Path:
    """Per-trial time of a finished sweep's workers outside the trainer: per worker, (first trial start → last
    trial end − the sum of its runs' train time) / its trials. ``db``: the sweep's SQLite storage; ``tables``: the
    long results CSVs (``wall_s`` per run) of its studies, named ``<study>.csv``."""
    import sqlite3

    import pandas as pd

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    trials = pd.read_sql("select t.trial_id, s.study_name, t.datetime_start, t.datetime_complete from trials t "
                         "join studies s using(study_id) where t.state = 'COMPLETE'", con)
    attrs = pd.read_sql("select trial_id, key, value_json from trial_user_attributes where key in ('run_key', "
                        "'worker')", con).pivot(index="trial_id", columns="key", values="value_json").reset_index()
    trials = trials.merge(attrs, on="trial_id")
    rec = {}
    for table in tables:
        runs = pd.read_csv(table)
        runs = runs[runs["metric"] == "window_loss"][["run_id", "wall_s", "seed"]]
        if (runs["seed"] >= 1000).any():
            raise SystemExit(f"{table}: confirmation seeds; this record uses pilot seeds only")
        t = trials[trials["study_name"] == table.stem].assign(run_key=lambda f: f["run_key"].map(json.loads))
        t = t.merge(runs, left_on="run_key", right_on="run_id")
        for worker, g in t.groupby("worker"):
            span = (pd.to_datetime(g["datetime_complete"]).max() - pd.to_datetime(g["datetime_start"]).min())
            rec[f"{table.stem} {worker}"] = {"trials": len(g), "train_s": round(float(g["wall_s"].sum()), 1),
                                             "overhead_per_trial_s": round((span.total_seconds() -
                                                                            float(g["wall_s"].sum())) / len(g), 3),
                                             "mean_train_s": round(float(g["wall_s"].mean()), 3)}
    path = out / "runner_overhead.json"
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.levers_pilot")
    p.add_argument("what", choices=["two-pass", "losses", "slice", "runner"])
    p.add_argument("--db", type=Path, default=None)
    p.add_argument("roots", nargs="*", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reuse", type=Path, default=None)
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    path = (two_pass(a.out, a.reuse) if a.what == "two-pass" else diverge_slice(a.out) if a.what == "slice"
            else runner_overhead(a.out, a.db, a.roots) if a.what == "runner" else losses(a.out, a.roots))
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
