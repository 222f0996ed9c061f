"""Engine behaviour in one process: diverged runs, retries, de-duplication, resume, storage errors."""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.engine import (
    _enqueue,
    _open_store,
    _SqlStore,
    _Store,
    create_sweep,
    open_storage,
    results_frame,
    run_worker,
    sweep_status,
    write_results,
)
from deeplimit.sweep.grid import SweepSpec

FAST = {"heartbeat_interval": 1, "threads": None}


def _sweep(tmp_path: Path, objective: str, lrs: list[float], name: str = "s", **kw):
    spec = SweepSpec(axes={"log2_lr": lrs, "seed": [0]}, metric="loss")
    return create_sweep(name, spec, objective=objective, run_dir=tmp_path, **kw)


def test_diverged_runs_are_completed_with_status(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0, 1.0, 2.0])
    report = run_worker(sw.storage, "s", **FAST)
    assert (report.completed, report.diverged, report.failed) == (4, 2, 0)
    st = sweep_status(sw.storage, "s")
    assert (st.done, st.diverged, st.failed, st.left) == (4, 2, 0, 0)
    study = optuna.load_study(study_name="s", storage=sw.storage)
    by_lr = {float(t.user_attrs["run_key"].split(",")[0].split("=")[1]): t for t in study.trials}
    assert by_lr[2.0].state == optuna.trial.TrialState.COMPLETE
    assert by_lr[2.0].user_attrs["status"] == "diverged" and by_lr[2.0].value == math.inf
    frame = results_frame(sw.storage, "s")
    final = frame[frame["metric"] == "loss"].set_index("log2_lr")
    assert final.loc[2.0, "status"] == "diverged" and math.isinf(final.loc[2.0, "value"])
    assert final.loc[0.0, "value"] == 1.0 and final.loc[0.0, "status"] == "ok"
    # Identifying columns come first, observation columns last; lr is filled from log2_lr.
    assert list(frame.columns[:2]) == ["experiment", "run_id"]
    assert list(frame.columns[-5:]) == ["step", "metric", "value", "status", "wall_s"]
    assert final.loc[1.0, "lr"] == 2.0
    paths = write_results(frame, tmp_path / "out")
    assert paths["csv"].stat().st_size > 0
    if "parquet" in paths:
        import pandas as pd

        assert len(pd.read_parquet(paths["parquet"])) == len(frame)


