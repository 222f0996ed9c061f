"""Shaped attention, forward + backward: fused vs PyTorch SDPA alone vs the materialising reference.

Setting: causal self-attention (decoder), batch 1, 4 heads of dimension 64, float32, one thread. The goal
is fused ≤ 1.10× SDPA at every length: the shaping adds ``γ1·V − γ2·(running mean of V)``, O(m·d) work next to
the kernel's O(m²·d), so the ratio is worst at the shortest length. There (m ≤ ``DENSE_MAX_LEN`` = 256 on CPU)
the fused implementation takes its dense path — the m×m matrix in three batched matmuls, no running sums —
and beyond it SDPA plus the running sums; each row records which (``fused_path``). Where fused is dense, the
O(m·d) path is timed beside it as ``fused_scan`` (also paired with SDPA), with its memory, so the record shows
what the dense path costs in memory and buys in time.

Timing: the one method of ``benchmarks.common`` (rounds in alternating order, paired per-round ratios of this
thread's CPU time; wall-clock ratios are recorded beside them). Fused and reference outputs and input gradients
are asserted equal before timing (SDPA alone computes a different function: it is the cost floor). The reference
is timed up to m = 1024 (beyond, it costs seconds per call and adds nothing to the goal); its memory always is.

Peak memory is *measured*, not computed: each (implementation, length) runs in a fresh subprocess that
resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` ← 5), runs one forward + backward and reads
``VmHWM``; the number reported is that peak minus the resident size just before the call (inputs, weights
and the interpreter excluded). Linux only; elsewhere, and in ``--quick`` runs, memory is not measured.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import assert_same_outputs, paired_ratio, paired_rounds, setup_threads

try:
    from deeplimit.nn.attention import DENSE_MAX_LEN, _shaped_residual, shaped_attention
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from deeplimit.nn.attention import DENSE_MAX_LEN, _shaped_residual, shaped_attention

NAME = "attention"
BATCH, HEADS, HEAD_DIM = 1, 4, 64
GOAL_RATIO = 1.10
IMPLS = ("sdpa", "fused", "fused_scan", "reference")  # fused and fused_scan are each paired with sdpa
# fused_scan: the O(m·d) path (SDPA + running sums) the fused implementation takes beyond DENSE_MAX_LEN, timed
# also where fused is dense, so that the record shows what the dense path buys there
REFERENCE_TIMED_UP_TO = 1024  # beyond, the m×m reference is timed no more (seconds per call); its memory still is


def _inputs(m: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(BATCH, HEADS, m, HEAD_DIM, generator=g).requires_grad_() for _ in range(3))
    grad_out = torch.randn(BATCH, HEADS, m, HEAD_DIM, generator=g)
    return [q, k, v], grad_out


def _scan_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """The fused implementation's O(m·d) path at any length: SDPA, then ``+ γ1·V − γ2·(running mean of V)``."""
    attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / tau)
    return _shaped_residual(attn, v, 1.0, 1.0, causal=True)


def _peers(m: int) -> tuple[str, ...]:
    """The implementations timed at length ``m``: fused_scan only where fused is dense, reference up to 1024."""
    return tuple(impl for impl in IMPLS if (impl != "fused_scan" or m <= DENSE_MAX_LEN)
                 and (impl != "reference" or m <= REFERENCE_TIMED_UP_TO))


def _step_fn(impl: str, m: int):
    """A closure running one forward + backward of ``impl`` at length ``m`` (inputs built once)."""
    (q, k, v), grad_out = _inputs(m)
    tau = (HEADS * HEAD_DIM * HEAD_DIM) ** 0.5  # τ0 = 1, n = H·d: the shaped temperature √(n·d)

    def step() -> None:
        for t in (q, k, v):
            t.grad = None
        if impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / tau)
        elif impl == "fused_scan":
            out = _scan_path(q, k, v, tau)
        else:
            out = shaped_attention(q, k, v, gamma1=1.0, gamma2=1.0, tau=tau, causal=True, impl=impl)
        out.backward(grad_out)

    return step


# ----------------------------------------------------------------------------------------------------------
# memory (subprocess side)


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _measure_peak_in_this_process(impl: str, m: int) -> dict:
    setup_threads()
    step = _step_fn(impl, m)
    step()  # warm-up: one-time allocations (thread pools, kernel workspaces) are not the call's cost
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back so RSS is an honest baseline
    except OSError:
        pass
    baseline = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS high-water mark to the current RSS
    step()
    peak = _status_bytes("VmHWM")
    return {"impl": impl, "m": m, "peak_extra_bytes": peak - baseline, "baseline_rss_bytes": baseline}


