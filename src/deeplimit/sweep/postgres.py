"""A private PostgreSQL server on 127.0.0.1 for sweeps with many workers, and for tests (ecosystem spec §7).

``start_cluster(dir)`` initialises a cluster (``initdb``) with password login (SCRAM-SHA-256) for the superuser
``postgres`` and a generated password, starts it (``pg_ctl``) on a free loopback port, creates a database and
returns a :class:`PostgresCluster`. It never touches the system cluster.

Layout of ``dir`` (which must be new, empty, or a cluster made by this function; it is never handed to another
user)::

    cluster.json   port, database, server binaries (no secret)
    password       the generated password             (mode 0600)
    storage.url    the full storage URL, with password (mode 0600): export DEEPLIMIT_STORAGE_URL="$(cat …)"
    pg/            owned by the server user (mode 0700): data/, server.log, the server's socket

PostgreSQL refuses to run as root, so as root the server binaries run as the ``postgres`` user and only
``dir/pg`` is given to that user. Every login, local or TCP, needs the password: other local users cannot
connect. Listening on 127.0.0.1 only: for workers on other machines an administrator sets up PostgreSQL
(``listen_addresses``, ``pg_hba.conf``, TLS) and you pass that URL (see docs/cluster.md).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write_json, atomic_write_text, read_json

__all__ = ["PostgresCluster", "find_bindir", "start_cluster", "stop_cluster", "postgres_available"]

STATE_FILE = "cluster.json"
PASSWORD_FILE = "password"
URL_FILE = "storage.url"
SERVER_DIR = "pg"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


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
    import shlex

    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(shlex.quote(c) for c in cmd)]


def _run(cmd: list[str], what: str, timeout: float = 60, env: dict[str, str] | None = None,
         stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
    except FileNotFoundError as exc:
        raise DeeplimitError(f"{what}: {exc}; install PostgreSQL (apt-get install postgresql)") from None
    except subprocess.TimeoutExpired:
        raise DeeplimitError(f"{what} did not finish within {timeout} s; check the server log") from None
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).strip().split())
        raise DeeplimitError(f"{what} failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_secret(path: Path, text: str) -> None:
    # private=True: the temporary file is 0600 before a byte is written and is renamed into place, so the
    # password is never readable by others, not even for a moment.
    atomic_write_text(path, text, private=True)


@dataclass
class PostgresCluster:
    """A running private cluster; use as a context manager to stop it on exit.

    ``url`` (with the password) is read from ``root/storage.url``; show it only through ``redact_url``.
    """

    root: str
    port: int
    database: str
    bindir: str
    user: str = "postgres"

    @property
    def server_dir(self) -> Path:
        return Path(self.root) / SERVER_DIR

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    @property
    def url_file(self) -> Path:
        return Path(self.root) / URL_FILE

    @property
    def password(self) -> str:
        return (Path(self.root) / PASSWORD_FILE).read_text().strip()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown). The data stays: ``start_cluster`` restarts it."""
        pg_ctl = str(Path(self.bindir) / "pg_ctl")
        _run(_as_db_user([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]), "pg_ctl stop")

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _running(cluster: PostgresCluster) -> bool:
    proc = subprocess.run(_as_db_user([str(Path(cluster.bindir) / "pg_ctl"), "-D", str(cluster.data_dir),
                                       "status"]), capture_output=True, text=True)
    return proc.returncode == 0


def _load(root: Path) -> PostgresCluster | None:
    state = root / STATE_FILE
    if not state.exists():
        return None
    data = read_json(state, "cluster state")
    if not isinstance(data, dict) or "url" in data or "bindir" not in data:
        raise DeeplimitError(f"{state} was written by an older deeplimit (password-less login); stop that "
                             f"cluster, delete {root} and start a new one")
    try:
        return PostgresCluster(**data)
    except TypeError:
        raise DeeplimitError(f"{state} is not a cluster state file; delete {root} if it is yours") from None


def _check_root(root: Path) -> PostgresCluster | None:
    if root.exists() and not root.is_dir():
        raise DeeplimitError(f"--dir {root} is a file; pass a new or empty folder")
    if not root.exists():
        return None
    cluster = _load(root)
    if cluster is None and any(root.iterdir()):
        raise DeeplimitError(f"--dir {root} is not empty and holds no cluster made by deeplimit; pass a new or "
                             "empty folder (nothing in it was changed)")
    return cluster


