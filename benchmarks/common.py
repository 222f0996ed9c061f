"""Shared helpers for benchmarks: single-thread timing with medians, ratios, JSON records.

Every benchmark module ``benchmarks/bench_*.py`` defines ``NAME`` and ``run(quick: bool) -> dict``; the
record it returns is printed and written to ``benchmarks/results/<NAME>.json`` by the runner
(``python -m benchmarks NAME`` or ``--all``). Peers run side by side in the same process, so ratios are
comparable even on a noisy 2-core machine.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def setup_threads() -> None:
    # Two OpenMP threads on the target VM are erratic (ecosystem spec §7): measure on one, for torch and for
    # NumPy's OpenBLAS alike (the SDE solver's GEMMs run there on CPU).
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        pass


def time_call(fn: Callable[[], object], *, repeats: int = 7, number: int = 1, warmup: int = 1) -> dict:
    """Median (and spread) of ``repeats`` windows of ``number`` calls, in seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "repeats": repeats,
        "number": number,
    }


def interleaved(fns: dict[str, Callable[[], object]], *, repeats: int = 7, number: int = 1,
                warmup: int = 1) -> dict[str, dict]:
    """Time several peers in interleaved rounds so that machine noise hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[k].append((time.perf_counter() - t0) / number)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "repeats": repeats,
                "number": number, "samples_s": v} for k, v in samples.items()}


def paired_ratio(times: dict[str, dict], num: str, den: str) -> float:
    """Median over rounds of num/den timed in the same round: machine drift cancels within a pair."""
    return statistics.median(a / b for a, b in zip(times[num]["samples_s"], times[den]["samples_s"]))


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def write_record(name: str, record: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "environment": environment(), **record}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float))
    return path
