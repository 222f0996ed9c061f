"""Run a test's worker on two gloo ranks and turn what the ranks left behind into one pass or one failure."""

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp


def spawn_ranks(worker: Callable, args: tuple, out: Path, world: int = 2) -> None:
    """``mp.spawn(worker, args=args, nprocs=world)`` with forked ranks; each rank writes ``out/ok<rank>`` when its
    checks passed or ``out/error<rank>`` with its traceback. A rank's traceback fails the test with that traceback.

    Forked, not spawned: a spawned rank imports torch, transformers and the test module again (~7 s of CPU each on
    the 2-core target, more than the checks themselves). Forking is safe here: CPU only, and the test process runs
    one intra-op thread (tests/conftest.py), so no OpenMP pool is copied half-alive into the ranks."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    sys.path.insert(0, str(Path(__file__).parent))  # the spawned ranks import the test module by name
    expected = [f"ok{r}" for r in range(world)]
    try:
        mp.start_processes(worker, args=args, nprocs=world, join=True, start_method="fork")
    except Exception as exc:
        errors = sorted(out.glob("error*"))
        if errors:
            raise AssertionError(errors[0].read_text()) from None
        if sorted(p.name for p in out.glob("ok*")) != expected:
            raise AssertionError("a worker died without a traceback before its checks passed") from None
        # Seen once on a loaded 2-core machine: every rank passed its checks, then one died in C++ ("terminate
        # called without an active exception") while gloo shut down. That is torch's teardown, not the test.
        warnings.warn(f"every rank passed its checks; a worker then died in the process group's teardown: {exc}",
                      RuntimeWarning, stacklevel=3)
    assert sorted(p.name for p in out.glob("ok*")) == expected
