"""No password in any output, file or process list; the private PostgreSQL server needs one."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deeplimit.cli.sweep import main
from deeplimit.secrets import STORAGE_ENV
from deeplimit.sweep import SweepSpec, create_sweep, spawn_workers, sweep_status
from deeplimit.sweep.launch import worker_command
from deeplimit.sweep.postgres import postgres_available, start_cluster, stop_cluster

SECRET = "S3cretPW"


def _cmdlines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def _files_without(root: Path, secret: str) -> None:
    for p in root.rglob("*"):
        if p.is_file() and p.name not in ("password", "storage.url"):
            assert secret.encode() not in p.read_bytes(), f"{secret!r} found in {p}"


def test_workers_get_the_url_from_the_environment_not_argv(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:9/db?sslpassword={SECRET}"
    assert not any(SECRET in part for part in worker_command("s", run_dir=str(tmp_path)))
    procs = spawn_workers(url, "s", 1, log_dir=tmp_path / "logs", heartbeat_interval=1)
    try:
        seen = False
        deadline = time.monotonic() + 20
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            lines = _cmdlines()
            assert not any(SECRET in line for line in lines)
            seen = seen or any("deeplimit.sweep.worker" in line for line in lines)
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            assert SECRET not in ps
            time.sleep(0.2)
        assert seen  # the check ran while the workers were alive
        codes = [p.wait(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [2]  # the server is unreachable: the workers say so and exit 2
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "start the server" in logs and "u:***@127.0.0.1:9" in logs
    _files_without(tmp_path, SECRET)


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb) not installed")
def test_private_postgres_needs_the_password_and_never_shows_it(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(prefix="deeplimit-pg-secret-"))
    base.chmod(0o755)
    root = base / "pg"
    try:
        assert main(["postgres", "start", "--dir", str(root)]) == 0
        out = capsys.readouterr().out
        url_file = root / "storage.url"
        url = url_file.read_text().strip()
        password = (root / "password").read_text().strip()
        assert password and password in url and password not in out and "***" in out
        for secret_file in (url_file, root / "password"):
            assert secret_file.stat().st_mode & 0o777 == 0o600
        assert root.stat().st_uid == os.geteuid()  # --dir itself is never handed to the server user
        cluster = start_cluster(root)  # already running: returned as is
        # Password login only: without it (or with a wrong one) the server refuses, also over the socket.
        psql = [str(Path(cluster.bindir) / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                "-d", cluster.database, "-w", "-c", "select 1"]
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        assert subprocess.run(psql, capture_output=True, env=env).returncode != 0
        assert subprocess.run(psql, capture_output=True, env={**env, "PGPASSWORD": "wrong"}).returncode != 0
        assert subprocess.run(psql, capture_output=True, env={**env, "PGPASSWORD": password}).returncode == 0

        # A sweep through $DEEPLIMIT_STORAGE_URL: create, launch and status never print the password.
        monkeypatch.setenv(STORAGE_ENV, url)
        run = tmp_path / "run"
        spec = tmp_path / "spec.json"
        spec.write_text('{"axes": {"x": [1.0, 2.0, 3.0]}, "objective": "sweep_objectives:returns_float"}')
        assert main(["create", "--name", "s", "--run-dir", str(run), "--spec", str(spec)]) == 0
        assert main(["launch", "--name", "s", "--run-dir", str(run), "--workers", "2", "--heartbeat-interval", "1",
                     "--quiet"]) == 0
        assert main(["status", "--name", "s", "--table"]) == 0
        out, err = capsys.readouterr()
        assert password not in out + err and "postgres:***@127.0.0.1" in out
        assert "3/3 done" in out
        _files_without(run, password)
        _files_without(root, password)
        assert sweep_status(url, "s").done == 3
    finally:
        if (root / "cluster.json").exists():
            stop_cluster(root, remove=True)
        base.rmdir()


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb) not installed")
def test_a_failed_start_leaves_an_empty_dir_empty(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="deeplimit-pg-busy-"))
    base.chmod(0o755)
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Exception, match="did not start"):
            start_cluster(base, port=port, timeout=10)
    assert list(base.iterdir()) == []  # the folder we were given is as we found it
    base.rmdir()


def test_create_prints_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sw = create_sweep("s", SweepSpec(axes={"x": [1.0]}), objective="sweep_objectives:returns_float",
                      run_dir=tmp_path)
    text = str(sw).replace(sw.storage, "")
    assert "storage: sqlite:///" in str(sw) and SECRET not in text
    proc = subprocess.run([sys.executable, "-m", "deeplimit.cli.sweep", "status", "--name", "s", "--storage",
                           f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:9/db"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 2 and SECRET not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
