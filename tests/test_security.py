"""What a sweep's workers run and where they write: never code from the current folder, never an objective or
a folder that only the storage names (whoever can write a storage must not choose the code workers run).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from deeplimit.cli.sweep import main
from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, launch_workers, open_storage, run_worker, sweep_status
from deeplimit.sweep.create import OBJECTIVE_ATTR, RUN_DIR_ATTR, load_sweep
from deeplimit.sweep.launch import worker_command
from deeplimit.sweep.trial import ALLOW_ENV, PACKAGE_OBJECTIVES

FAST = {"heartbeat_interval": 1, "threads": None, "handle_signals": False}
LIGHT = {"work": 1000}  # the CPU-burning objective, burning next to nothing
PLANTED = ("json", "numpy", "optuna", "sqlite3", "deeplimit_planted")


def _plant(folder: Path, marker: Path) -> None:
    """Modules that would shadow the real ones if the folder were on the import path; each leaves a marker."""
    for name in PLANTED:
        (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n"
                                           "raise SystemExit('planted module ran')\n")


def _tamper(url: str, name: str, **attrs: object) -> None:
    study, _ = load_sweep(open_storage(url), name, url)
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def test_a_module_planted_in_the_launch_folder_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, marker = tmp_path / "cwd", tmp_path / "ran.txt"
    cwd.mkdir()
    _plant(cwd, marker)
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0, 2.0]}, fixed=LIGHT), objective="deeplimit.sweep.demo:burn",
                      run_dir=tmp_path / "run")
    monkeypatch.chdir(cwd)  # `sweep launch` started from a folder holding json.py, numpy.py, …
    report = launch_workers(sw.storage, "s", 1, heartbeat_interval=1, max_retries=0, timeout=120)
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "logs").iterdir())
    assert not marker.exists(), f"planted modules ran in the workers: {marker.read_text()}"
    assert report.exit_code == 0 and report.status.done == 2, logs
    assert "-P" in worker_command("s")  # the interpreter keeps the current folder off sys.path


@pytest.mark.parametrize("how", ["worker", "launch", "cli-worker", "cli-launch"])
def test_an_objective_changed_in_the_storage_is_refused(how: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0]}, fixed=LIGHT), objective="deeplimit.sweep.demo:burn",
                      run_dir=tmp_path / "run")
    evil = "sweep_objectives:writes_checkpoint"  # importable here, never created in this storage
    _tamper(sw.storage, "s", **{OBJECTIVE_ATTR: evil})
    if how.startswith("cli"):
        code = main([how[4:], "--name", "s", "--run-dir", str(tmp_path / "run"), "--heartbeat-interval", "1"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        message = err
    else:
        with pytest.raises(DeeplimitError) as info:
            if how == "worker":
                run_worker(sw.storage, "s", **FAST)
            else:
                launch_workers(sw.storage, "s", 1, heartbeat_interval=1)
        message = str(info.value)
    assert evil in message and "--allow-objective" in message and "\n" not in message.strip()
    assert not (tmp_path / "run" / "runs").exists() and not (tmp_path / "run" / "logs").exists()
    assert sweep_status(sw.storage, "s").done == 0


def test_a_user_objective_runs_when_allowed_where_the_workers_start(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0, 2.0]}, fixed=LIGHT), objective="deeplimit.sweep.demo:burn",
                      run_dir=tmp_path / "run")
    _tamper(sw.storage, "s", **{OBJECTIVE_ATTR: "sweep_objectives:returns_float"})
    assert run_worker(sw.storage, "s", allow_objectives=["sweep_objectives:returns_float"], **FAST).completed == 2
    with pytest.raises(DeeplimitError, match="must look like package.module:function"):
        run_worker(sw.storage, "s", allow_objectives=["nocolon"], **FAST)
    monkeypatch.setenv(ALLOW_ENV, "other:f, sweep_objectives:returns_float")
    assert run_worker(sw.storage, "s", **FAST).exit_code == 0
    assert "deeplimit.transfer.objectives:train_objective" in PACKAGE_OBJECTIVES


@pytest.mark.parametrize("stored, fragment", [
    ("../../x", "not a plain absolute path"),
    ("{tmp}/run/../../x", "not a plain absolute path"),
    ("relative/run", "not a plain absolute path"),
    ("{tmp}/nowhere/run", "not a folder on this machine"),
    ("", "records no run folder"),
])
def test_a_run_folder_from_the_storage_cannot_send_writes_elsewhere(stored: str, fragment: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0]}, fixed=LIGHT), objective="deeplimit.sweep.demo:burn",
                      run_dir=tmp_path / "run")
    _tamper(sw.storage, "s", **{RUN_DIR_ATTR: stored.format(tmp=tmp_path)})
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)  # ../../x would be tmp_path/x
    before = sorted(p.name for p in tmp_path.iterdir())
    for call in (lambda: run_worker(sw.storage, "s", **FAST), lambda: launch_workers(sw.storage, "s", 1)):
        with pytest.raises(DeeplimitError, match=fragment) as info:
            call()
        assert "--run-dir" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created anywhere
    assert not (tmp_path / "run" / "runs").exists()
    if stored != "../../x":
        return
    # The folder the user gives wins over whatever the storage says.
    run_worker(sw.storage, "s", run_dir=str(tmp_path / "mine"), **FAST)
    assert list((tmp_path / "mine" / "runs").iterdir())
    assert optuna.load_study(study_name="s", storage=sw.storage).best_value > 0
