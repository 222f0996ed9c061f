"""Sweep runner: bookkeeping per trial (share of a 10 s and of a 1 s trial), and 2 workers vs 1.

The objective (``deeplimit.sweep.demo:burn``) does a fixed amount of single-thread CPU work, calibrated here.
Every run uses the default SQLite storage and real worker processes (``spawn_workers``), exactly as
``deeplimit sweep launch`` does.

* **Bookkeeping per trial** = (the worker loop's wall time − the time inside the objective) / trials, from the
  worker's own report, with one worker so that no idle tail counts. It is everything the runner and Optuna add
  around a training call: ``study.optimize``'s ask and tell, the stale check, the claim and de-duplication
  reads, the result attributes, heartbeats and liveness stamps (whose number grows with the trial's length,
  which is why it is measured with 10 s trials as well as 1 s ones). Goal: ≤ 1 % of a 10 s trial.
* **Speed-up** of 2 workers over 1 = ratio of trials per hour in steady state (first start → last completion,
  from the trials' own timestamps). Runs go in ABBA order (1, 2, 2, 1 workers), each after its bare-process
  twin (the same work in 1 or 2 plain processes, no runner: the machine's own ceiling), and each configuration's
  throughput is the mean of its two runs, so a slow drift of the machine's speed cancels. Goal: ≥ 1.8×.

On a machine shared with other jobs the speed-up is bounded by the free cores: the record includes the load
average before and after, and ``engine_vs_raw_scaling`` (runner speed-up / bare speed-up) separates the runner
from contention. This benchmark times processes, not calls in one process, so the paired in-process rounds of
``benchmarks.common`` do not apply; its ABBA order is the same principle (alternating order, drift cancels).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from deeplimit.sweep import SweepSpec, create_sweep, spawn_workers
from deeplimit.sweep.create import load_sweep
from deeplimit.sweep.demo import burn
from deeplimit.sweep.storage import open_storage

NAME = "sweep"


def _calibrate(target_s: float) -> int:
    """Loop iterations of ``burn`` that take about ``target_s`` on this machine (median of 3)."""
    probe = 2_000_000
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        burn({"work": probe}, None)
        times.append(time.perf_counter() - t0)
    return int(probe * target_s / sorted(times)[1])


_RAW = """
import sys, time
from deeplimit.sweep.demo import burn
work, count, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
t0 = time.time()
for _ in range(count):
    burn({"work": work}, None)
