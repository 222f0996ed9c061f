"""Storage adapters: open an Optuna storage from a URL, through Optuna's public API only.

``sqlite:///PATH`` (one machine), ``postgresql+psycopg2://…`` (several machines) or ``journal:PATH`` (a
journal file, e.g. on a cluster's shared disk). Errors name the problem and the fix (server down, no space
left, no permission, …) and never show a password: every URL shown goes through
:func:`deeplimit.secrets.redact_url`.

SQLite gets two settings through SQLAlchemy's public ``creator`` hook, passed in Optuna's ``engine_kwargs``:

* Every transaction starts with ``BEGIN IMMEDIATE``. Python's sqlite3 driver runs a ``SELECT`` outside any
  transaction, so Optuna's pop of a waiting trial (read WAITING, then write RUNNING) is not atomic on
  SQLite: two workers could pop the same trial and run one grid point twice at once. An immediate
  transaction takes the write lock first and makes the pop atomic, as ``SELECT … FOR UPDATE`` does on
  PostgreSQL.
* Write-ahead log with ``synchronous=NORMAL``: in the default rollback-journal mode every commit fsyncs
  (≈ 8 ms here) and a trial makes several commits. WAL stays consistent when a process is killed (only an OS
  crash can drop the last commits); it needs a local filesystem, as SQLite's locking does: use PostgreSQL
  or a journal file across machines.

Creating the schema of a new SQLite file is serialised by a lock file beside it, so two ``create`` calls
racing on a new file both succeed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import inspect
import json
import os
import shutil
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage

from deeplimit.errors import DeeplimitError
from deeplimit.io import resolve_path
from deeplimit.secrets import STORAGE_ENV, redact_text, redact_url

__all__ = ["default_storage", "resolve_storage", "open_storage", "storage_error", "has_heartbeats",
           "creation_lock", "check_url", "STORAGE_ENV"]

SCHEMES = "sqlite:///PATH, postgresql+psycopg2://USER@HOST:PORT/DB or journal:PATH"
_JOURNAL_CODE = "optuna/storages/journal/"
_FULL_BELOW_BYTES = 1 << 20  # an I/O error with less than this free is a full disk (SQLite's WAL grows by pages)


def default_storage(run_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<run_dir>/sweep.db`` with an absolute path (so workers started elsewhere agree)."""
    return f"sqlite:///{resolve_path(run_dir, 'run folder') / 'sweep.db'}"


def resolve_storage(storage: str | None, run_dir: str | os.PathLike[str] | None) -> str:
    """The storage URL to use: ``storage`` if given, else ``$DEEPLIMIT_STORAGE_URL``, else ``run_dir``'s SQLite.

    The environment variable lets a URL with a password reach workers without appearing on a command line.
    """
    if storage:
        return storage
    env = os.environ.get(STORAGE_ENV)
    if env:
        return env
    if run_dir:
        return default_storage(run_dir)
    raise DeeplimitError(f"no storage given: pass --storage URL, set {STORAGE_ENV}, or pass --run-dir DIR "
                         "(whose sweep.db is the default storage)")


# ------------------------------------------------------------------------------------------------
# SQLite: immediate transactions and WAL through the public `creator` hook
# ------------------------------------------------------------------------------------------------
class _ImmediateCursor(sqlite3.Cursor):
    """Opens ``BEGIN IMMEDIATE`` before the first statement of a transaction (the connection autocommits
    otherwise, so a transaction is exactly what SQLAlchemy brackets with commit/rollback)."""

    def _begin(self) -> None:
        conn = self.connection
        if conn.owner.immediate and not conn.in_transaction:
            super().execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        self._begin()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any, /) -> sqlite3.Cursor:  # type: ignore[override]
        self._begin()
        return super().executemany(sql, seq)


