"""A full disk: the run fails with a non-zero exit and a message that says so (never "check the URL")."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, run_worker, sweep_status


@contextlib.contextmanager
def _tiny_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_checkpoint_folder_fails_the_launch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The storage is fine; the per-point run folders are on a full disk: every attempt fails, the launch says so.
    # The launcher runs in process (its worker is a real process): what is checked is its exit code and words; a
    # launcher interpreter cost ~2 s of imports.
    from deeplimit.cli.sweep import main

    with _tiny_disk(tmp_path / "disk") as disk:
        spec = SweepSpec(axes={"x": [1.0, 2.0]}, fixed={"kb": 4096}, objective="sweep_objectives:writes_checkpoint")
        create_sweep("full", spec, storage=f"sqlite:///{tmp_path / 'sweep.db'}", run_dir=disk)
        capsys.readouterr()
        code = main(["launch", "--name", "full", "--storage", f"sqlite:///{tmp_path / 'sweep.db'}", "--workers", "1",
                     "--max-retries", "1", "--heartbeat-interval", "1", "--quiet", "--allow-objective",
                     "sweep_objectives:writes_checkpoint"])
        out, err = capsys.readouterr()
        assert code == 1, err
        assert "2 failed" in out and "no space left" in err.lower(), err
        assert "Traceback" not in err
        assert not [p for p in disk.rglob("*.tmp")]  # no torn temporary files left behind


def test_a_full_storage_disk_says_so(tmp_path: Path) -> None:
    with _tiny_disk(tmp_path / "disk", "1m") as disk:
        url = f"sqlite:///{disk / 'sweep.db'}"
        sw = create_sweep("s", SweepSpec(axes={"x": [float(i) for i in range(200)]}),
                          objective="sweep_objectives:returns_float", storage=url, run_dir=tmp_path / "run")
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        with pytest.raises(DeeplimitError) as info:
            run_worker(sw.storage, "s", heartbeat_interval=1, threads=None, handle_signals=False)
        text = str(info.value)
        assert "no space left" in text and "URL" not in text, text
        json.dumps(text)  # one plain line
        assert "\n" not in text


def test_a_full_disk_under_a_closed_sqlite_storage_says_no_space_left(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # A sweep database closed cleanly (no -wal/-shm beside it), then the disk fills: SQLite cannot create its
    # shared-memory file and says only "disk I/O error", which used to read as a lock problem over NFS.
    import sqlite3

    from deeplimit.cli.sweep import main

    with _tiny_disk(tmp_path / "disk", "1m") as disk:
        url = f"sqlite:///{disk / 'sweep.db'}"
        create_sweep("s", SweepSpec(axes={"x": [1.0, 2.0]}), objective="deeplimit.sweep.demo:burn", storage=url,
                     run_dir=tmp_path / "run")
        conn = sqlite3.connect(disk / "sweep.db")  # the last connection of this file: its WAL is folded back
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        gc.collect()
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        for call in (lambda: sweep_status(url, "s"),
                     lambda: run_worker(url, "s", heartbeat_interval=1, threads=None, handle_signals=False)):
            with pytest.raises(DeeplimitError) as info:
                call()
            text = str(info.value)
            assert "no space left" in text and "NFS" not in text and "\n" not in text, text
        assert main(["status", "--name", "s", "--storage", url]) == 2
        err = capsys.readouterr().err
        assert "no space left" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
