"""One ``deeplimit reproduce`` at a time per output folder: a lock file that a second run finds taken.

Two runs writing one tier's folder would overwrite each other's summaries, figures and report; the second one
stops at once with a one-line error instead. The lock is an advisory ``flock`` on ``<folder>/.reproduce.lock``:
the kernel drops it when the holding process exits, however it exits, so a killed run never leaves a stale
lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from deeplimit.errors import DeeplimitError

LOCK_NAME = ".reproduce.lock"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of ``folder`` for the block; :class:`DeeplimitError` at once if another run holds it."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        raise DeeplimitError(f"cannot open the lock file {path} ({exc.strerror}); check the permissions of "
                             f"{folder} or choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process"
            raise DeeplimitError(f"another deeplimit reproduce ({holder}) is writing into {Path(folder)}; wait for "
                                 "it to finish (or stop it), or give this run another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
