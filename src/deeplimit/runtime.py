"""How a deeplimit process runs, decided in one place: its exit codes and its number of compute threads.

Every entry point (the ``deeplimit`` command, ``python -m deeplimit.sweep.worker``, the worker processes a
launch starts, ``deeplimit reproduce``) exits with these codes and sets its threads through
:func:`set_threads`, so a code or a thread count means the same thing whichever door a run came in by.
Light module: no torch at import (it sits below every other layer).
"""

from __future__ import annotations

import os
import sys

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "THREAD_VARS", "thread_env",
           "set_threads"]

# 0 success; 1 a failure while running (a point that failed all its retries, a crashed report section, a disk
# error); 2 bad input (a usage error or a DeeplimitError: one line naming the problem and the fix); 130
# interrupted by Ctrl-C or SIGTERM (128 + SIGINT, what a shell reports), resumable by running the same command.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# The variables OpenMP, MKL and OpenBLAS read when they load: a child process, or a library imported later,
# starts with the thread count set here.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """The environment entries that start a child process with ``threads`` compute threads."""
    return {var: str(threads) for var in THREAD_VARS}


def set_threads(threads: int | None) -> None:
    """Run this process's compute on ``threads`` threads (None or 0: leave the libraries' defaults).

    Sets, in order: the :data:`THREAD_VARS` not already set (for libraries loaded later), torch's intra-op
    threads if torch is loaded (call again after importing it), and NumPy's BLAS pool through threadpoolctl
    when that is installed. One thread is the fast, stable setting on a small shared machine: several
    OpenMP threads per process on two cores make timings erratic and runs slower.
    """
    if not threads:
        return
    for var, value in thread_env(threads).items():
        os.environ.setdefault(var, value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it NumPy's BLAS keeps the count it read from the environment
        return
    threadpool_limits(limits=threads, user_api="blas")
