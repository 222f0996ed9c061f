"""One fused Euler–Maruyama step ``V + h b(V) + √h ξ`` for a chunk of paths (spec §5.1–§5.2).

The step is the same arithmetic as ``V + h * scenario.drift(V) + √h * matrix_free_noise(...)``, regrouped
so that an ``m×m`` step makes about 18 elementwise passes instead of ~60:

* the attention drift never forms ``C = P V P``: with ``u = V1/m`` (row means) and ``μ = mean(u)``,
  ``tr(VC) = ‖V‖²_F − 2m‖u‖² + m²μ²`` and ``diag C = v − 2u + μ``; of its rank-2 part
  ``v (VD)ᵀ + (VD) vᵀ`` only ``v (VD)ᵀ`` is added (a rank-1 update), the final ``H + Hᵀ`` adds the other;
* the noise ``Q = a L G1 + b L_M G2`` with ``L_M G2 = V P L G2``: one GEMM ``L [G1 | G2]``, a column
  centring, one GEMM by ``V``; then ``W = Q Lᵀ`` (three GEMMs, 8m³ flops, through :mod:`._linalg`);
* everything is accumulated into ``H = V/2 + (h/2) b + √h W``, and ``V' = H + Hᵀ`` (exactly symmetric).

The public coefficient functions (:mod:`deeplimit.sde.coefficients`, :mod:`deeplimit.sde.noise`) stay the
readable reference; ``tests/test_sde_step.py`` checks this step against them to 1e-12 in float64.

The solver objects :class:`Euler` and :class:`TamedEuler` (the ``solver`` argument of
:func:`deeplimit.sde.solve`, as in diffrax) each advance a chunk of paths by one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deeplimit.sde._linalg import matmul
from deeplimit.sde.coefficients import Scenario
from deeplimit.sde.noise import matrix_free_noise


def drift_weights(scenario: Scenario) -> tuple[float, float]:
    """Weights ``(w_relu, w_att)`` with ``b = w_relu b_ReLU + w_att b̂_att`` (§3.6).

    ``b̂_att`` is the attention drift at ``γ = τ0 = 1``: ``w_att = γ²/τ0²`` for attention and block.
    """
    g2 = scenario.gamma**2
    w_relu = {"mlp": 1.0, "resnet": g2, "block": g2}.get(scenario.kind, 0.0)
    w_att = g2 / scenario.tau0**2 if scenario.kind in ("attention", "block") else 0.0
    return w_relu, w_att


def _add_relu_drift(H: Tensor, V: Tensor, v: Tensor, weight: float, c_plus: float, c_minus: float) -> None:
    """``H += weight · b_ReLU(V)`` (spec Eq. 6), in place, in about ten elementwise passes; ``v = diag V``."""
    s = v.clamp_min(0.0).sqrt_().clamp_min_(torch.finfo(V.dtype).tiny)
    den = s.unsqueeze(-1) * s.unsqueeze(-2)
    r = torch.div(V, den).clamp_(-1.0, 1.0)
    # ν(ρ)·√(vα vβ) = c (√(1 − ρ²) √(vα vβ) − V arccos ρ)
    acos = torch.acos(r)
    q = torch.addcmul(torch.ones((), dtype=V.dtype), r, r, value=-1.0).sqrt_()  # √(1 − ρ²), |ρ| ≤ 1
    # ν(1) = 0 exactly on the diagonal (§3.3): the variances are pure martingales under the ReLU drift
    torch.diagonal(q, dim1=-2, dim2=-1).zero_()
    torch.diagonal(acos, dim1=-2, dim2=-1).zero_()
    c = weight * (c_plus - c_minus) ** 2 / (2 * math.pi)
    H.addcmul_(den, q, value=c).addcmul_(V, acos, value=-c)


@torch.no_grad()
def em_step(
    scenario: Scenario,
    V: Tensor,
    L: Tensor,
    G: Tensor,
    h: float,
    out: Tensor | None = None,
) -> Tensor:
    """Euler–Maruyama step of ``dV = b dt + (κ_lin Σ_lin + κ_att 𝒜)^{1/2} dB`` for a batch of paths.

    Args:
        scenario: coefficient-table row (§3.6).
        V: ``(c, m, m)`` symmetric states; L: ``(c, m, m)`` with ``L Lᵀ = V₊`` (:func:`psd_sqrt`).
        G: ``(c, m, 2m)`` standard normals ``[G1 | G2]``: ``G1 = G[..., :m]``, ``G2 = G[..., m:]`` are the
            two noise matrices of :func:`~deeplimit.sde.noise.matrix_free_noise`.
        h: step size (units of ``t = depth/width``). out: optional contiguous ``(c, m, m)`` result buffer.

    Returns:
        ``V + h b(V) + √h ξ`` with ``ξ = W + Wᵀ``, ``W = (a L G1 + b V P L G2) Lᵀ``, exactly symmetric,
        ``(c, m, m)``. Three GEMMs per path: ``L [G1 | G2]`` (4m³ flops), ``V · P L G2`` and ``Q Lᵀ``
        (2m³ each), plus the Cholesky (m³/3) done by the caller.
    """
    m = V.shape[-1]
    w_relu, w_att = drift_weights(scenario)
    k_lin, k_att = scenario.kappa_lin, scenario.kappa_att
    v = torch.diagonal(V, dim1=-2, dim2=-1)

    # H = V/2 + (h/2) b + √h W, then V' = H + Hᵀ; symmetric terms enter H halved, and a term T + Tᵀ of b
    # enters H as T only
    if w_att:
        u = V.mean(dim=-1)  # row means V1/m
        mu = u.mean(dim=-1, keepdim=True)  # (c, 1)
        trVC = torch.linalg.vector_norm(V.flatten(-2), dim=-1) ** 2 - 2 * m * (u * u).sum(-1) + (m * mu[:, 0]) ** 2
        dC = v - 2 * u + mu
        VD = matmul(V, (dC - dC.mean(dim=-1, keepdim=True)).unsqueeze(-1))  # (c, m, 1)
        H = V * (0.5 + 0.5 * h * w_att * trVC / m**2)[:, None, None]
        # b ∋ w_att/(2m) (v (VD)ᵀ + (VD) vᵀ): H gets the rank-1 half (h w_att/(2m)) v (VD)ᵀ (a broadcast
        # product: a k = 1 GEMM is several times slower)
        H.addcmul_(v.unsqueeze(-1), VD.mT, value=h * w_att / (2 * m))
    else:
        H = V * 0.5
    if w_relu:
        _add_relu_drift(H, V, v, 0.5 * h * w_relu, scenario.c_plus, scenario.c_minus)

    a = math.sqrt(k_lin / 2.0)
    if k_att > 0:
        LG = matmul(L, G)  # (c, m, 2m) = [L G1 | L G2]
        LG2 = LG[..., m:]
        LG2.sub_(LG2.mean(dim=-2, keepdim=True))  # P L G2
        Q = matmul(V, LG2)  # L_M G2 = V P L G2
        Q.mul_(math.sqrt(k_att) / m).add_(LG[..., :m], alpha=a)
    else:
        Q = matmul(L, G[..., :m]).mul_(a)
    H.add_(matmul(Q, L.mT), alpha=math.sqrt(h))
    return torch.add(H, H.mT, out=out)


class Solver:
    """A time-stepping scheme for ``dV = b dt + Σ^{1/2} dB``: one step of a chunk of paths (spec §5.2).

    Subclasses are frozen dataclasses without fields; ``name`` is the scheme's short name.
    """

    name: str = ""

    def step(self, scenario: Scenario, V: Tensor, L: Tensor, G: Tensor, h: float, out: Tensor) -> Tensor:
        """Write the state after one step of size ``h`` into ``out (c, m, m)`` and return it.

        ``V (c, m, m)`` states, ``L`` with ``L Lᵀ = V₊``, ``G (c, m, 2m)`` the normals ``[G1 | G2]``.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Euler(Solver):
    """Euler–Maruyama with matrix-free noise (spec §5.2): ``V + h b(V) + √h ξ`` (:func:`em_step`)."""

    name = "euler"

    def step(self, scenario: Scenario, V: Tensor, L: Tensor, G: Tensor, h: float, out: Tensor) -> Tensor:
        return em_step(scenario, V, L, G, h, out=out)


@dataclass(frozen=True)
class TamedEuler(Solver):
    """Tamed Euler–Maruyama (spec §5.4 option): the drift is replaced by ``b/(1 + h‖b‖_F)``.

    Keeps explicit steps of a cubic drift bounded where plain Euler overshoots; the noise is that of
    :class:`Euler`.
    """

    name = "tamed"

    @torch.no_grad()
    def step(self, scenario: Scenario, V: Tensor, L: Tensor, G: Tensor, h: float, out: Tensor) -> Tensor:
        m = V.shape[-1]
        b = scenario.drift(V)
        b = b / (1 + h * torch.linalg.matrix_norm(b))[:, None, None]
        # drift and noise are exactly symmetric entry by entry, so V stays exactly symmetric
        torch.add(V, b, alpha=h, out=out)
        noise = matrix_free_noise(V, L, G[..., :m], G[..., m:], scenario.kappa_lin, scenario.kappa_att)
        return out.add_(noise, alpha=math.sqrt(h))
