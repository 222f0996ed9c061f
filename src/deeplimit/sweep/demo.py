"""A CPU-burning objective for benchmarks and tests of the runner itself.

``burn`` does a fixed amount of single-thread CPU work (about 1 s for ``work=2e7`` here) and returns a smooth
function of the point's ``x``; ``benchmarks/bench_sweep.py`` uses it to measure throughput and the runner's
bookkeeping per trial, independently of any training code.
"""

from __future__ import annotations

import time
from typing import Any

from deeplimit.sweep.trial import TrialContext, TrialResult


def burn(point: dict[str, Any], context: TrialContext | None) -> TrialResult:
    """``work`` loop iterations of integer arithmetic; value ``(x + 8)² + 1``; ``info['objective_s']``."""
    work = int(float(point.get("work", 2e7)))
    t0 = time.perf_counter()
    acc = 0
    for i in range(work):
        acc += i & 7
    elapsed = time.perf_counter() - t0
    x = float(point.get("x", 0.0))
    return TrialResult(value=(x + 8.0) ** 2 + 1.0 + 1e-12 * acc,
                       rows=[{"step": 0, "metric": "objective_s", "value": elapsed}],
                       info={"objective_s": elapsed})
