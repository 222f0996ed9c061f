"""Distribution comparisons between SDE and finite-network samples (spec §9 check 2, §7).

Quantities are read from Gram matrices ``V (B, m, m)``: an entry ``V^{αβ}``, a correlation ``ρ^{αβ}``, or an
extreme eigenvalue. Distances: two-sample Kolmogorov–Smirnov and Wasserstein-1, each with a bootstrap
standard error (resampling both samples with replacement).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from deeplimit.errors import DeeplimitError
from deeplimit.sde.coefficients import correlation

QUANTITIES = ("rho", "V", "eigmin", "eigmax", "abs_rho")
DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def extract(V: Tensor, quantity: str, i: int = 0, j: int = 1) -> np.ndarray:
    """Samples ``(B,)`` of ``quantity`` from ``V (B, m, m)``: ``rho``/``abs_rho``/``V`` at ``(i, j)``, or
    eigenvalues."""
    if quantity not in QUANTITIES:
        raise DeeplimitError(f"unknown quantity {quantity!r}; use one of {', '.join(QUANTITIES)}")
    V = V.double()
    if quantity == "V":
        x = V[:, i, j]
    elif quantity in ("rho", "abs_rho"):
        x = correlation(V)[:, i, j]
        x = x.abs() if quantity == "abs_rho" else x
    else:
        w = torch.linalg.eigvalsh(V)
        x = w[:, 0] if quantity == "eigmin" else w[:, -1]
    return x.numpy()


EXPLODE_AT = 1e4  # eigmax above this (the top of the §3.8 band) counts a path as exploded


def exploded(V: Tensor, limit: float = EXPLODE_AT) -> Tensor:
    """``(B,)`` bool: a terminal ``V (B, m, m)`` is non-finite or its largest eigenvalue exceeds ``limit``.

    Why: with the wide comparison band an explicit-Euler path of a cubic drift can blow up to 1e200 and still
    be finite; one such path made a W1 distance 4.4e43. Such paths are counted per source and left out of
    every distance (spec §5.4: statistics use the surviving paths and report how many left).
    """
    V = V.double()
    finite = torch.isfinite(V.sum(dim=(-2, -1)))
    big = torch.zeros_like(finite)
    if bool(finite.any()):
        big[finite] = torch.linalg.eigvalsh(V[finite])[:, -1] > limit
    return ~finite | big


def label(quantity: str, i: int, j: int) -> str:
    """Printable name, e.g. ``rho^{12}`` (1-based token indices as in the paper)."""
    return quantity if quantity.startswith("eig") else f"{quantity}^{{{i + 1}{j + 1}}}"


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup |F_a − F_b|``."""
    return float(stats.ks_2samp(a, b).statistic)


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between the two empirical laws."""
    return float(stats.wasserstein_distance(a, b))


def bootstrap_se(
    stat: Callable[[np.ndarray, np.ndarray], float],
    a: np.ndarray,
    b: np.ndarray,
    reps: int = 200,
    seed: int = 0,
) -> float:
    """Bootstrap standard error of ``stat(a, b)`` (both samples resampled with replacement)."""
    if reps < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    vals = [stat(rng.choice(a, a.size), rng.choice(b, b.size)) for _ in range(reps)]
    return float(np.std(vals, ddof=1))


def compare_distributions(
    sde: Tensor,
    net: Tensor,
    quantities: Sequence[tuple[str, int, int]] = (("rho", 0, 1), ("V", 0, 1), ("V", 0, 0)),
    bootstrap: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """KS and W1 (with bootstrap SE) between SDE and network samples ``(B, m, m)`` for each quantity.

    Returns one row per quantity: ``quantity, ks, ks_se, w1, w1_se, n_sde, n_net``. Pass survivors only
    (stopped paths are reported separately through the exit fraction).
    """
    if sde.shape[0] < 2 or net.shape[0] < 2:
        raise DeeplimitError("need at least 2 samples on each side to compare distributions; raise --paths")
    rows = []
    for q, i, j in quantities:
        a, b = extract(sde, q, i, j), extract(net, q, i, j)
        rows.append(
            {
                "quantity": label(q, i, j),
                "ks": ks_distance(a, b),
                "ks_se": bootstrap_se(ks_distance, a, b, bootstrap, seed),
                "w1": wasserstein1(a, b),
                "w1_se": bootstrap_se(wasserstein1, a, b, bootstrap, seed + 1),
                "n_sde": a.size,
                "n_net": b.size,
            }
        )
    return pd.DataFrame(rows)


def quantile_table(
    samples: dict[str, Tensor],
    quantities: Sequence[tuple[str, int, int]] = (("rho", 0, 1), ("V", 0, 1), ("V", 0, 0)),
    qs: Sequence[float] = DEFAULT_QUANTILES,
) -> pd.DataFrame:
    """Quantiles of each quantity for each named sample set (e.g. ``{"sde": V, "network": V}``).

    One row per (source, quantity) with columns ``q0.01 … q0.99`` and ``mean``.
    """
    rows = []
    for source, V in samples.items():
        for q, i, j in quantities:
            x = extract(V, q, i, j)
            row: dict[str, object] = {"source": source, "quantity": label(q, i, j), "mean": float(x.mean())}
            row.update({f"q{p:g}": float(v) for p, v in zip(qs, np.quantile(x, qs))})
            rows.append(row)
    return pd.DataFrame(rows)
