"""Stopping events of the covariance SDEs and finite networks (spec §3.8, §5.4).

A path stops at the first step (or layer) where its ``V`` is non-finite, always, or, with a :class:`Band`,
where an eigenvalue leaves ``[lo, hi]``. Stopped paths are frozen at their last in-band state and carry a
reason code of :data:`REASONS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError

# Stop reasons stored per path (spec §3.8).
RUNNING, EXIT_LOW, EXIT_HIGH, EXIT_NONFINITE = 0, 1, 2, 3
REASONS = {RUNNING: "none", EXIT_LOW: "low", EXIT_HIGH: "high", EXIT_NONFINITE: "nonfinite"}


@dataclass(frozen=True)
class Band:
    """Stopping band on eigenvalues (spec §3.8): stop where ``eigmin(V) < lo`` or ``eigmax(V) > hi``.

    ``0 ≤ lo < hi < ∞``; the stopping-time study uses ``Band(1e-4, 1e4)``. Non-finite states stop a path
    with or without a band (pass ``event=None`` for that alone).
    """

    lo: float = 1e-4
    hi: float = 1e4

    def __post_init__(self) -> None:
        try:
            lo, hi = float(self.lo), float(self.hi)
        except (TypeError, ValueError):
            raise DeeplimitError(f"Band needs two numbers lo < hi, got lo={self.lo!r}, hi={self.hi!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise DeeplimitError(
                f"Band(lo={lo:g}, hi={hi:g}) must satisfy 0 ≤ lo < hi < inf (eigenvalue bounds); e.g. Band(1e-4, 1e4)"
            )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @classmethod
    def of(cls, band: Band | tuple[float, float] | None) -> Band | None:
        """``band`` as a :class:`Band` (``(lo, hi)`` pairs are converted; ``None`` stays ``None``)."""
        if band is None or isinstance(band, Band):
            return band
        try:
            lo, hi = band
        except (TypeError, ValueError):
            raise DeeplimitError(f"a stopping band is Band(lo, hi) or a pair (lo, hi), got {band!r}") from None
        return cls(lo, hi)

    def exit_codes(self, V: Tensor) -> Tensor:
        """Exit code per matrix of ``V (B, m, m)``: 0 in band, 1 low, 2 high, 3 non-finite."""
        return band_exit(V, self)


def band_exit(V: Tensor, event: Band | None) -> Tensor:
    """Exit code per matrix of ``V (B, m, m)`` for the band of §3.8: 0 in band, 1 low, 2 high, 3 non-finite.

    ``event=None`` only checks finiteness, through the sum of each matrix (one pass instead of two: NaN and
    ±inf propagate through it; a sum that overflows means entries near the dtype's maximum, a path that
    has blown up anyway). Otherwise two Cholesky tests replace an eigendecomposition:
    ``eigmin(V) < lo`` iff ``V − lo·I`` is not positive definite, and ``eigmax(V) > hi`` iff ``hi·I − V`` is
    not (two ``m³/3`` factorisations instead of a symmetric eigensolver, ~10× cheaper at m = 128).
    """
    finite = torch.isfinite(V.sum(dim=(-2, -1)))
    code = torch.where(finite, 0, EXIT_NONFINITE)
    if event is None:
        return code
    Vs = torch.where(finite[:, None, None], V, torch.zeros_like(V))
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    low = torch.linalg.cholesky_ex(Vs - event.lo * eye).info != 0
    high = torch.linalg.cholesky_ex(event.hi * eye - Vs).info != 0
    code = torch.where(finite & low, EXIT_LOW, code)
    code = torch.where(finite & high, EXIT_HIGH, code)
    return code


__all__ = ["EXIT_HIGH", "EXIT_LOW", "EXIT_NONFINITE", "REASONS", "RUNNING", "Band", "band_exit"]
