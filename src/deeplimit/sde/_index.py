"""Index forms of the attention coefficients (spec §3.4) and explicit p×p diffusion matrices.

These are the *executable definitions* that the matrix forms in :mod:`deeplimit.sde.coefficients` are tested
against (spec §9 check 4), plus the naive p×p Euler step used as a baseline by ``benchmarks/bench_sde.py``.
They cost ``O(m⁶)``/``O(m⁴)`` and are never used by the solver.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deeplimit.sde.coefficients import Scenario


def _means(V: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``V^{αx̄} (m,)``, ``V^{x̄x̄} ()`` and ``V̄ = tr V/m ()`` for a single ``V (m, m)``."""
    m = V.shape[-1]
    return V.mean(dim=-1), V.sum() / m**2, torch.trace(V) / m


def s1_index(V: Tensor) -> Tensor:
    """``S1^{αδ,βω} = V^{αβ}(V^{δω} − V^{δx̄} − V^{ωx̄} + V^{x̄x̄})`` as a tensor indexed ``[α, δ, β, ω]``."""
    m = V.shape[-1]
    vx, vxx, _ = _means(V)
    S1 = torch.empty((m, m, m, m), dtype=V.dtype)
    for a in range(m):
        for d in range(m):
            for b in range(m):
                for w in range(m):
                    S1[a, d, b, w] = V[a, b] * (V[d, w] - vx[d] - vx[w] + vxx)
    return S1


def s2_index(V: Tensor) -> Tensor:
    """``S2^{αδ} = V^{αα}(V^{δδ} − 2V^{δx̄} + 2V^{x̄x̄} − V̄)`` indexed ``[α, δ]``."""
    m = V.shape[-1]
    vx, vxx, vbar = _means(V)
    S2 = torch.empty((m, m), dtype=V.dtype)
    for a in range(m):
        for d in range(m):
            S2[a, d] = V[a, a] * (V[d, d] - 2 * vx[d] + 2 * vxx - vbar)
    return S2


def drift_attention_index(V: Tensor, gamma: float, tau0: float) -> Tensor:
    """Index form of the attention drift (spec §3.4), single ``V (m, m)``."""
    m = V.shape[-1]
    S1, S2 = s1_index(V), s2_index(V)
    b = torch.zeros_like(V)
    for a in range(m):
        for be in range(m):
            t1 = sum(V[nu, ka] * S1[a, nu, be, ka] for nu in range(m) for ka in range(m)) / m**2
            t2 = sum(V[be, nu] * S2[a, nu] + V[a, nu] * S2[be, nu] for nu in range(m)) / (2 * m)
            b[a, be] = gamma**2 / tau0**2 * (t1 + t2)
    return b


def attention_diffusion_index(V: Tensor) -> Tensor:
    """Index form of ``𝒜^{αβ,δω}`` (spec §3.4), single ``V (m, m)`` → ``(m, m, m, m)``."""
    m = V.shape[-1]
    S1 = s1_index(V)
    A = torch.zeros((m, m, m, m), dtype=V.dtype)
    for a in range(m):
        for b in range(m):
            for d in range(m):
                for w in range(m):
                    s = 0.0
                    for nu in range(m):
                        for ka in range(m):
                            s = s + (
                                V[a, ka] * V[d, nu] * S1[b, ka, w, nu]
                                + V[a, ka] * V[w, nu] * S1[b, ka, d, nu]
                                + V[b, nu] * V[d, ka] * S1[a, nu, w, ka]
                                + V[b, nu] * V[w, ka] * S1[a, nu, d, ka]
                            )
                    A[a, b, d, w] = s / m**2
    return A


def sigma_lin_index(V: Tensor) -> Tensor:
    """``Σ_lin^{αβ,δω} = V^{αδ}V^{βω} + V^{αω}V^{βδ}`` by explicit loops, ``(m, m, m, m)``."""
    m = V.shape[-1]
    S = torch.empty((m, m, m, m), dtype=V.dtype)
    for a in range(m):
        for b in range(m):
            for d in range(m):
                for w in range(m):
                    S[a, b, d, w] = V[a, d] * V[b, w] + V[a, w] * V[b, d]
    return S


def triu_indices(m: int) -> Tensor:
    """``(2, p)`` row/column indices of the upper triangle (``α ≤ β``), ``p = m(m+1)/2``."""
    return torch.triu_indices(m, m)


def to_pxp(S4: Tensor) -> Tensor:
    """Restrict a 4-index tensor ``(..., m, m, m, m)`` to the upper-triangle pairs: ``(..., p, p)``."""
    m = S4.shape[-1]
    iu = triu_indices(m)
    S = S4[..., iu[0], iu[1], :, :]
    return S[..., iu[0], iu[1]]


def sigma_pxp(scenario: Scenario, V: Tensor) -> Tensor:
    """Explicit ``Σ(V)`` as a ``(..., p, p)`` matrix (matrix-form tensors restricted to α≤β, δ≤ω)."""
    return to_pxp(scenario.diffusion_tensor(V))


def naive_em_step(scenario: Scenario, V: Tensor, h: float, gen: torch.Generator) -> Tensor:
    """Straightforward Euler step that forms ``Σ`` (p×p) and eigendecomposes it per path (§5 baseline).

    ``V (B, m, m)``. Cost ``O(B m⁶)``. Used only as the benchmark baseline and as a law check in tests.
    """
    B, m, _ = V.shape
    iu = triu_indices(m)
    S = sigma_pxp(scenario, V)
    w, Q = torch.linalg.eigh(S)
    root = Q * torch.sqrt(w.clamp_min(0.0)).unsqueeze(-2)
    xi = torch.randn(B, iu.shape[1], 1, generator=gen, dtype=V.dtype)
    dv = (root @ xi).squeeze(-1)
    upd = torch.zeros_like(V)
    upd[:, iu[0], iu[1]] = dv
    upd = upd + upd.mT - torch.diag_embed(torch.diagonal(upd, dim1=-2, dim2=-1))
    return V + h * scenario.drift(V) + h**0.5 * upd