print(t0, time.time())
"""


def _raw(n_procs: int, n_trials: int, work: int, lead_s: float = 3.0) -> float:
    """Trials/hour of the same work in ``n_procs`` bare processes (no runner): the machine's ceiling."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())}
    start = time.time() + lead_s  # all children start their loop together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", _RAW, str(work), str(n_trials // n_procs), str(start)],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(n_procs)]
    spans = [tuple(map(float, p.communicate()[0].split())) for p in procs]
    window = max(e for _, e in spans) - min(s for s, _ in spans)
    return 3600 * (n_trials // n_procs) * n_procs / window


def _sweep(root: Path, name: str, n_trials: int, work: int, n_workers: int) -> dict:
    """Run ``n_trials`` burn trials with ``n_workers`` worker processes; their reports and the trials."""
    spec = SweepSpec(axes={"x": [float(-i) for i in range(n_trials)]}, fixed={"work": work},
                     objective="deeplimit.sweep.demo:burn")
    sweep = create_sweep(name, spec, run_dir=root / name)
    t0 = time.perf_counter()
    procs = spawn_workers(sweep.storage, name, n_workers, log_dir=root / name / "logs", heartbeat_interval=5,
                          threads=1)
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError(f"workers exited with {codes}; see {root / name / 'logs'}")
    reports = [json.loads((root / name / "logs" / f"worker-{i}.log").read_text().strip().splitlines()[-1])
               for i in range(n_workers)]
    study, _ = load_sweep(open_storage(sweep.storage), name, sweep.storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return {"reports": reports, "trials": done, "wall_end_to_end_s": wall}


def _bookkeeping(run: dict) -> dict:
    """Per-trial bookkeeping of a one-worker run of :func:`_sweep`."""
    rep = run["reports"][0]
    per_trial = (rep["wall_s"] - rep["objective_s"]) / rep["trials"]
    objective = rep["objective_s"] / rep["trials"]
    return {"trials": rep["trials"], "objective_mean_s": objective, "bookkeeping_ms_per_trial": 1000 * per_trial,
            "bookkeeping_pct": 100 * per_trial / objective}


def _throughput(run: dict, n_workers: int) -> dict:
    """Trials per hour of a run of :func:`_sweep`, in steady state and end to end."""
    done = run["trials"]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"workers": n_workers, "trials": len(done), "window_s": span, "trials_per_hour": 3600 * len(done) / span,
            "trials_per_hour_end_to_end": 3600 * len(done) / run["wall_end_to_end_s"],
            "trials_per_worker": sorted(r["completed"] for r in run["reports"])}


def run(quick: bool = False) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    short_s, long_s = (0.05, 0.05) if quick else (1.0, 10.0)
    n_short, n_long, n_speed = (2, 1, 2) if quick else (10, 4, 16)
    assert not quick or n_short == n_speed, "quick reuses the bookkeeping sweep as the one-worker throughput run"
    # --quick is a smoke run of the code paths (the suite runs it): its numbers are not goals, so the bare
    # processes get a shorter common start (their imports may then overlap the loop) and the one-worker
    # bookkeeping sweep doubles as the one-worker throughput run (same trial count, same work)
    lead_s = 0.5 if quick else 3.0
    load_before = os.getloadavg()
    work_short = _calibrate(short_s)
    work_long = int(work_short * long_s / short_s)
    raws: dict[int, list[float]] = {1: [], 2: []}
    speed: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="deeplimit-bench-sweep-") as tmp:
        root = Path(tmp)
        short_run = _sweep(root, "short", n_short, work_short, 1)
        short = _bookkeeping(short_run)
        # --quick is a smoke run: one bookkeeping run (a second worker start would double its cost)
        long = short if quick else _bookkeeping(_sweep(root, "long", n_long, work_long, 1))
        # The VM's speed drifts over minutes: ABBA order, and each configuration's mean.
        for i, n in enumerate((1, 2) if quick else (1, 2, 2, 1)):
            raws[n].append(_raw(n, n_speed, work_short, lead_s))
            if quick and n == 1:
                speed[n].append(_throughput(short_run, 1))
                continue
            speed[n].append(_throughput(_sweep(root, f"speed{i}", n_speed, work_short, n), n))
    one = statistics.mean(r["trials_per_hour"] for r in speed[1])
    two = statistics.mean(r["trials_per_hour"] for r in speed[2])
    raw_speedup = statistics.mean(raws[2]) / statistics.mean(raws[1])
    summary = {
        "trial_s_short": round(short["objective_mean_s"], 3),
        "trial_s_long": round(long["objective_mean_s"], 3),
        "bookkeeping_ms_per_trial_short": round(short["bookkeeping_ms_per_trial"], 1),
        "bookkeeping_ms_per_trial_long": round(long["bookkeeping_ms_per_trial"], 1),
        "bookkeeping_pct_of_short_trial": round(short["bookkeeping_pct"], 2),
        "bookkeeping_pct_of_long_trial": round(long["bookkeeping_pct"], 3),
        "trials_per_hour_1_worker": round(one, 1),
        "trials_per_hour_2_workers": round(two, 1),
        "speedup_2_vs_1": round(two / one, 3),
        "raw_processes_speedup_2_vs_1": round(raw_speedup, 3),
        "engine_vs_raw_scaling": round(two / one / raw_speedup, 3),
        "goal_bookkeeping_le_1pct_of_10s_trial": long["bookkeeping_pct"] <= 1.0 if not quick else None,
        "goal_speedup_ge_1_8": two / one >= 1.8,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "optuna": optuna.__version__,
    }
    settings = {"target_trial_s": [short_s, long_s], "trials": {"short": n_short, "long": n_long, "speed": n_speed},
                "order": ("1 worker (the bookkeeping sweep), 2 workers" if quick
                          else "1, 2, 2, 1 workers (ABBA), each after its bare-process twin")}
    return {"summary": summary, "settings": settings, "bookkeeping": {"short": short, "long": long},
            "throughput": speed[1] + speed[2], "raw_trials_per_hour": raws,
            "work_iterations": {"short": work_short, "long": work_long}}
