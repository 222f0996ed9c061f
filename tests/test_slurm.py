"""`deeplimit sweep slurm`: a job array of workers through submitit, run here by its LocalExecutor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deeplimit.cli.sweep import main
from deeplimit.secrets import STORAGE_ENV
from deeplimit.sweep import results_frame, sweep_status

pytest.importorskip("submitit")


def test_job_array_on_a_journal_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A journal file stands for the shared disk of a cluster; the URL travels in the environment.
    url = f"journal:{tmp_path / 'shared' / 'sweep.journal'}"
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv(STORAGE_ENV, url)
    spec = tmp_path / "spec.json"
    spec.write_text('{"axes": {"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}, "fixed": {"sleep": 0.2, "first_sleep": 0.2}, '
                    '"objective": "sweep_objectives:slow_marked", "metric": "loss"}')
    run = tmp_path / "run"
    assert main(["create", "--name", "arr", "--run-dir", str(run), "--spec", str(spec)]) == 0
    capsys.readouterr()
    code = main(["slurm", "--name", "arr", "--run-dir", str(run), "--array", "2", "--executor", "local",
                 "--heartbeat-interval", "1", "--time", "5", "--wait", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "submitted 2 worker task(s)" in out and "6/6 done" in out
    status = sweep_status(url, "arr")
    assert (status.done, status.failed, status.running) == (6, 0, 0)
    per_run = results_frame(url, "arr").query("metric == 'loss'")
    assert sorted(per_run["x"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and per_run["run_id"].is_unique
    # Both array tasks worked (each claims its share first), and the job files hold no storage URL.
    workers = {line.split("\t")[1] for line in (run / "completions.log").read_text().splitlines()}
    assert len(workers) == 2
    for p in (run / "slurm").rglob("*"):
        if p.is_file():
            assert b"sweep.journal" not in p.read_bytes() or p.suffix in (".out", ".err"), p
    assert os.environ[STORAGE_ENV] == url  # restored after submission