class _ImmediateConnection(sqlite3.Connection):
    owner: _SqliteConnect

    def cursor(self, factory: Any = _ImmediateCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


class _SqliteConnect:
    """``creator`` for SQLAlchemy: a connection in WAL mode whose transactions are immediate.

    Immediate transactions are switched on (``immediate = True``) once Optuna has created or checked the
    schema: its version check holds one connection open while it reads through another, which would wait
    on itself for the write lock. A class rather than a closure so that the storage stays picklable.
    """

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path, self.timeout = path, timeout
        self.immediate = False

    def __getstate__(self) -> dict[str, Any]:
        # An unpickled storage re-checks the schema first (see above); only open_storage switches this on.
        return {"path": self.path, "timeout": self.timeout, "immediate": False}

    def __call__(self) -> sqlite3.Connection:
        # Two workers write one file: wait for the lock instead of failing after SQLite's 5 s default.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False,
                               factory=_ImmediateConnection)
        plain = sqlite3.Cursor(conn)  # PRAGMAs must run outside a transaction
        plain.execute("PRAGMA journal_mode=WAL")
        plain.execute("PRAGMA synchronous=NORMAL")
        plain.close()
        conn.owner = self
        return conn


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Serialise schema and study creation on one SQLite file (a no-op for other storages).

    The lock file ``PATH.lock`` sits beside the database; SQLite alone lets two processes that create a new
    file at once both try to create the tables, and one fails.
    """
    if not url.startswith("sqlite:///"):
        yield
        return
    try:
        lock = _file_lock(Path(_sqlite_path(url) + ".lock"))
        lock.__enter__()
    except OSError as exc:
        raise storage_error(exc, url) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _sqlite_path(url: str) -> str:
    return url.split(":///", 1)[-1] if ":///" in url else ""


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def _in_journal_code(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if _JOURNAL_CODE in tb.tb_frame.f_code.co_filename.replace(os.sep, "/"):
            return True
        tb = tb.tb_next
    return False


def _journal_line_problem(path: Path) -> str:
    """Which line of a journal file Optuna cannot read, in words ("" if every line is a plausible entry)."""
    newline = b"\n"
    try:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    entry = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError:
                    return f"line {number} is binary, not text"
                except json.JSONDecodeError:
                    return f"line {number} is {'not JSON' if line.endswith(newline) else 'cut off'}"
                code = entry.get("op_code") if isinstance(entry, dict) else None
                if not isinstance(code, int) or isinstance(code, bool):
                    return f"line {number} is not an Optuna journal entry"
                if not line.endswith(newline):
                    return f"line {number} is cut off"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    return "an entry names an operation this Optuna does not know"


def journal_damage(exc: BaseException, url: str) -> DeeplimitError | None:
    """A one-line error for a journal file Optuna cannot replay (binary, cut-off or unknown lines), else None.

    Optuna reads the whole journal on every access and fails with UnicodeDecodeError, JSONDecodeError,
    ``ValueError('Invalid log format.')`` or ``AssertionError('Should not reach.')``, naming neither the file
    nor the line.
    """
    if not isinstance(url, str) or not url.startswith("journal:"):
        return None
    chain = _chain(exc)
    if not any(isinstance(e, UnicodeDecodeError | json.JSONDecodeError) or
               (_in_journal_code(e) and not isinstance(e, OSError)) for e in chain):
        return None
    path = Path(url[len("journal:"):])
    root = chain[-1]
    why = redact_text(f"{type(root).__name__}: {(str(root).strip().splitlines() or [''])[0]}"[:160], url)
    return DeeplimitError(f"journal storage {redact_url(str(path))} is damaged ({_journal_line_problem(path)}; {why}): "
                          "it was cut off or edited by something other than Optuna; restore it from a copy, or "
                          "move it aside and create the sweep again with a new journal file")


def _free_space_left(url: str) -> str | None:
    """"N KiB free in FOLDER" when the folder of an SQLite storage is (nearly) full, else None."""
    db = _sqlite_path(url) if isinstance(url, str) and url.startswith("sqlite:///") else ""
    if not db:
        return None
    try:
        free = shutil.disk_usage(Path(db).parent).free
    except OSError:
        return None
    return f"{free // 1024} KiB free in {Path(db).parent}" if free < _FULL_BELOW_BYTES else None


def storage_error(exc: BaseException, url: str, *, opening: bool = True) -> DeeplimitError:
    """A one-line :class:`DeeplimitError` for a storage failure, naming the cause and the fix.

    The whole exception chain is read (Optuna wraps database errors in its own), so a full disk says
    "no space left" whatever layer noticed it. ``opening``: the storage was being opened (a bad URL is then a
    likely cause) rather than used.
    """
    shown = redact_url(url)
    chain = _chain(exc)
    # The most specific message is usually the innermost one (the database driver's).
    text = " | ".join(str(e).strip() for e in reversed(chain) if str(e).strip())
    root = chain[-1]
    first = redact_text((str(root).strip().splitlines() or [type(root).__name__])[0], url)
    low = text.lower()
    err = next((getattr(e, "errno", None) for e in chain if getattr(e, "errno", None)), None)
    damaged = journal_damage(exc, url)
    exc = root
    if err == errno.ENOSPC or "disk is full" in low or "no space left" in low or "could not extend file" in low:
        return DeeplimitError(f"storage {shown!r}: no space left on the device ({first}); free disk space and "
                              "run the same command again (finished points are kept)")
    if "readonly database" in low or "read-only" in low or err in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DeeplimitError(f"storage {shown!r} is not writable ({first}); fix the file's permissions or "
                              "choose a folder you can write to")
    if damaged is not None:
        return damaged
    full = _free_space_left(url) if "disk i/o error" in low else None
    if full is not None:
        # SQLite reports a full disk as a plain I/O error when it cannot create its shared-memory or WAL file.
        return DeeplimitError(f"storage {shown!r}: no space left on the device ({full}; SQLite: {first}); free disk "
                              "space and run the same command again (finished points are kept)")
    if "disk i/o error" in low:
        return DeeplimitError(f"storage {shown!r}: disk I/O error ({first}); check the disk (and that the file "
                              "is on a local filesystem: SQLite cannot lock over NFS; use PostgreSQL or "
                              "journal:PATH there)")
    if "file is not a database" in low or "file is encrypted" in low:
        return DeeplimitError(f"storage {shown!r} is not an SQLite database ({first}); point --storage at "
                              "another file or delete this one if it is yours")
    if "unable to open database file" in low:
        return DeeplimitError(f"cannot open storage {shown!r} ({first}); check that its folder exists and is "
                              "writable")
    if "database is locked" in low:
        return DeeplimitError(f"storage {shown!r} stayed locked by another process for over a minute; stop "
                              "stray workers, or use PostgreSQL for many workers")
    if "password authentication failed" in low or "no password supplied" in low:
        return DeeplimitError(f"storage {shown!r}: login refused ({first}); check the user and password (pass "
                              f"the URL through ${STORAGE_ENV} rather than the command line)")
    if url.startswith("postgresql"):
        return DeeplimitError(f"cannot use storage {shown!r}: {first}; start the server (e.g. `deeplimit sweep "
                              "postgres start --dir DIR`) and check host, port, user and database name")
    if isinstance(exc, ModuleNotFoundError):
        return DeeplimitError(f"storage {shown!r} needs the database driver {exc.name!r}; install it (for "
                              "PostgreSQL: pip install psycopg2-binary)")
    if not opening:
        return DeeplimitError(f"storage {shown!r} failed: {first}; check the database (disk, server) and run the "
                              "same command again (finished points are kept)")
    return DeeplimitError(f"cannot use storage {shown!r}: {first}; check the URL ({SCHEMES})")


def check_url(url: str) -> None:
    """Refuse a URL that cannot work (wrong scheme, missing folder, in-memory SQLite) before connecting.

    The message shows the URL (and any folder taken from it) with its password hidden, however malformed.
    """
    try:
        _check_url(url)
    except DeeplimitError as exc:
        raise DeeplimitError(redact_text(str(exc), url)) from None


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not url.strip():
        raise DeeplimitError(f"storage URL {url!r} is empty; use {SCHEMES}")
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        if not str(path) or str(path) == ".":
            raise DeeplimitError(f"journal storage {url!r} names no file; use journal:/shared/disk/sweep.journal")
        if path.is_dir():
            raise DeeplimitError(f"journal storage {url!r} is a folder; name a file inside it")
        if not path.parent.is_dir():
            raise DeeplimitError(f"journal storage {url!r}: folder {path.parent} does not exist; create it")
        return
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if "://" not in url or scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise DeeplimitError(f"storage {redact_url(url)!r} is not a storage URL; use {SCHEMES}")
    if scheme == "postgres":
        raise DeeplimitError(f"storage {redact_url(url)!r}: SQLAlchemy spells the scheme postgresql:// "
                             "(e.g. postgresql+psycopg2://USER@HOST:PORT/DB)")
    if scheme == "sqlite":
        db = _sqlite_path(url)
        if not db or db == ":memory:" or not url.startswith("sqlite:///"):
            raise DeeplimitError(f"SQLite storage {url!r} needs a file that every worker can open: "
                                 "sqlite:///ABSOLUTE/PATH/sweep.db")
        if Path(db).is_dir():
            raise DeeplimitError(f"SQLite storage {url!r} is a folder; name a file inside it, e.g. "
                                 f"sqlite:///{Path(db) / 'sweep.db'}")
        if not Path(db).parent.is_dir():
            raise DeeplimitError(f"SQLite storage {url!r}: folder {Path(db).parent} does not exist; create it "
                                 "or pass --run-dir so the default storage is created there")


# ------------------------------------------------------------------------------------------------
# Opening
# ------------------------------------------------------------------------------------------------
def _stale_callback_kwarg() -> str:
    # Optuna 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback (the old name warns from
    # 4.9 and goes in 6.0); both are public constructor arguments of RDBStorage.
    params = inspect.signature(RDBStorage.__init__).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"


def _journal(path: str) -> BaseStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # experimental before Optuna 4
        return _journal_storage(path)


def _journal_storage(path: str) -> BaseStorage:
    try:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(path))
    except ImportError:  # Optuna < 4.0 names the file backend JournalFileStorage
        from optuna.storages import JournalFileStorage, JournalStorage  # type: ignore[attr-defined]

        return JournalStorage(JournalFileStorage(path))


# Storages whose schema this process has already checked against the running Optuna (see _schema_key).
_SCHEMA_CHECKED: set[tuple[Any, ...]] = set()


def _schema_key(url: str) -> tuple[Any, ...] | None:
    """What a passed schema check holds for, for the rest of this process: the URL, and for a SQLite file the
    file itself (device and inode), so a database deleted and created again at the same path is checked again.
    None for a SQLite file that does not exist yet.

    Optuna's check reads every Alembic migration script of the installed Optuna (~40 ms per open, nine tenths
    of opening a storage); a sweep runner opens one storage many times (``deeplimit reproduce`` ~70 times), and
    neither the installed Optuna nor a checked storage's schema changes under a running process."""
    if not url.startswith("sqlite:///"):
        return (url,)
    try:
        st = os.stat(_sqlite_path(url))
    except OSError:
        return None
    return (url, st.st_dev, st.st_ino)


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback: Callable[[optuna.Study, Any], None] | None = None,
                 connect_timeout: int = 5, create: bool = True) -> BaseStorage:
    """Open an Optuna storage from a URL, failing fast with a DeeplimitError if it is unusable.

    With ``heartbeat_interval`` (seconds, ≥ 1) an RDB storage records heartbeats of running trials; a trial
    silent for ``grace_period`` seconds (default 2× interval) is failed by the next worker that looks, and
    ``stale_trial_callback(study, trial)`` queues its retry. Journal storages have no heartbeats in Optuna;
    the runner's own liveness stamps cover them (see :mod:`deeplimit.sweep.worker`).
    With ``create=False`` a missing SQLite or journal file is an error (reading a sweep must not create an
    empty database as a side effect).
    """
    if isinstance(url, str) and not create:
        local = (_sqlite_path(url) if url.startswith("sqlite:///") else
                 url.removeprefix("journal:") if url.startswith("journal:") else "")
        if local and local != ":memory:" and not Path(local).is_file():
            raise DeeplimitError(f"no sweep storage at {redact_text(local, url)}; check --run-dir / --storage, or "
                                 "create the sweep first (deeplimit sweep create)")
    check_url(url)
    if url.startswith("journal:"):
        try:
            return _journal(url[len("journal:"):])
        except Exception as exc:  # unreadable file, or lines Optuna cannot replay (see journal_damage)
            raise storage_error(exc, url) from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["creator"] = _SqliteConnect(_sqlite_path(url))
    elif url.startswith("postgresql"):
        # Fail in seconds, not minutes, when the server is down; pre-ping survives server restarts.
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout}
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat_interval is not None:
        if isinstance(heartbeat_interval, bool) or not isinstance(heartbeat_interval, int) or heartbeat_interval < 1:
            raise DeeplimitError(f"heartbeat interval must be a whole number of seconds ≥ 1, got "
                                 f"{heartbeat_interval!r}; without heartbeats a killed worker's point would "
                                 "stay 'running' for ever")
        kwargs["heartbeat_interval"] = heartbeat_interval
        kwargs["grace_period"] = grace_period
        if stale_trial_callback is not None:
            kwargs[_stale_callback_kwarg()] = stale_trial_callback
    last: Exception | None = None
    for attempt in range(3):
        try:
            with creation_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                key = _schema_key(url)
                rdb = RDBStorage(url, engine_kwargs=engine_kwargs,
                                 skip_compatibility_check=key in _SCHEMA_CHECKED, **kwargs)
            if "creator" in engine_kwargs:
                engine_kwargs["creator"].immediate = True
            if (key := key or _schema_key(url)) is not None:  # a new SQLite file exists only now
                _SCHEMA_CHECKED.add(key)
            return rdb
        except ModuleNotFoundError as exc:
            raise storage_error(exc, url) from None
        except OSError as exc:
            raise storage_error(exc, url) from None
        except Exception as exc:  # SQLAlchemy raises OperationalError, ArgumentError, … depending on the URL
            last = exc
            # Two processes creating the schema of a new PostgreSQL database at once: one loses the race
            # with an integrity error; the tables exist by the time it retries.
            if "already exists" in str(exc) or "duplicate key" in str(exc) or "UNIQUE constraint" in str(exc):
                time.sleep(0.2 * (attempt + 1))
                continue
            break
    assert last is not None
    raise storage_error(last, url) from None


def has_heartbeats(storage: BaseStorage, heartbeat_interval: int | None) -> bool:
    """Whether Optuna's own heartbeats watch running trials of ``storage`` (RDB with an interval)."""
    return isinstance(storage, RDBStorage) and heartbeat_interval is not None
