"""Matrix-form drift and diffusion coefficients of the covariance SDEs (spec §3).

Every function works on batches ``V`` of shape ``(..., m, m)`` (symmetric PSD token covariances) and is a
pure function of its inputs. The p×p diffusion matrix ``Σ(V)`` is **never** formed here: the solver only
needs the drift, the scalar weights ``κ_lin``/``κ_att`` of the coefficient table (§3.6) and the factors
used by
the matrix-free noise (§5.1). Explicit p×p builders live in :mod:`deeplimit.sde._index` (tests/benchmarks
only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError

SCENARIO_KINDS = ("mlp", "resnet", "attention", "block", "linear")


def relu_nu(rho: Tensor, c_plus: float, c_minus: float) -> Tensor:
    """``ν(ρ) = (c+ − c−)²/(2π) · (sqrt(1 − ρ²) − ρ arccos ρ)`` (spec §3.2, main-text Eq. 6).

    The App. B variant ``(c+ + c−)²`` and ``+ ρ arccos ρ`` is an erratum (spec §10) and is *not* used.
    ``ρ`` is clamped to ``[−1, 1]`` first: round-off can push a correlation a few ulps outside, and ``ν`` is
    continuous at the ends (``ν(1) = 0``, ``ν(−1) = (c+ − c−)²/2``). Shape: elementwise.
    """
    r = rho.clamp(-1.0, 1.0)
    return (
        (c_plus - c_minus) ** 2 / (2 * math.pi) * (torch.sqrt((1 - r * r).clamp_min(0.0)) - r * torch.acos(r))
    )


def correlation(V: Tensor) -> Tensor:
    """Token correlations ``ρ^{αβ} = V^{αβ}/sqrt(V^{αα}V^{ββ})`` of ``V (..., m, m)``; 0 where a variance
    is 0."""
    s = torch.sqrt(torch.diagonal(V, dim1=-2, dim2=-1).clamp_min(0.0))
    den = s.unsqueeze(-1) * s.unsqueeze(-2)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, V / safe, torch.zeros_like(V))


def drift_relu(V: Tensor, c_plus: float, c_minus: float) -> Tensor:
    """Shaped-ReLU drift ``b_ReLU(V)^{αβ} = ν(ρ^{αβ}) sqrt(V^{αα}V^{ββ})`` (spec §3.2, Eq. 6).

    ``V``: ``(..., m, m)`` → ``(..., m, m)``. The diagonal is exactly 0 (``ν(1) = 0``).
    """
    s = torch.sqrt(torch.diagonal(V, dim1=-2, dim2=-1).clamp_min(0.0))
    den = s.unsqueeze(-1) * s.unsqueeze(-2)
    # where a variance is 0 the entry V^{αβ} is 0 too (PSD), so ρ := 0 there and b = ν·0 = 0
    b = relu_nu(V / den.clamp_min(torch.finfo(V.dtype).tiny), c_plus, c_minus) * den
    # ρ^{αα} = 1 up to round-off; force the exact zero of ν(1) so the diagonal is a pure martingale (§3.3)
    torch.diagonal(b, dim1=-2, dim2=-1).zero_()
    return b


def centred(V: Tensor) -> Tensor:
    """``C = P V P`` with ``P = I − 11ᵀ/m`` (spec §1), computed as ``V − row means − column means + grand
    mean``."""
    row = V.mean(dim=-1, keepdim=True)
    col = V.mean(dim=-2, keepdim=True)
    return V - row - col + V.mean(dim=(-2, -1), keepdim=True)


def attention_quartic(V: Tensor) -> Tensor:
    """``M = V C V`` (spec §1, §3.4): PSD of rank ≤ m−1; the quartic building block of ``𝒜``. Shape
    ``(..., m, m)``."""
    return V @ centred(V) @ V


def drift_attention(V: Tensor, gamma: float, tau0: float) -> Tensor:
    """Shaped-attention drift, matrix form of spec §3.4 (Thm. 4.2; derived, equal to the index form):

    ``b(V) = (γ²/τ0²) [ (tr(V C)/m²) V + (1/(2m)) (v (V D)ᵀ + (V D) vᵀ) ]`` with ``C = P V P``, ``v =
    diag V``,
    ``D = diag C − mean(diag C) 1``. ``V``: ``(..., m, m)`` → ``(..., m, m)``.
    """
    m = V.shape[-1]
    C = centred(V)
    v = torch.diagonal(V, dim1=-2, dim2=-1)
    dC = torch.diagonal(C, dim1=-2, dim2=-1)
    D = dC - dC.mean(dim=-1, keepdim=True)
    trVC = (V * C).sum(dim=(-2, -1))  # tr(VC) for symmetric V, C
    VD = (V @ D.unsqueeze(-1)).squeeze(-1)
    outer = v.unsqueeze(-1) * VD.unsqueeze(-2) + VD.unsqueeze(-1) * v.unsqueeze(-2)
    return (gamma**2 / tau0**2) * ((trVC / m**2)[..., None, None] * V + outer / (2 * m))


def sym_kron(R: Tensor, S: Tensor) -> Tensor:
    """``K(R, S)^{αβ,δω} = R^{αδ}S^{βω} + R^{αω}S^{βδ}`` as an ``(..., m, m, m, m)`` tensor (tests only:
    O(m⁴))."""
    return torch.einsum("...ad,...bw->...abdw", R, S) + torch.einsum("...aw,...bd->...abdw", R, S)


def sigma_lin_tensor(V: Tensor) -> Tensor:
    """``Σ_lin(V) = K(V, V)`` as a 4-index tensor (spec §3.1). For tests only; the solver never forms it."""
    return sym_kron(V, V)


def attention_diffusion_tensor(V: Tensor) -> Tensor:
    """``𝒜(V) = (K(M, V) + K(V, M))/m²`` as a 4-index tensor (matrix form of spec §3.4). Tests only."""
    m = V.shape[-1]
    M = attention_quartic(V)
    return (sym_kron(M, V) + sym_kron(V, M)) / m**2


@dataclass(frozen=True)
class Scenario:
    """One row of the coefficient table (spec §3.6): ``dV = b dt + (κ_lin Σ_lin + κ_att 𝒜)^{1/2} dB``.

    ``kind``: ``mlp`` (a), ``resnet`` (b), ``attention`` (c), ``block`` (d) or ``linear`` (linear residual /
    zero queries / ``τ0 → ∞``). ``gamma`` is the residual-branch weight (``λ² + γ² = 1``), ignored by ``mlp``.
    """

    kind: str
    gamma: float = 1.0
    tau0: float = 1.0
    c_plus: float = 0.0
    c_minus: float = -1.0

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise DeeplimitError(
                f"unknown SDE scenario kind {self.kind!r}; use one of {', '.join(SCENARIO_KINDS)}"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise DeeplimitError(
                f"gamma must lie in [0, 1] (λ² + γ² = 1), got {self.gamma!r}; pick γ ∈ [0, 1]"
            )
        if self.kind in ("attention", "block") and not self.tau0 > 0:
            raise DeeplimitError(
                f"tau0 must be positive for attention, got {self.tau0!r}; the paper uses τ0 = 1"
            )

    @property
    def kappa_lin(self) -> float:
        """Weight of ``Σ_lin`` (§3.6): 1, 2γ², γ²(2−γ²), γ²(4−γ²), γ²(2−γ²)."""
        g2 = self.gamma**2
        return {
            "mlp": 1.0,
            "resnet": 2 * g2,
            "attention": g2 * (2 - g2),
            "block": g2 * (4 - g2),
            "linear": g2 * (2 - g2),
        }[self.kind]

    @property
    def kappa_att(self) -> float:
        """Weight of ``𝒜`` (§3.6): ``γ⁴/τ0²`` for attention and block, else 0."""
        return self.gamma**4 / self.tau0**2 if self.kind in ("attention", "block") else 0.0

    def drift(self, V: Tensor) -> Tensor:
        """Drift ``b(V)`` of this scenario, ``(..., m, m)`` → ``(..., m, m)`` (§3.6)."""
        if self.kind == "mlp":
            return drift_relu(V, self.c_plus, self.c_minus)
        if self.kind == "resnet":
            return self.gamma**2 * drift_relu(V, self.c_plus, self.c_minus)
        if self.kind == "attention":
            return drift_attention(V, self.gamma, self.tau0)
        if self.kind == "block":
            return drift_attention(V, self.gamma, self.tau0) + self.gamma**2 * drift_relu(
                V, self.c_plus, self.c_minus
            )
        return torch.zeros_like(V)

    def diffusion_tensor(self, V: Tensor) -> Tensor:
        """``Σ(V)`` as an ``(..., m, m, m, m)`` tensor. O(m⁴): tests and the naive benchmark only."""
        S = self.kappa_lin * sigma_lin_tensor(V)
        if self.kappa_att:
            S = S + self.kappa_att * attention_diffusion_tensor(V)
        return S

    def default_dt(self) -> float:
        """Default step rule of §5.4: ``h = min(0.01, 0.008/κ_lin)``."""
        k = self.kappa_lin
        return 0.01 if k <= 0 else min(0.01, 0.008 / k)


def correlation_coefficients(rho: Tensor, scenario: Scenario) -> tuple[Tensor, Tensor]:
    """Drift and diffusion of the closed 1-D correlation SDE (spec §3.7), for ``mlp`` or ``resnet``.

    ResNet: ``dρ = γ²[ν(ρ) − ρ(1−ρ²)] dt + √2 γ (1−ρ²) dW``; MLP: ``dρ = [ν − ρ(1−ρ²)/2] dt + (1−ρ²) dW``.
    Both are ``a ν(ρ) − (κ/2) ρ(1−ρ²)`` and ``√κ (1−ρ²)`` with ``(a, κ) = (γ², 2γ²)`` or ``(1, 1)``.
    """
    if scenario.kind not in ("mlp", "resnet", "linear"):
        raise DeeplimitError(
            f"the correlation SDE is closed only for mlp/resnet/linear, not {scenario.kind!r}; "
            "solve the matrix SDE with deeplimit.sde.solve instead"
        )
    a = {"mlp": 1.0, "resnet": scenario.gamma**2, "linear": 0.0}[scenario.kind]
    k = scenario.kappa_lin
    one_m = 1 - rho * rho
    drift = a * relu_nu(rho, scenario.c_plus, scenario.c_minus) - 0.5 * k * rho * one_m
    return drift, math.sqrt(k) * one_m


@dataclass
class CorrelationSolution:
    """Output of :func:`solve_correlation`: ``times (S,)``, ``rho (S, B)`` saved paths, ``clipped (B,)``
    counts."""

    times: Tensor
    rho: Tensor
    clipped: Tensor

    @property
    def terminal(self) -> Tensor:
        return self.rho[-1]


def solve_correlation(
    scenario: Scenario,
    rho0: float,
    T: float,
    dt: float | None = None,
    paths: int = 4096,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    save_every: int | None = None,
) -> CorrelationSolution:
    """Euler–Maruyama for the 1-D correlation SDE of §3.7 (ReLU ResNet / MLP).

    Euler can step past ``±1`` (the exact process never reaches the boundary); such steps are clamped
    back to ``±1`` and counted in ``clipped`` rather than silently dropped. Returns ``rho (S, paths)``.
    """
    if not -1.0 <= rho0 <= 1.0:
        raise DeeplimitError(f"rho0 must lie in [-1, 1], got {rho0!r}")
    if not T > 0:
        raise DeeplimitError(f"T must be positive, got {T!r}")
    h0 = scenario.default_dt() if dt is None else dt
    steps = max(1, math.ceil(T / h0 - 1e-9))
    h = T / steps
    gen = torch.Generator().manual_seed(seed)
    rho = torch.full((paths,), float(rho0), dtype=dtype)
    clipped = torch.zeros(paths, dtype=torch.long)
    times, saved = [0.0], [rho.clone()]
    for k in range(1, steps + 1):
        b, s = correlation_coefficients(rho, scenario)
        dw = torch.randn(paths, generator=gen, dtype=dtype)
        new = rho + h * b + math.sqrt(h) * s * dw
        out = new.abs() > 1
        clipped += out.long()
        rho = new.clamp(-1.0, 1.0)
        if (save_every and k % save_every == 0) or k == steps:
            times.append(k * h)
            saved.append(rho.clone())
    return CorrelationSolution(torch.tensor(times, dtype=dtype), torch.stack(saved), clipped)
