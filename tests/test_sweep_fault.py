"""Crash recovery: a worker SIGKILLed mid-trial; the sweep still completes every point exactly once."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from deeplimit.sweep import SweepSpec, create_sweep, open_storage, results_frame, spawn_workers, sweep_status
from deeplimit.sweep.postgres import postgres_available, start_cluster, stop_cluster

POINTS = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0]


def _kill_one_mid_trial(storage: str, run_dir: Path) -> None:
    # The victim is killed in its first (held) trial; the others need no sleep to speak of: 0.1 s. A survivor that
    # started first waits for the victim in its own first trial, up to 4 s (ended by "release" after the kill).
    spec = SweepSpec(axes={"x": POINTS, "seed": [0]}, fixed={"sleep": 0.1, "first_sleep": 4.0})
    create_sweep("fault", spec, objective="sweep_objectives:slow_marked", storage=storage, run_dir=run_dir)
    procs = spawn_workers(storage, "fault", 2, heartbeat_interval=1, grace_period=2, max_retries=2)
    victim, survivor = procs
    try:
        started = run_dir / "started"
        deadline = time.monotonic() + 60
        # Wait until the victim is inside the objective (its marker exists, the sleep has begun).
        while not (started.exists() and any(p.name.startswith(f"{victim.pid}-") for p in started.iterdir())):
            assert time.monotonic() < deadline, "victim worker never started a trial"
            assert victim.poll() is None, "victim worker exited early"
            time.sleep(0.02)
        killed_key = next(p for p in started.iterdir() if p.name.startswith(f"{victim.pid}-")).read_text()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        (run_dir / "release").write_text("")  # the survivor's first trial need not hold any longer
        assert survivor.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    status = sweep_status(storage, "fault")
    assert status.counts()["done"] == len(POINTS), str(status)
    assert status.failed == 0 and status.left == 0

    frame = results_frame(storage, "fault")
    per_run = frame[frame["metric"] == "objective"]
    assert sorted(per_run["x"]) == POINTS  # each key exactly once in the results
    assert per_run["run_id"].is_unique

    # Side effects: every key completed exactly once — the killed run never reached its log line.
    log = (run_dir / "completions.log").read_text().splitlines()
    counts = Counter(line.split("\t")[0] for line in log)
    assert len(counts) == len(POINTS) and set(counts.values()) == {1}, counts
    assert str(victim.pid) not in {line.split("\t")[1] for line in log if line.split("\t")[0] == killed_key}

    # Storage: the killed trial is FAIL (stale heartbeat) and a retry of it completed.
    study = optuna.load_study(study_name="fault", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    fails = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["run_key"] for t in fails] == [killed_key], [
        (t.number, t.state, t.user_attrs) for t in trials]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["run_key"] for t in done) == sorted(set(t.user_attrs["run_key"] for t in done))
    assert "result" not in fails[0].user_attrs  # the killed run left no result behind


def test_sigkilled_worker_sqlite(tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    _kill_one_mid_trial(f"sqlite:///{run_dir / 'sweep.db'}", run_dir)


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb) not installed")
def test_sigkilled_worker_postgres(tmp_path: Path) -> None:
    # The server runs as the 'postgres' user when we are root: its directory must be reachable by it,
    # which pytest's private tmp_path is not; use a fresh world-traversable directory under /tmp.
    root = Path(tempfile.mkdtemp(prefix="deeplimit-pg-test-"))
    root.chmod(0o755)
    cluster = start_cluster(root)
    try:
        run_dir = tmp_path / "sweep"
        run_dir.mkdir()
        _kill_one_mid_trial(cluster.url, run_dir)
    finally:
        stop_cluster(root, remove=True)


def test_two_workers_retry_exceptions_without_losing_points(tmp_path: Path) -> None:
    # A retry is queued while the failing trial still reads RUNNING; the other worker may pop it at once
    # and must not mistake the failing trial for a rival run of the same point.
    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    storage = f"sqlite:///{run_dir / 'sweep.db'}"
    spec = SweepSpec(axes={"x": POINTS})
    create_sweep("retry", spec, objective="sweep_objectives:fails_first_attempt", storage=storage,
                 run_dir=run_dir)
    procs = spawn_workers(storage, "retry", 2, heartbeat_interval=1, grace_period=3, max_retries=1)
    codes = [p.wait(timeout=60) for p in procs]
    status = sweep_status(storage, "retry")
    assert codes == [0, 0], status.table.to_string()
    assert (status.done, status.failed, status.left) == (len(POINTS), 0, 0), str(status)
    attempts = Counter(line.split("\t")[0] for line in (run_dir / "attempts.log").read_text().splitlines())
    assert set(attempts.values()) == {2}  # each point: one failure, one successful retry


def test_a_retry_that_starts_before_its_failed_trial_closes_is_the_second_attempt(tmp_path: Path) -> None:
    """The race the test above meets now and then, made deterministic: a failing trial queues its retry before it
    is closed as failed, so a worker may start the retry while the failed trial still reads RUNNING. The retry is
    attempt 2 (it once counted only closed failures, ran as a second "attempt 1", failed again, and with one retry
    allowed the point ended failed)."""
    from deeplimit.sweep.create import enqueue_point, load_sweep
    from deeplimit.sweep.worker import run_worker

    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    storage = f"sqlite:///{run_dir / 'sweep.db'}"
    spec = SweepSpec(axes={"x": [0.0]})
    create_sweep("race", spec, objective="sweep_objectives:fails_first_attempt", storage=storage, run_dir=run_dir)
    study, _ = load_sweep(open_storage(storage), "race", storage)
    key = spec.run_key(spec.points()[0])
    failing = study.ask()  # another worker's first attempt, failing: retry queued, trial not yet closed
    failing.set_user_attr("run_key", key)
    failing.set_user_attr("error", "worker 1\nRuntimeError: transient failure")
    enqueue_point(study, key, retry_of=failing.number)
    report = run_worker(storage, "race", n_trials=1, max_retries=1, heartbeat_interval=1, threads=None,
                        handle_signals=False, wait_for_running=False)
    attempts = [line.split("\t")[1] for line in (run_dir / "attempts.log").read_text().splitlines()]
    assert attempts == ["2"] and report.completed == 1, (attempts, report)


def _chaos(storage: str, run_dir: Path, kills: int, seed: int = 0) -> None:
    """Two workers at a time; SIGKILL a random one at a random moment ``kills`` times, restarting it each time."""
    import random

    rng = random.Random(seed)
    xs = [float(i) for i in range(30)]
    spec = SweepSpec(axes={"x": xs}, fixed={"sleep": 0.3, "first_sleep": 0.3})
    create_sweep("chaos", spec, objective="sweep_objectives:slow_marked", storage=storage, run_dir=run_dir)
    opts = {"heartbeat_interval": 1, "grace_period": 2, "max_retries": 100}
    procs = spawn_workers(storage, "chaos", 2, **opts)
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 1.5))
            victim = rng.randrange(len(procs))
            procs[victim].kill()
            procs[victim].wait()
            procs[victim] = spawn_workers(storage, "chaos", 1, **opts)[0]
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    status = sweep_status(storage, "chaos")
    assert codes == [0, 0] and (status.done, status.running, status.waiting, status.failed) == (30, 0, 0, 0), status
    study = optuna.load_study(study_name="chaos", storage=open_storage(storage))
    complete = Counter(t.user_attrs["run_key"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert len(complete) == 30 and set(complete.values()) == {1}, complete  # each point completed exactly once
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING))
    per_run = results_frame(storage, "chaos").query("metric == 'objective'")
    assert sorted(per_run["x"]) == xs and per_run["run_id"].is_unique


@pytest.mark.slow
def test_24_random_sigkills_sqlite(tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    _chaos(f"sqlite:///{run_dir / 'sweep.db'}", run_dir, kills=24)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb) not installed")
def test_24_random_sigkills_postgres(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="deeplimit-pg-test-"))
    root.chmod(0o755)
    cluster = start_cluster(root / "c")
    try:
        run_dir = tmp_path / "sweep"
        run_dir.mkdir()
        _chaos(cluster.url, run_dir, kills=24, seed=1)
    finally:
        stop_cluster(root / "c", remove=True)
        root.rmdir()


def test_a_later_launch_recovers_a_killed_workers_point(tmp_path: Path) -> None:
    # Issue #11: after a kill no point may stay "running" for ever and a later launch must not hang.
    from deeplimit.sweep import launch_workers

    run_dir = tmp_path / "sweep"
    run_dir.mkdir()
    storage = f"sqlite:///{run_dir / 'sweep.db'}"
    spec = SweepSpec(axes={"x": [0.0, 1.0, 2.0]}, fixed={"sleep": 0.2, "first_sleep": 4.0})
    create_sweep("later", spec, objective="sweep_objectives:slow_marked", storage=storage, run_dir=run_dir)
    (victim,) = spawn_workers(storage, "later", 1, heartbeat_interval=1, grace_period=2)
    started = run_dir / "started"
    deadline = time.monotonic() + 60
    while not (started.exists() and any(started.iterdir())):
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    (run_dir / "release").write_text("")  # the next worker's first trial need not hold as the victim's did
    assert sweep_status(storage, "later").running == 1  # left behind by the dead worker
    t0 = time.monotonic()
    report = launch_workers(storage, "later", 1, heartbeat_interval=1, grace_period=2, timeout=120)
    assert report.exit_code == 0 and time.monotonic() - t0 < 60
    status = report.status
    assert (status.done, status.running, status.failed) == (3, 0, 0)
