"""The generic runner in one process: diverged runs, retries, de-duplication, resume, dead trials, storages."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import optuna
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, open_storage, results_frame, run_worker, sweep_status
from deeplimit.sweep.create import enqueue_point, load_sweep
from deeplimit.sweep.results import write_results
from deeplimit.sweep.trial import point_dir

FAST = {"heartbeat_interval": 1, "threads": None, "handle_signals": False}
TS = optuna.trial.TrialState


def _sweep(tmp_path: Path, objective: str, xs: list[float], name: str = "s", **kw):
    spec = SweepSpec(axes={"x": xs, "seed": [0]}, metric="loss")
    return create_sweep(name, spec, objective=objective, run_dir=tmp_path, **kw)


def _study(sw) -> optuna.Study:
    return load_sweep(open_storage(sw.storage), sw.name, sw.storage)[0]


def test_diverged_runs_are_completed_with_status(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0, 1.0, 2.0])
    report = run_worker(sw.storage, "s", **FAST)
    assert (report.completed, report.diverged, report.failed, report.exit_code) == (4, 2, 0, 0)
    st = sweep_status(sw.storage, "s")
    assert (st.done, st.diverged, st.failed, st.left) == (4, 2, 0, 0)
    by_x = {json.loads(t.user_attrs["run_key"].split(",")[0].split("=")[1]): t for t in _study(sw).trials}
    assert by_x[2.0].state == TS.COMPLETE
    assert by_x[2.0].user_attrs["status"] == "diverged" and by_x[2.0].value == math.inf
    frame = results_frame(sw.storage, "s")
    final = frame[frame["metric"] == "loss"].set_index("x")
    assert final.loc[2.0, "status"] == "diverged" and math.isinf(final.loc[2.0, "value"])
    assert final.loc[0.0, "value"] == 1.0 and final.loc[0.0, "status"] == "ok"
    # Identifying columns first, then the point's axes, observation columns last; the runner adds nothing else.
    assert list(frame.columns[:4]) == ["experiment", "run_id", "x", "seed"]
    assert list(frame.columns[-5:]) == ["step", "metric", "value", "status", "wall_s"]
    assert "lr" not in frame.columns and "log2_lr" not in frame.columns
    paths = write_results(frame, tmp_path / "out")
    assert paths["csv"].stat().st_size > 0 and not list((tmp_path / "out").glob(".*tmp"))


def test_objective_metric_row_is_not_duplicated(tmp_path: Path) -> None:
    # The objective reports its own 'loss' row: the runner must not add a second one at the same step.
    spec = SweepSpec(axes={"x": [1.0, 5.0]}, metric="loss")
    sw = create_sweep("own", spec, objective="sweep_objectives:reports_metric", run_dir=tmp_path)
    run_worker(sw.storage, "own", **FAST)
    frame = results_frame(sw.storage, "own")
    rows = frame[frame["metric"] == "loss"]
    assert len(rows) == 2 and rows["run_id"].is_unique
    # A diverged run keeps the objective's own row (status says diverged); no second, disagreeing row.
    assert set(rows["status"]) == {"ok", "diverged"}


def test_exception_is_retried_then_recorded(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:fails_always", [0.0])
    report = run_worker(sw.storage, "s", max_retries=2, **FAST)
    assert report.failed == 3 and report.completed == 0 and report.gave_up == 1 and report.exit_code == 1
    attempts = (tmp_path / "attempts.log").read_text().split()
    assert attempts[1::2] == ["1", "2", "3"]  # attempt numbers seen by the objective
    st = sweep_status(sw.storage, "s")
    assert st.failed == 1 and st.done == 0 and st.finished
    row = st.table.iloc[0]
    assert row["attempts"] == 3 and "RuntimeError: boom" in row["last_error"]
    study = _study(sw)
    assert all("Traceback" in t.user_attrs["error"] for t in study.trials)
    assert study.trials[-1].user_attrs.get("gave_up") is True
    # Resuming after the cause is fixed re-queues the failed point with a fresh budget.
    again = _sweep(tmp_path, "sweep_objectives:fails_always", [0.0])
    assert again.requeued == 1
    assert run_worker(sw.storage, "s", max_retries=0, **FAST).failed == 1
    assert (tmp_path / "attempts.log").read_text().split()[1::2][-1] == "1"  # fresh budget: attempt 1 again


def test_transient_exception_recovers(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:fails_first_attempt", [0.0, 1.0])
    report = run_worker(sw.storage, "s", max_retries=1, **FAST)
    assert report.completed == 2 and report.failed == 2 and report.exit_code == 0
    assert sweep_status(sw.storage, "s").done == 2


def test_completed_points_never_rerun(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0])
    run_worker(sw.storage, "s", **FAST)
    # A stray duplicate of a completed point (e.g. queued by hand) steps aside, it is not run again.
    enqueue_point(_study(sw), sw.spec.run_key({"x": 0.0, "seed": 0}))
    resumed = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0])
    assert resumed.done == 2 and resumed.requeued == 0
    report = run_worker(sw.storage, "s", **FAST)
    assert report.completed == 0 and report.skipped == 1
    assert len((tmp_path / "calls.log").read_text().split()) == 2  # one call per point, ever
    # Growing the grid runs only the new points.
    bigger = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-2.0, -1.0, 0.0])
    assert bigger.points == 3 and bigger.done == 2
    assert run_worker(sw.storage, "s", **FAST).completed == 1
    assert len((tmp_path / "calls.log").read_text().split()) == 3


def test_a_trial_failed_elsewhere_cannot_complete(tmp_path: Path) -> None:
    # A worker whose heartbeat was late finds its trial failed as stale by another: its result is refused
    # (Optuna never tells a finished trial), the retry queued for the point runs instead; nothing is counted twice.
    sw = _sweep(tmp_path, "sweep_objectives:failed_elsewhere", [0.0])
    report = run_worker(sw.storage, "s", **FAST)
    assert report.refused == 1 and report.completed == 1
    trials = _study(sw).trials
    assert [t.state for t in trials] == [TS.FAIL, TS.COMPLETE]
    assert sweep_status(sw.storage, "s").done == 1
    assert len(results_frame(sw.storage, "s").query("metric == 'loss'")) == 1


def test_dead_trial_without_claim_is_reaped_and_retried(tmp_path: Path) -> None:
    # A worker killed between Optuna's ask and the claim (before any heartbeat) leaves a RUNNING trial that
    # Optuna's heartbeat check cannot see. Simulate both kinds: a popped retry of a point, and a fresh trial.
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0, 2.0])
    study = _study(sw)
    key = sw.spec.run_key({"x": 1.0, "seed": 0})
    enqueue_point(study, key)
    popped = study.ask()  # pops the queued retry: RUNNING, carrying the run key, never claimed
    fresh = study.ask()  # a fresh trial that never picked a point
    assert popped.user_attrs["run_key"] == key and "run_key" not in fresh.user_attrs
    t0 = time.perf_counter()
    report = run_worker(sw.storage, "s", grace_period=2, **FAST)
    assert time.perf_counter() - t0 < 30
    assert report.completed == 2
    trials = {t.number: t for t in _study(sw).trials}
    assert trials[popped.number].state == TS.FAIL and trials[fresh.number].state == TS.FAIL
    st = sweep_status(sw.storage, "s")
    assert (st.done, st.running, st.failed) == (2, 0, 0)


def test_changed_spec_is_refused(tmp_path: Path) -> None:
    _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0])
    with pytest.raises(DeeplimitError, match="only add grid points"):
        _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0])


def test_float_return_context_and_run_dirs(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0, 3.0])
    run_worker(sw.storage, "s", **FAST)
    frame = results_frame(sw.storage, "s")
    assert sorted(frame[frame["metric"] == "loss"]["value"]) == [1.0, 9.0]
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 2  # one private directory per point, each recording what it belongs to
    record = json.loads((dirs[0] / "point.json").read_text())
    assert record["sweep"] == "s" and record["objective"] == "sweep_objectives:returns_float"


def test_run_dirs_are_keyed_by_the_full_config(tmp_path: Path) -> None:
    # Same axis values, other fixed settings or another sweep: another folder (no stale checkpoint reuse).
    a = point_dir(tmp_path, "s", "x=1", "m:f", {"x": 1, "steps": 200})
    b = point_dir(tmp_path, "s", "x=1", "m:f", {"x": 1, "steps": 50})
    c = point_dir(tmp_path, "t", "x=1", "m:f", {"x": 1, "steps": 200})
    assert len({a, b, c}) == 3 and a == point_dir(tmp_path, "s", "x=1", "m:f", {"x": 1, "steps": 200})
    (a / "point.json").write_text(json.dumps({"config_hash": "something else"}))
    with pytest.raises(DeeplimitError, match="belongs to another run"):
        point_dir(tmp_path, "s", "x=1", "m:f", {"x": 1, "steps": 200})


def test_unreachable_postgres_fails_fast() -> None:
    url = "postgresql+psycopg2://u:S3cretPW@127.0.0.1:9/nodb"
    t0 = time.perf_counter()
    with pytest.raises(DeeplimitError, match=r"127\.0\.0\.1:9.*start the server") as info:
        open_storage(url)
    assert time.perf_counter() - t0 < 10 and "S3cretPW" not in str(info.value)


def test_storage_and_objective_errors(tmp_path: Path) -> None:
    with pytest.raises(DeeplimitError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(DeeplimitError, match="heartbeat interval"):
        open_storage(f"sqlite:///{tmp_path}/x.db", heartbeat_interval=0)
    with pytest.raises(DeeplimitError, match="cannot import module"):
        _sweep(tmp_path, "no_such_module_xyz:f", [0.0])
    with pytest.raises(DeeplimitError, match="dotted path"):
        _sweep(tmp_path, "no_colon", [0.0])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweep.db").exists()
    with pytest.raises(DeeplimitError, match="no sweep storage at"):
        sweep_status(f"sqlite:///{tmp_path}/other.db", "nothing")
    assert not (tmp_path / "other.db").exists()  # reading never creates an empty database
    _sweep(tmp_path, "sweep_objectives:returns_float", [0.0], name="real")
    with pytest.raises(DeeplimitError, match="no sweep named 'nothing'"):
        sweep_status(f"sqlite:///{tmp_path}/sweep.db", "nothing")
    not_db = tmp_path / "not.db"
    not_db.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DeeplimitError, match="not an SQLite database"):
        open_storage(f"sqlite:///{not_db}")


def test_a_storage_from_another_optuna_is_refused_even_where_this_process_checked_that_path(tmp_path: Path) -> None:
    """Optuna's schema check runs once per storage and process (it costs ~40 ms per open); a database replaced
    at a path this process already checked is a new storage and is checked again."""
    import sqlite3

    def remove(db: Path) -> None:
        for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            f.unlink(missing_ok=True)

    here, other = tmp_path / "sweep.db", tmp_path / "other.db"
    for db in (here, here, other):  # `here` opened twice: the second open skips the check
        open_storage(f"sqlite:///{db}").engine.dispose()
    con = sqlite3.connect(other)  # as if written by an Optuna whose schema this one does not know
    con.execute("UPDATE alembic_version SET version_num = 'v0.0.0.a'")
    con.commit()
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    remove(here)
    other.replace(here)
    with pytest.raises(DeeplimitError, match="no longer compatible with the table schema"):
        open_storage(f"sqlite:///{here}")


def test_concurrent_creates_on_a_new_sqlite_file(tmp_path: Path) -> None:
    # Two `create` calls on a new database at once: the schema is created once, both succeed.
    spec = SweepSpec(axes={"x": [1.0, 2.0]}, metric="loss")
    errors: list[BaseException] = []

    def create() -> None:
        try:
            create_sweep("race", spec, objective="sweep_objectives:returns_float", run_dir=tmp_path)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sweep_status(f"sqlite:///{tmp_path / 'sweep.db'}", "race").total == 2


def test_journal_storage_and_lazy_api(tmp_path: Path) -> None:
    import deeplimit.sweep as sweep_api

    assert sweep_api.SweepSpec is SweepSpec
    url = f"journal:{tmp_path / 'sweep.journal'}"
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0, 2.0], storage=url)
    report = run_worker(url, "s", **FAST)
    assert report.completed == 2
    assert sweep_status(url, "s").done == 2
    assert sorted(results_frame(url, "s").query("metric == 'loss'")["value"]) == [1.0, 4.0]
    assert sw.storage == url


def test_journal_dead_worker_is_retried(tmp_path: Path) -> None:
    # Journal storages have no Optuna heartbeats: a claimed trial whose liveness stamp goes stale is failed and
    # its point retried by the next worker.
    url = f"journal:{tmp_path / 'sweep.journal'}"
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0], storage=url)
    study = _study(sw)
    trial = study.ask()
    trial.set_user_attr("run_key", sw.spec.run_key({"x": 1.0, "seed": 0}))
    trial.set_user_attr("worker", "gone-host:1")
    trial.set_user_attr("alive_at", time.time() - 60)
    report = run_worker(url, "s", grace_period=2, **FAST)
    assert report.completed == 1
    states = [t.state for t in _study(sw).trials]
    assert states == [TS.FAIL, TS.COMPLETE]


def test_a_failure_whose_retry_was_never_queued_is_healed(tmp_path: Path) -> None:
    # A worker that fails a trial (stale, dead) queues the retry right after; killed in between, it leaves a
    # failed point with retries left. Any worker queues that retry once the grace period has passed.
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0])
    study = _study(sw)
    trial = study.ask()
    trial.set_user_attr("run_key", sw.spec.run_key({"x": 1.0, "seed": 0}))
    trial.set_user_attr("worker", "gone-host:1")
    study.tell(trial, state=TS.FAIL)  # ... and its worker died before queuing the retry
    assert sweep_status(sw.storage, "s").failed == 1
    report = run_worker(sw.storage, "s", grace_period=2, **FAST)
    assert report.completed == 1
    st = sweep_status(sw.storage, "s")
    assert (st.done, st.failed) == (1, 0) and st.table.iloc[0]["attempts"] == 2