def start_cluster(root: str | os.PathLike[str], *, port: int | None = None, database: str = "deeplimit",
                  timeout: float = 60) -> PostgresCluster:
    """Start (initialising if needed) a private cluster in ``root`` and return it.

    If ``root`` holds a cluster made by this function it is restarted (or returned as is if running).
    """
    if not isinstance(database, str) or not _NAME.match(database):
        raise DeeplimitError(f"database name {database!r} must be 1-63 letters, digits or _ and start with a letter "
                             "or _ (e.g. deeplimit)")
    if port is not None and not (isinstance(port, int) and 1024 <= port <= 65535):
        raise DeeplimitError(f"port {port!r} must be a number from 1024 to 65535 (or leave it out for a free one)")
    root_path = Path(root).resolve()
    existing = _check_root(root_path)
    bindir = find_bindir()
    if bindir is None:
        raise DeeplimitError("PostgreSQL server binaries (initdb, pg_ctl) not found; install them "
                             "(apt-get install postgresql) or set DEEPLIMIT_PG_BINDIR to their directory")
    if existing is not None:
        if existing.database != database:
            raise DeeplimitError(f"the cluster in {root_path} serves database {existing.database!r}; pass "
                                 f"--database {existing.database} or use another --dir")
        if _running(existing):
            return existing
        _start_server(existing, port or existing.port, timeout)
        return existing
    existed = root_path.exists()
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeeplimitError(f"cannot create --dir {root_path}: {exc.strerror}; pass a folder you can write "
                             "to") from None
    try:
        return _init(root_path, bindir, database, port, timeout)
    except BaseException:
        # Leave nothing half-made: a new folder goes, an empty one given to us is emptied again.
        if not existed:
            shutil.rmtree(root_path, ignore_errors=True)
        else:
            shutil.rmtree(root_path / SERVER_DIR, ignore_errors=True)
            for name in (PASSWORD_FILE, URL_FILE, STATE_FILE):
                (root_path / name).unlink(missing_ok=True)
        raise


def _server_user() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise DeeplimitError("running as root but there is no 'postgres' user to run the server as; create it "
                             "(useradd postgres) or run as an ordinary user") from None
    return pw.pw_uid, pw.pw_gid


def _init(root: Path, bindir: Path, database: str, port: int | None, timeout: float) -> PostgresCluster:
    owner = _server_user()
    server = root / SERVER_DIR
    server.mkdir(mode=0o700)
    if owner is not None:
        os.chown(server, *owner)  # only the server's own folder changes hands, never --dir
        probe = subprocess.run(_as_db_user(["test", "-w", str(server)]), capture_output=True)
        if probe.returncode != 0:
            raise DeeplimitError(f"the postgres user cannot reach {server} (a parent folder is private, e.g. mode "
                                 "700); choose a folder under /tmp or /var/tmp, or chmod o+x the parents")
    password = secrets.token_urlsafe(24).replace("-", "A").replace("_", "b")
    _write_secret(root / PASSWORD_FILE, password + "\n")
    pwfile = server / "initdb.pw"
    _write_secret(pwfile, password + "\n")
    if owner is not None:
        os.chown(pwfile, *owner)
    try:
        _run(_as_db_user([str(bindir / "initdb"), "-D", str(server / "data"), "-U", "postgres",
                          "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"]),
             "initdb", timeout=timeout)
    finally:
        pwfile.unlink(missing_ok=True)
    cluster = PostgresCluster(root=str(root), port=port or 0, database=database, bindir=str(bindir))
    _start_server(cluster, port, timeout)
    _create_database(cluster)
    _write_secret(cluster.url_file, cluster.url + "\n")
    return cluster


def _start_server(cluster: PostgresCluster, port: int | None, timeout: float) -> None:
    bindir = Path(cluster.bindir)
    log = cluster.server_dir / "server.log"
    for attempt in range(3):
        p = port or _free_port()
        opts = f"-p {p} -k {cluster.server_dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        cmd = _as_db_user([str(bindir / "pg_ctl"), "-D", str(cluster.data_dir), "-o", opts, "-l", str(log), "-w",
                           "-t", str(int(timeout)), "start"])
        try:
            _run(cmd, "pg_ctl start", timeout=timeout + 5)
            break
        except DeeplimitError:
            # Another process may have taken the port between probing and binding: try a new one.
            if port is not None or attempt == 2:
                tail = ""
                if log.exists():
                    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                raise DeeplimitError(f"PostgreSQL did not start in {cluster.root} (port {p}): {tail}; see "
                                     f"{log}") from None
            time.sleep(0.2)
    cluster.port = p
    atomic_write_json(Path(cluster.root) / STATE_FILE, asdict(cluster))
    if Path(cluster.url_file).exists():
        _write_secret(cluster.url_file, cluster.url + "\n")


def _client_env(cluster: PostgresCluster) -> dict[str, str]:
    # The password goes to the client programs through the environment, never their argument list.
    return {**os.environ, "PGPASSWORD": cluster.password, "PGCONNECT_TIMEOUT": "10"}


def _create_database(cluster: PostgresCluster) -> None:
    bindir = Path(cluster.bindir)
    conn = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", cluster.user]
    # psql quotes :'db' as a literal itself (variables are interpolated in commands read from stdin).
    exists = _run([str(bindir / "psql"), *conn, "-d", "postgres", "-tA", "-v", f"db={cluster.database}"],
                  "psql (database check)", env=_client_env(cluster),
                  stdin="SELECT 1 FROM pg_database WHERE datname = :'db';\n")
    if exists.strip() != "1":
        _run([str(bindir / "createdb"), *conn, cluster.database], f"createdb {cluster.database}",
             env=_client_env(cluster))


def stop_cluster(root: str | os.PathLike[str], *, remove: bool = False) -> None:
    """Stop the cluster started in ``root`` (and delete ``root`` if ``remove``)."""
    root_path = Path(root).resolve()
    cluster = _load(root_path) if root_path.is_dir() else None
    if cluster is None:
        raise DeeplimitError(f"no cluster in {root_path} ({STATE_FILE} missing); was it started with "
                             "`deeplimit sweep postgres start --dir DIR`?")
    if _running(cluster):
        cluster.stop()
    if remove:
        shutil.rmtree(root_path, ignore_errors=True)
