"""A full disk: the run fails with a non-zero exit and a message that says so (never "check the URL")."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, run_worker


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


def test_a_full_checkpoint_folder_fails_the_launch(tmp_path: Path) -> None:
    # The storage is fine; the per-point run folders are on a full disk: every attempt fails, the launch says so.
    with _tiny_disk(tmp_path / "disk") as disk:
        spec = SweepSpec(axes={"x": [1.0, 2.0]}, fixed={"kb": 4096}, objective="sweep_objectives:writes_checkpoint")
        create_sweep("full", spec, storage=f"sqlite:///{tmp_path / 'sweep.db'}", run_dir=disk)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "deeplimit.cli.sweep", "launch", "--name", "full", "--storage",
                               f"sqlite:///{tmp_path / 'sweep.db'}", "--workers", "1", "--max-retries", "1",
                               "--heartbeat-interval", "1", "--quiet", "--allow-objective",
                               "sweep_objectives:writes_checkpoint"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "2 failed" in proc.stdout and "no space left" in proc.stderr.lower(), proc.stderr
        assert "Traceback" not in proc.stderr
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