def test_exception_is_retried_then_recorded(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:fails_always", [0.0])
    report = run_worker(sw.storage, "s", max_retries=2, **FAST)
    assert report.failed == 3 and report.completed == 0
    attempts = (tmp_path / "attempts.log").read_text().split()
    assert attempts[1::2] == ["1", "2", "3"]  # attempt numbers seen by the objective
    st = sweep_status(sw.storage, "s")
    assert st.failed == 1 and st.done == 0
    row = st.table.iloc[0]
    assert row["attempts"] == 3 and "RuntimeError: boom" in row["last_error"]
    study = optuna.load_study(study_name="s", storage=sw.storage)
    assert all("Traceback" in t.user_attrs["error"] for t in study.trials)
    assert study.trials[-1].user_attrs.get("gave_up") is True
    # Resuming after the cause is fixed re-queues the failed point with a fresh budget.
    again = _sweep(tmp_path, "sweep_objectives:fails_always", [0.0])
    assert again.requeued == 1


def test_transient_exception_recovers(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:fails_first_attempt", [0.0, 1.0])
    report = run_worker(sw.storage, "s", max_retries=1, **FAST)
    assert report.completed == 2 and report.failed == 2
    assert sweep_status(sw.storage, "s").done == 2


def test_completed_points_never_rerun(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0])
    run_worker(sw.storage, "s", **FAST)
    study = optuna.load_study(study_name="s", storage=open_storage(sw.storage))
    # A stray duplicate of a completed point (e.g. two create calls racing) is skipped, not re-run.
    _enqueue(study, sw.spec, {"log2_lr": 0.0, "seed": 0}, sw.spec.run_key({"log2_lr": 0.0, "seed": 0}), 0)
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


@pytest.mark.parametrize("fast", [True, False], ids=["sql", "storage-api"])
def test_store_pops_once_and_never_completes_a_failed_trial(tmp_path: Path, fast: bool) -> None:
    # The worker's own ask/tell steps keep Optuna's rules: a trial is popped by one worker only, with its first
    # heartbeat; a trial failed as stale by another worker cannot be completed, and keeps no result.
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [0.0, 1.0])
    study = optuna.load_study(study_name="s", storage=open_storage(sw.storage, heartbeat_interval=1))
    store = _open_store(study) if fast else _Store(study)
    assert isinstance(store, _SqlStore) == fast
    keys = [sw.spec.run_key(p) for p in sw.spec.iter_points()]
    ids = [_enqueue(study, sw.spec, {}, k, 0) for k in keys]
    number, attrs = store.start(ids[0])
    assert attrs["run_key"] == keys[0] and store.start(ids[0]) is None
    backend = study._storage._backend
    assert backend._get_stale_trial_ids(study._study_id) == []  # beating: the pop recorded a heartbeat
    with backend.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM trial_heartbeats").scalar() == 1
    study._storage.set_trial_state_values(ids[0], optuna.trial.TrialState.FAIL)  # failed as stale elsewhere
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        store.finish(ids[0], optuna.trial.TrialState.COMPLETE, 1.0, {"result": "{}", "status": "ok"})
    assert "result" not in study._storage.get_trial(ids[0]).user_attrs
    assert store.start(ids[1]) is not None
    store.finish(ids[1], optuna.trial.TrialState.COMPLETE, math.inf, {"status": "diverged", "n": 2})
    done = study._storage.get_trial(ids[1])
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value == math.inf
    assert done.user_attrs == {"run_key": keys[1], "status": "diverged", "n": 2}
    assert done.datetime_start <= done.datetime_complete
    rows = {r.trial_id: r for r in store.rows()}
    assert (rows[ids[0]].state, rows[ids[1]].key) == (optuna.trial.TrialState.FAIL, keys[1])


def test_changed_spec_is_refused(tmp_path: Path) -> None:
    _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0, 0.0])
    with pytest.raises(DeeplimitError, match="only add grid points"):
        _sweep(tmp_path, "sweep_objectives:nan_or_value", [-1.0])


def test_float_return_and_context(tmp_path: Path) -> None:
    sw = _sweep(tmp_path, "sweep_objectives:returns_float", [1.0, 3.0])
    run_worker(sw.storage, "s", **FAST)
    frame = results_frame(sw.storage, "s")
    assert sorted(frame[frame["metric"] == "loss"]["value"]) == [1.0, 9.0]
    assert len(list((tmp_path / "runs").iterdir())) == 2  # one private directory per point


def test_unreachable_postgres_fails_fast() -> None:
    url = "postgresql+psycopg2://postgres@127.0.0.1:9/nodb"
    t0 = time.perf_counter()
    with pytest.raises(DeeplimitError, match=r"127\.0\.0\.1:9.*start the server"):
        open_storage(url)
    assert time.perf_counter() - t0 < 10


def test_storage_and_objective_errors(tmp_path: Path) -> None:
    with pytest.raises(DeeplimitError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(DeeplimitError, match="cannot import module"):
        _sweep(tmp_path, "no_such_module_xyz:f", [0.0])
    with pytest.raises(DeeplimitError, match="dotted path"):
        _sweep(tmp_path, "no_colon", [0.0])
    with pytest.raises(DeeplimitError, match="no sweep named"):
        sweep_status(f"sqlite:///{tmp_path}/other.db", "nothing")
    with pytest.raises(DeeplimitError, match="empty"):
        SweepSpec(axes={"log2_lr": []})


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
