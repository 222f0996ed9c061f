"""Files that are read back: written atomically, read safely.

Every file deeplimit may read again (checkpoints, plans, sweep state, tables, reports) goes through these
helpers. A write lands in a temporary file in the same folder and is renamed over the target, so a crash, a
kill or a full disk never leaves a torn file under the real name. Checkpoints are loaded with
``torch.load(weights_only=True)``: a crafted file can hold only tensors and plain containers, never code.

Errors name the path and the fix (unwritable folder, a file where a folder should be, no space left).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

from deeplimit.errors import DeeplimitError

_TMP_SUFFIX = ".tmp"
_STALE_AFTER_S = 2.0  # a temporary file younger than this may be between its creation and its writer's lock

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "safe_torch_load",
           "ensure_dir", "read_json", "resolve_path", "remove_stale_temps", "check_fields", "JSON_TEXT"]


def resolve_path(path: str | os.PathLike[str], what: str = "path") -> Path:
    """``Path(path).resolve()``; a symlink loop (RuntimeError in Python < 3.13) or an unreadable folder on the
    way is a DeeplimitError naming the path."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:
        raise DeeplimitError(f"{what} {path} cannot be resolved ({_why(exc)}); pass a path without symbolic-link "
                             "loops") from None


def _why(exc: BaseException) -> str:
    if (isinstance(exc, RuntimeError) and "loop" in str(exc).lower()) or getattr(exc, "errno", None) == errno.ELOOP:
        return "a symbolic-link loop"
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def ensure_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` (and parents) or raise a DeeplimitError saying why it cannot be a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DeeplimitError(f"{what} {path} is a file, not a folder; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DeeplimitError(f"cannot create {what} {path}: a symbolic-link loop is on its path; pass "
                                 "another folder") from None
        raise DeeplimitError(f"cannot create {what} {path}: {exc.strerror or exc}; pass a folder you can "
                             "write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DeeplimitError(f"{what} {path} is not writable; pass a folder you can write to")
    return path


def nearest_existing_folder(path: str | os.PathLike[str], what: str = "output") -> Path:
    """The nearest existing ancestor of ``path`` (which does not exist yet), checked to be a folder: a path whose
    folders would have to be created inside a file is refused before anything is written."""
    parent = Path(path).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DeeplimitError(f"{what} {path} cannot be created: {parent} is a file, not a folder; pass a path in "
                             "a folder")
    return parent


def check_folder(path: str | Path, what: str = "output folder") -> Path:
    """Raise a DeeplimitError unless ``path`` is, or can be created as, a writable folder — without creating
    it (a run that is refused later, e.g. for bad data, leaves nothing behind). The nearest existing ancestor
    is probed by creating and removing a temporary folder in it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DeeplimitError(f"{what} {p} is a file, not a folder; pass a folder path")
    probe_in = p if p.exists() else nearest_existing_folder(p, what)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".deeplimit-probe-", dir=probe_in))
    except OSError as exc:
        raise DeeplimitError(f"cannot create {what} {p}: {exc.strerror or exc} in {probe_in}; pass a folder you "
                             "can write to") from None
    return p


def _os_error(path: Path, exc: OSError) -> DeeplimitError:
    if exc.errno == errno.ENOSPC:
        return DeeplimitError(f"no space left on the device while writing {path}; free disk space and re-run "
                              "(nothing was overwritten)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DeeplimitError(f"cannot write {path}: permission denied; pass a folder you can write to")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return DeeplimitError(f"cannot write {path}: a file stands where a folder should be (or the reverse); "
                              "choose another path")
    return DeeplimitError(f"cannot write {path}: {exc.strerror or exc}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *, private: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it is fsync'ed and renamed over ``path``.

    On any exception the temporary file is removed and ``path`` keeps its previous content. The file gets
    the permissions a plain ``open`` would give (0666 minus the umask), so folders shared by a group of
    sweep workers stay readable; ``private=True`` keeps it owner-only (0600), for secrets.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write supports mode 'w' or 'wb'")
    path = Path(path)
    ensure_dir(path.parent, "folder")
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            # Held until the rename is done (or this process dies): remove_stale_temps tells a live writer's
            # temporary file from one a killed process left behind by trying to take this lock.
            with contextlib.suppress(OSError):  # a filesystem without locks: its temporary files are never cleaned
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _os_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left beside it; return what was deleted.

    :func:`atomic_write` writes ``.NAME.XXXX.tmp`` and renames it over ``NAME``; a SIGKILL (or a power cut)
    in between leaves the temporary file. Its writer held an exclusive ``flock`` on it, which the kernel
    released when the process died: a file whose lock can be taken has no live writer and is removed; one
    still being written by another process is left alone. Called before every atomic write of ``path`` (the
    next checkpoint of a resumed run cleans up after the killed one) and usable on its own when a run starts.
    """
    path = Path(path)
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*{_TMP_SUFFIX}"))
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or a symbolic link: not ours
        try:
            # A file created this instant may not be locked yet by its writer: leave young files alone.
            young = now - os.fstat(fd).st_mtime < _STALE_AFTER_S
        except OSError:
            young = True
        if young:
            os.close(fd)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str, *, private: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (owner-only if ``private``)."""
    with atomic_write(path, "w", private=private) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **dumps_kw: Any) -> Path:
    """Serialise ``obj`` first (a non-JSON value fails before anything is written), then write atomically."""
    dumps_kw.setdefault("indent", 1)
    return atomic_write_text(path, json.dumps(obj, **dumps_kw))


def atomic_save(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a binary temporary file and rename it over ``path`` (e.g. ``df.to_parquet``)."""
    with atomic_write(path, "wb") as fh:
        write(fh)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically."""
    import torch

    return atomic_save(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Parse a JSON file; a missing, empty, truncated or binary file is a DeeplimitError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DeeplimitError(f"{what} {path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeeplimitError(f"{what} {path} is not valid JSON ({exc.__class__.__name__}: {exc}); it is "
                             "truncated, empty or not a JSON file — delete it or restore it from a copy") from None


JSON_TEXT = "JSON text"  # a field of a check_fields schema that must be a string holding JSON


def check_fields(obj: Any, schema: Mapping[str, Any], path: str | os.PathLike[str], what: str = "checkpoint") -> None:
    """Raise a DeeplimitError unless ``obj`` has every field of ``schema`` with the right type.

    ``schema`` maps a field to a type (or tuple of types), to :data:`JSON_TEXT`, or to a nested schema (a
    mapping). A file that passed every other check (e.g. the right fingerprint) but lost or changed a field
    was edited or damaged: the error names the first bad field, not a ``KeyError`` deep in the caller.
    """
    def bad(name: str, why: str) -> DeeplimitError:
        return DeeplimitError(f"{what} {path} has a damaged field {name!r} ({why}); it was edited or written by "
                              "another tool — delete it (or start over with --fresh / fresh=True)")

    def walk(value: Any, spec: Mapping[str, Any], prefix: str) -> None:
        if not isinstance(value, Mapping):
            raise bad(prefix or "the whole file", f"a {type(value).__name__}, not a mapping")
        for key, kind in spec.items():
            name = f"{prefix}.{key}" if prefix else key
            if key not in value:
                raise bad(name, "missing")
            field = value[key]
            if isinstance(kind, Mapping):
                walk(field, kind, name)
            elif kind == JSON_TEXT:
                try:
                    json.loads(field)
                except (TypeError, ValueError):
                    raise bad(name, "not JSON text") from None
            elif not isinstance(field, kind) or (isinstance(field, bool) and bool not in _as_tuple(kind)):
                raise bad(name, f"a {type(field).__name__}")

    walk(obj, schema, "")


def _as_tuple(kind: Any) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def safe_torch_load(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a torn or foreign file is a DeeplimitError.

    ``weights_only=True`` refuses pickled code: a file written by someone else can only contain tensors,
    numbers, strings and containers of those.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise DeeplimitError(f"{what} {path} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DeeplimitError(f"{what} {path} holds objects other than tensors and plain data, so it was not "
                             f"loaded (weights_only=True refuses code): {str(exc).splitlines()[0]}. Delete it if "
                             "you did not write it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DeeplimitError(f"{what} {path} cannot be read ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'empty or truncated'}); it is truncated "
                             "or not a torch checkpoint — delete it to start over") from None
