"""A private PostgreSQL cluster on 127.0.0.1 for multi-machine sweeps and tests (ecosystem spec §7).

``start_cluster(dir)`` runs ``initdb`` (trust auth, superuser ``postgres``) and ``pg_ctl start`` on a free
loopback port, creates a database and returns a :class:`PostgresCluster` whose ``url`` is an Optuna/
SQLAlchemy URL. It never touches the system cluster. PostgreSQL refuses to run as root, so when this
process is root the server binaries run as the ``postgres`` user (``runuser``/``su``) and the data
directory is handed to that user. The cluster's state (port, URL) is written to ``DIR/cluster.json`` so
``deeplimit sweep postgres stop --dir DIR`` can find it.

Listening on 127.0.0.1 only: for workers on other machines, start PostgreSQL with
``listen_addresses`` and ``pg_hba.conf`` set by the administrator, and pass that URL to ``--storage``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deeplimit.errors import DeeplimitError

__all__ = ["PostgresCluster", "find_bindir", "start_cluster", "stop_cluster", "postgres_available"]

STATE_FILE = "cluster.json"


def find_bindir() -> Path | None:
    """The PostgreSQL server binary directory (``initdb``, ``pg_ctl``), newest version first."""
    env = os.environ.get("DEEPLIMIT_PG_BINDIR")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
                        reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    initdb = shutil.which("initdb")
    if initdb:
        real = Path(initdb).resolve().parent
        if (real / "pg_ctl").exists():
            return real
    return None


def postgres_available() -> bool:
    """Whether a cluster can be started here (server binaries, and a ``postgres`` user when root)."""
    if find_bindir() is None:
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
    return True


def _as_db_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; drop to the postgres user for the server binaries.
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(c) for c in cmd)]


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def _run(cmd: list[str], what: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise DeeplimitError(f"{what}: {exc}; install PostgreSQL (apt-get install postgresql)") from None
    except subprocess.TimeoutExpired:
        raise DeeplimitError(f"{what} did not finish within {timeout} s; check the server log") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise DeeplimitError(f"{what} failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running private cluster; use as a context manager to stop it on exit."""

    root: str
    port: int
    database: str
    bindir: str
    url: str

    @property
    def data_dir(self) -> Path:
        return Path(self.root) / "data"

    def stop(self) -> None:
        """Stop the server (fast shutdown). The data directory stays: ``start_cluster`` restarts it."""
        pg_ctl = str(Path(self.bindir) / "pg_ctl")
        _run(_as_db_user([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]), "pg_ctl stop")

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _running(root: Path, bindir: Path) -> bool:
    proc = subprocess.run(_as_db_user([str(bindir / "pg_ctl"), "-D", str(root / "data"), "status"]),
                          capture_output=True, text=True)
    return proc.returncode == 0


def start_cluster(root: str | os.PathLike[str], *, port: int | None = None, database: str = "deeplimit",
                  timeout: float = 60) -> PostgresCluster:
    """Start (initialising if needed) a private cluster in ``root`` and return it with its URL.

    If ``root`` already holds a running cluster started by this function, it is returned as is.
    """
    bindir = find_bindir()
    if bindir is None:
        raise DeeplimitError("PostgreSQL server binaries (initdb, pg_ctl) not found; install them "
                             "(apt-get install postgresql) or set DEEPLIMIT_PG_BINDIR to their directory")
    root_path = Path(root).resolve()
    root_path.mkdir(parents=True, exist_ok=True)
    state = root_path / STATE_FILE
    data = root_path / "data"
    if state.exists() and data.exists() and _running(root_path, bindir):
        return PostgresCluster(**json.loads(state.read_text()))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise DeeplimitError("running as root but there is no 'postgres' user to run the server as; "
                                 "create it (useradd postgres) or run as an ordinary user") from None
        # The server user owns the cluster directory and must reach it through every parent.
        os.chown(root_path, pw.pw_uid, pw.pw_gid)
        probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(root_path)]
                               if shutil.which("runuser") else ["true"], capture_output=True)
        if probe.returncode != 0:
            raise DeeplimitError(f"the postgres user cannot reach {root_path} (a parent directory is "
                                 "private, e.g. mode 700); choose a directory under /tmp or /var/tmp, or "
                                 "chmod o+x the parents")
    if not (data / "PG_VERSION").exists():
        _run(_as_db_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8"]), "initdb", timeout=timeout)
    for attempt in range(3):
        p = port or _free_port()
        opts = f"-p {p} -k {root_path} -c listen_addresses=127.0.0.1 -c max_connections=100"
        cmd = _as_db_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                           str(root_path / "server.log"), "-w", "-t", str(int(timeout)), "start"])
        try:
            _run(cmd, "pg_ctl start", timeout=timeout + 5)
            break
        except DeeplimitError:
            # Another process may have taken the port between probing and binding: try a new one.
            if port is not None or attempt == 2:
                log_tail = ""
                log = root_path / "server.log"
                if log.exists():
                    log_tail = " | ".join(log.read_text().strip().splitlines()[-3:])
                raise DeeplimitError(f"PostgreSQL did not start in {root_path} (port {p}): {log_tail}; see "
                                     f"{log}") from None
            time.sleep(0.2)
    _create_database(bindir, p, database)
    cluster = PostgresCluster(root=str(root_path), port=p, database=database, bindir=str(bindir),
                              url=f"postgresql+psycopg2://postgres@127.0.0.1:{p}/{database}")
    state.write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def _create_database(bindir: Path, port: int, database: str) -> None:
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc"]
    exists = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{database}'", "postgres"],
                  "psql (database check)")
    if exists.strip() != "1":
        _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database],
             f"createdb {database}")


def stop_cluster(root: str | os.PathLike[str], *, remove: bool = False) -> None:
    """Stop the cluster started in ``root`` (and delete its files if ``remove``)."""
    root_path = Path(root).resolve()
    state = root_path / STATE_FILE
    if not state.exists():
        raise DeeplimitError(f"no cluster state in {root_path} ({STATE_FILE} missing); was it started with "
                             "`deeplimit sweep postgres start --dir DIR`?")
    cluster = PostgresCluster(**json.loads(state.read_text()))
    if _running(root_path, Path(cluster.bindir)):
        cluster.stop()
    if remove:
        shutil.rmtree(root_path, ignore_errors=True)