def measure_peak_memory(impl: str, m: int, repeats: int = 1) -> dict:
    """Peak extra resident memory (bytes) of one forward + backward, median over fresh subprocesses."""
    if not Path("/proc/self/clear_refs").exists():
        return {"impl": impl, "m": m, "peak_extra_bytes": None, "note": "needs Linux /proc"}
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "src"), str(root),
                                                       os.environ.get("PYTHONPATH", "")]))
    peaks = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_attention", "--memory", impl, str(m)],
                              cwd=root, env=env, capture_output=True, text=True, check=True)
        peaks.append(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"])
    return {"impl": impl, "m": m, "peak_extra_bytes": int(statistics.median(peaks)), "samples": peaks}


# ----------------------------------------------------------------------------------------------------------
# the benchmark


def _outputs(m: int) -> dict[str, torch.Tensor]:
    """Reference, fused (and fused_scan where it differs) output and input gradients at length ``m``
    (concatenated), for the equality check."""
    out = {}
    for impl in [i for i in ("reference", "fused", "fused_scan") if i != "fused_scan" or m <= DENSE_MAX_LEN]:
        (q, k, v), grad_out = _inputs(m)
        tau = (HEADS * HEAD_DIM * HEAD_DIM) ** 0.5
        if impl == "fused_scan":
            y = _scan_path(q, k, v, tau)
        else:
            y = shaped_attention(q, k, v, gamma1=1.0, gamma2=1.0, tau=tau, causal=True, impl=impl)
        y.backward(grad_out)
        out[impl] = torch.cat([t.detach().flatten() for t in (y, q.grad, k.grad, v.grad)])
    return out


def run(quick: bool) -> dict:
    setup_threads()
    lengths = [64, 128] if quick else [256, 512, 1024, 2048, 4096]
    rows = []
    for m in lengths:
        assert_same_outputs(_outputs(m), rtol=1e-4, atol=1e-5)
        repeats, number = (3, 1) if quick else (15, 3) if m <= 512 else (11, 1) if m <= 1024 else (7, 1)
        timed = _peers(m)
        times = paired_rounds({impl: _step_fn(impl, m) for impl in timed}, repeats=repeats, number=number)
        memory = {impl: None if quick or (impl == "fused_scan" and m > DENSE_MAX_LEN)
                  else measure_peak_memory(impl, m)["peak_extra_bytes"] for impl in IMPLS}
        row = {
            "m": m,
            "fused_path": "dense" if m <= DENSE_MAX_LEN else "sdpa + running sums",
            "rounds": repeats,
            "calls_per_round": number,
            "median_cpu_ms": {impl: 1e3 * times[impl]["median_s"] if impl in times else None for impl in IMPLS},
            "median_wall_ms": {impl: 1e3 * times[impl]["wall_median_s"] if impl in times else None for impl in IMPLS},
            "fused_over_sdpa": paired_ratio(times, "fused", "sdpa"),
            "fused_over_sdpa_wall_paired": paired_ratio(times, "fused", "sdpa", "wall"),
            "fused_scan_over_sdpa": paired_ratio(times, "fused_scan", "sdpa") if "fused_scan" in times else None,
            "reference_over_fused": paired_ratio(times, "reference", "fused") if "reference" in times else None,
            "peak_extra_MiB": {impl: None if b is None else b / 2**20 for impl, b in memory.items()},
            "samples_cpu_s": {impl: times[impl]["cpu_s"] for impl in timed},
        }
        if memory["fused"] and memory["reference"]:
            row["reference_over_fused_memory"] = memory["reference"] / memory["fused"]
        rows.append(row)
        cpu_ms = ", ".join(f"{k} {v:.2f} ms" for k, v in row["median_cpu_ms"].items() if v is not None)
        print(f"[attention] m={m} ({row['fused_path']}): cpu {cpu_ms}; fused/sdpa paired {row['fused_over_sdpa']:.3f} "
              f"(wall {row['fused_over_sdpa_wall_paired']:.3f})", file=sys.stderr)

    worst = max(rows, key=lambda r: r["fused_over_sdpa"])
    summary = {
        "setting": f"causal, batch {BATCH}, {HEADS} heads x {HEAD_DIM}, float32, 1 thread, forward+backward",
        "goal": f"fused <= {GOAL_RATIO}x SDPA alone at every length",
        "goal_met": all(r["fused_over_sdpa"] <= GOAL_RATIO for r in rows),
        "ratio_clock": "median over rounds of fused/SDPA thread CPU time, paired per round",
        "fused_over_sdpa": {r["m"]: round(r["fused_over_sdpa"], 3) for r in rows},
        "fused_over_sdpa_wall_paired": {r["m"]: round(r["fused_over_sdpa_wall_paired"], 3) for r in rows},
        "median_cpu_ms": {r["m"]: {k: None if v is None else round(v, 2) for k, v in r["median_cpu_ms"].items()}
                          for r in rows},
        "worst_fused_over_sdpa": {"m": worst["m"], "ratio": round(worst["fused_over_sdpa"], 3)},
        "fused_path": {r["m"]: r["fused_path"] for r in rows},
        "fused_scan_over_sdpa_where_fused_is_dense": {r["m"]: round(r["fused_scan_over_sdpa"], 3) for r in rows
                                                       if r["fused_scan_over_sdpa"] is not None},
        "reference_over_fused_time": {r["m"]: round(r["reference_over_fused"], 2) for r in rows
                                      if r["reference_over_fused"] is not None},
        "peak_extra_MiB": {r["m"]: {k: None if v is None else round(v, 1)
                                    for k, v in r["peak_extra_MiB"].items()} for r in rows},
    }
    settings = {"lengths": lengths, "batch": BATCH, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": "float32",
                "causal": True, "gamma1": 1.0, "gamma2": 1.0, "reference_timed_up_to": REFERENCE_TIMED_UP_TO,
                "dense_max_len": DENSE_MAX_LEN,
                "rounds_calls": {r["m"]: [r["rounds"], r["calls_per_round"]] for r in rows},
                "memory": "not measured (quick)" if quick else "peak RSS in a fresh subprocess"}
    return {"settings": settings, "rows": rows, "summary": summary}


def _main() -> None:
    parser = argparse.ArgumentParser(description="internal: one peak-memory measurement in this process")
    parser.add_argument("--memory", nargs=2, metavar=("IMPL", "M"), required=True)
    args = parser.parse_args()
    impl, m = args.memory[0], int(args.memory[1])
    print(json.dumps(_measure_peak_in_this_process(impl, m)))


if __name__ == "__main__":
    _main()
