"""Shared helpers for the SDE validation tests (spec §9 seed policy for KS checks)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def ks_critical(n1: int, n2: int, alpha: float = 0.05) -> float:
    """Asymptotic two-sample KS critical value ``c(α) sqrt((n1 + n2)/(n1 n2))``."""
    c = math.sqrt(-0.5 * math.log(alpha / 2))
    return c * math.sqrt((n1 + n2) / (n1 * n2))


def ks_with_seed_policy(
    run: Callable[[int], list[float]], threshold: float, seeds: tuple[int, ...] = (1, 2, 3)
) -> list[float]:
    """Spec §9 check 2 seed policy: pinned seed 0 first; if any KS exceeds ``threshold``, the failure is
    inconclusive and the check is re-run with 3 fresh seeds, requiring the per-quantity median ≤ threshold.
    Returns the KS values that were finally judged."""
    first = run(0)
    if max(first) <= threshold:
        return first
    again = np.median(np.array([run(s) for s in seeds]), axis=0)
    return [float(x) for x in again]
