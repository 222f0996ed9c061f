"""Matrix-free Gaussian noise with covariance ``Σ(V)`` and a robust PSD square root (spec §5.1, §5.3).

Cost per path: one (batched) Cholesky and a handful of m×m matmuls, ``O(m³)`` time and ``O(m²)`` memory;
the p×p matrix ``Σ`` (``p = m(m+1)/2``) is never built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deeplimit.sde._linalg import cholesky_ex


def psd_sqrt(V: Tensor) -> tuple[Tensor, Tensor]:
    """Square root ``L`` with ``L Lᵀ = V₊`` (the PSD part of ``V``), batched (spec §5.3).

    ``V``: ``(..., m, m)`` symmetric. Uses a batched Cholesky (:func:`deeplimit.sde._linalg.cholesky_ex`)
    and, **only for the matrices where it fails**, the eigen factor ``Q diag(sqrt(max(w, 0)))``. Consumers
    (noise §5.1, sampler §5.5) depend on ``L`` only through ``L Lᵀ``, so mixing the two factors across paths
    is consistent. No jitter is added. Returns ``(L, clipped)`` where ``clipped (...)`` counts the negative
    eigenvalues that were set to 0 (0 for every matrix whose Cholesky succeeded).
    """
    L, info = cholesky_ex(V)
    bad = info != 0
    clipped = torch.zeros(V.shape[:-2], dtype=torch.long, device=V.device)
    if bool(bad.any()):
        Vb = V[bad]
        w, Q = torch.linalg.eigh(Vb)
        neg = w < 0
        L = L.clone()
        L[bad] = Q * torch.sqrt(w.clamp_min(0.0)).unsqueeze(-2)
        clipped[bad] = neg.sum(dim=-1)
    return L, clipped


def eigen_sqrt(V: Tensor) -> Tensor:
    """Eigen factor ``Q diag(sqrt(max(w, 0)))`` for every matrix of ``V (..., m, m)`` (tests/fallback)."""
    w, Q = torch.linalg.eigh(V)
    return Q * torch.sqrt(w.clamp_min(0.0)).unsqueeze(-2)


def matrix_free_noise(
    V: Tensor, L: Tensor, G1: Tensor, G2: Tensor, kappa_lin: float, kappa_att: float
) -> Tensor:
    """Symmetric Gaussian ``ξ`` whose upper triangle has covariance ``κ_lin Σ_lin(V) + κ_att 𝒜(V)``
    (spec §5.1).

    ``V, L, G1, G2``: ``(..., m, m)`` with ``L Lᵀ = V`` and ``G1, G2`` iid N(0, 1).

    * linear part: ``W = L G1 Lᵀ``, ``Z = (W + Wᵀ)/√2`` has covariance ``Σ_lin = K(V, V)`` exactly;
    * attention part: ``L_M = V P L`` factors ``M = V C V`` (rank ≤ m−1, never Cholesky'd);
      ``W' = L_M G2 Lᵀ``, ``Z' = W' + W'ᵀ`` has covariance ``K(M, V) + K(V, M) = m² 𝒜``;
    * ``ξ = sqrt(κ_lin) Z + (sqrt(κ_att)/m) Z'``. The map ``(G1, G2) ↦ ξ`` is linear (tested via its
      Jacobian).
    """
    return matrix_free_noise_fused(V, L, torch.cat([G1, G2], dim=-2), kappa_lin, kappa_att)


def matrix_free_noise_fused(V: Tensor, L: Tensor, G: Tensor, kappa_lin: float, kappa_att: float) -> Tensor:
    """Same as :func:`matrix_free_noise` with ``G = [G1; G2]`` stacked as ``(..., 2m, m)``.

    Both parts end in ``· Lᵀ``, so ``ξ = Q Lᵀ + (Q Lᵀ)ᵀ`` with
    ``Q = sqrt(κ_lin/2) L G1 + (sqrt(κ_att)/m) L_M G2 = [a L | b L_M] G``: one ``m×2m`` by ``2m×m`` matmul and
    one ``m×m`` matmul instead of four (about 8 m³ flops per path with ``L_M``, 6 m³ without).
    """
    m = V.shape[-1]
    a = math.sqrt(kappa_lin / 2.0)
    if kappa_att > 0:
        LM = V @ (L - L.mean(dim=-2, keepdim=True))  # V P L: P L subtracts the column means of L
        Q = torch.cat([a * L, (math.sqrt(kappa_att) / m) * LM], dim=-1) @ G
    else:
        Q = a * (L @ G[..., :m, :])
    W = Q @ L.mT
    return W + W.mT
