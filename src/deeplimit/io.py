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
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from deeplimit.errors import DeeplimitError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "safe_torch_load",
           "ensure_dir", "read_json"]


def ensure_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` (and parents) or raise a DeeplimitError saying why it cannot be a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DeeplimitError(f"{what} {path} is a file, not a folder; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
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
