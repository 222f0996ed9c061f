"""The one timing method of every benchmark, and its JSON records.

Every benchmark module ``benchmarks/bench_*.py`` defines ``NAME`` and ``run(quick: bool) -> dict``; the record
it returns is printed and written to ``benchmarks/results/<NAME>.json`` (or ``--out DIR``) by the runner
(``python -m benchmarks NAME`` or ``--all``), with the commit, the date, the environment and :data:`METHOD`.

The method (:func:`paired_rounds`): peers run side by side in one process on one thread, in rounds; within a
round every peer runs ``number`` calls, in an order that is reversed every other round (A B C, C B A, …) so
that no peer always runs first or last; each round's time is kept on two clocks — this thread's CPU time
(``time.thread_time``: with one intra-op thread the compute itself, leaving out time the scheduler gives other
processes on a shared machine) and the wall clock. A ratio of two peers is the median over rounds of their
per-round ratio (:func:`paired_ratio`; drift of the machine between rounds cancels within a pair), on the CPU
clock unless a record says otherwise. Peers that compute the same function have their outputs asserted equal
(:func:`assert_same_outputs`) before they are timed.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CLOCKS = ("cpu", "wall")
METHOD = ("one thread; peers in rounds, order reversed every other round; per round, each peer's time per call "
          "on this thread's CPU clock and on the wall clock; ratio = median over rounds of the paired per-round "
          "ratio (CPU clock); outputs of peers computing the same function asserted equal before timing")


def setup_threads() -> None:
    """One thread for torch and for NumPy's BLAS: two OpenMP threads on a shared 2-core machine are erratic."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        pass


def paired_rounds(fns: Mapping[str, Callable[[], object]], *, repeats: int, number: int = 1,
                  warmup: int = 1) -> dict[str, dict]:
    """Time peers in ``repeats`` rounds of ``number`` calls each, order reversed every other round.

    Returns ``{peer: {"cpu_s": [...], "wall_s": [...], "median_s", "wall_median_s", "min_s", "repeats",
    "number"}}``: per-round seconds per call on each clock; ``median_s`` and ``min_s`` are on the CPU clock.
    """
    if repeats < 1 or number < 1:
        raise ValueError(f"repeats and number must be >= 1, got {repeats}, {number}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    samples = {k: {"cpu_s": [], "wall_s": []} for k in names}
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            fn = fns[k]
            w0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(number):
                fn()
            samples[k]["cpu_s"].append((time.thread_time() - c0) / number)
            samples[k]["wall_s"].append((time.perf_counter() - w0) / number)
    return {k: {**v, "median_s": statistics.median(v["cpu_s"]), "wall_median_s": statistics.median(v["wall_s"]),
                "min_s": min(v["cpu_s"]), "repeats": repeats, "number": number} for k, v in samples.items()}


def paired_ratio(times: Mapping[str, dict], num: str, den: str, clock: str = "cpu") -> float:
    """Median over rounds of ``num``/``den`` timed in the same round (``clock``: "cpu" or "wall")."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    key = f"{clock}_s"
    return statistics.median(a / b for a, b in zip(times[num][key], times[den][key], strict=True))


def assert_same_outputs(outputs: Mapping[str, object], *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Raise ``AssertionError`` unless every peer's output (a tensor or a float) equals the first one's."""
    (first, ref), *rest = outputs.items()
    for name, out in rest:
        a, b = torch.as_tensor(out), torch.as_tensor(ref)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol):
            diff = (a.double() - b.double()).abs().max().item() if a.shape == b.shape else "shape"
            raise AssertionError(f"peer {name!r} computes a different output than {first!r} (max |diff| {diff}, "
                                 f"rtol {rtol}, atol {atol})")


def rounds_summary(times: Mapping[str, dict]) -> dict[str, dict]:
    """The per-peer medians of a :func:`paired_rounds` result in milliseconds, for a record's summary."""
    return {k: {"cpu_ms": round(1e3 * v["median_s"], 3), "wall_ms": round(1e3 * v["wall_median_s"], 3)}
            for k, v in times.items()}


def commit() -> str:
    """The checked-out commit (short hash), with ``+dirty`` when tracked code under src/ or benchmarks/ differs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        # the records themselves do not make the code dirty (a run of several benchmarks writes them one by one)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks",
                                ":(exclude)benchmarks/results"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def cpu() -> dict:
    """The CPU's model name and torch's kernel level, plus whether it has native bfloat16 matmuls.

    Records from two machines are not comparable without it: on a CPU with no AVX-512 BF16 (or AMX) a bfloat16
    matmul — torch's Muon runs Newton–Schulz in bfloat16 — is ~50× slower than a float32 one, so a Muon step at
    width 256 costs 2.2 s instead of 43 ms (measured on an AVX2-only AMD EPYC, 2026-12-07).
    """
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {"model": model, "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_matmul": bool(flags & {"avx512_bf16", "amx_bf16"}) if flags else None}


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": cpu(),
    }


def write_record(name: str, record: dict, out_dir: Path | None = None, *, started_at: str | None = None) -> Path:
    """Write ``record`` to ``out_dir/<name>.json`` (default ``benchmarks/results``) with commit, date, method.

    ``started_at``: the commit read when the run began (``python -m benchmarks`` passes it), so a checkout that
    moves during a long run does not label the record with code it did not run.
    """
    out_dir = RESULTS if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "commit": started_at or commit(),
              "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "method": METHOD, "environment": environment(), **record}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return path
