"""Spec §9 check 4 (index form == matrix form) and check 6 (matrix-free noise), plus §3 sanity facts."""

from __future__ import annotations

import math

import pytest
import torch

from deeplimit.sde import _index as I
from deeplimit.sde.coefficients import (
    Scenario,
    attention_diffusion_tensor,
    drift_attention,
    drift_relu,
    relu_nu,
    sigma_lin_tensor,
)
from deeplimit.sde.noise import eigen_sqrt, matrix_free_noise, psd_sqrt


def random_spd(m: int, seed: int) -> torch.Tensor:
    """Spec §9 random test covariance ``V = G Gᵀ/(m+3)``."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(m, m + 3, generator=g, dtype=torch.float64)
    return G @ G.T / (m + 3)


def normwise(est: torch.Tensor, th: torch.Tensor) -> float:
    return float((est - th).abs().max() / th.abs().max())


@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_index_equals_matrix_form(m: int) -> None:
    V = random_spd(m, seed=10 + m)
    gamma, tau0 = 0.7, 0.6
    assert normwise(drift_attention(V, gamma, tau0), I.drift_attention_index(V, gamma, tau0)) <= 1e-12
    if m <= 5:  # the index 𝒜 is O(m⁶) python loops; m = 8 would take minutes
        assert normwise(attention_diffusion_tensor(V), I.attention_diffusion_index(V)) <= 1e-12
    assert normwise(sigma_lin_tensor(V), I.sigma_lin_index(V)) <= 1e-12


def test_index_equals_matrix_form_quartic_m8_spot() -> None:
    # m = 8: check a random sample of 𝒜 entries against the index definition (the full loop is O(m⁶)).
    V = random_spd(8, seed=3)
    S1 = I.s1_index(V)
    A = attention_diffusion_tensor(V)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 8, (40, 4), generator=g)
    for a, b, d, w in idx.tolist():
        ref = (
            sum(
                V[a, k] * V[d, u] * S1[b, k, w, u]
                + V[a, k] * V[w, u] * S1[b, k, d, u]
                + V[b, u] * V[d, k] * S1[a, u, w, k]
                + V[b, u] * V[w, k] * S1[a, u, d, k]
                for u in range(8)
                for k in range(8)
            )
            / 64
        )
        assert abs(float(A[a, b, d, w] - ref)) <= 1e-12 * float(A.abs().max())


def test_equicorrelated_start_drift_is_proportional_to_V() -> None:
    # §3.4: at V0 = (1−ρ0)I + ρ0 11ᵀ, D = 0 and b ∝ V.
    V = 0.8 * torch.eye(4, dtype=torch.float64) + 0.2
    b = drift_attention(V, 0.5, 1.0)
    ratio = b / V
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio), rtol=1e-12)


def test_relu_nu_properties_and_erratum() -> None:
    rho = torch.linspace(-1, 1, 201, dtype=torch.float64)
    nu = relu_nu(rho, 0.0, -1.0)
    assert float(nu[-1]) == 0.0
    assert math.isclose(float(nu[0]), 0.5, rel_tol=1e-12)  # (c+ − c−)²/2
    assert bool((nu[1:] <= nu[:-1] + 1e-15).all()) and bool((nu >= 0).all())
    V = random_spd(3, 1)
    b = drift_relu(V, 0.0, -1.0)
    assert bool((torch.diagonal(b) == 0).all())


def test_scenario_table() -> None:
    g = 0.6
    assert Scenario("resnet", g).kappa_lin == pytest.approx(2 * g * g)
    assert Scenario("attention", g, 0.5).kappa_lin == pytest.approx(g * g * (2 - g * g))
    assert Scenario("block", g, 0.5).kappa_lin == pytest.approx(g * g * (4 - g * g))
    assert Scenario("block", g, 0.5).kappa_att == pytest.approx(g**4 / 0.25)
    assert Scenario("linear", g).kappa_att == 0.0
    assert Scenario("resnet", 1.0).default_dt() == pytest.approx(0.004)


# ---- check 6: matrix-free noise ----------------------------------------------------------------------------


def noise_jacobian(V: torch.Tensor, L: torch.Tensor, k_lin: float, k_att: float) -> torch.Tensor:
    """Jacobian ``J (p, 2m²)`` of the linear map ``(G1, G2) ↦ upper triangle of ξ``."""
    m = V.shape[-1]
    iu = torch.triu_indices(m, m)
    cols = []
    for which in range(2):
        for e in range(m * m):
            G = torch.zeros(2, m * m, dtype=V.dtype)
            G[which, e] = 1.0
            xi = matrix_free_noise(V, L, G[0].view(m, m), G[1].view(m, m), k_lin, k_att)
            cols.append(xi[iu[0], iu[1]])
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("root", ["cholesky", "eigen"])
def test_noise_jacobian_exact(m: int, root: str) -> None:
    V = random_spd(m, seed=20 + m)
    sc = Scenario("block", 0.9, 0.5)
    L = torch.linalg.cholesky(V) if root == "cholesky" else eigen_sqrt(V)
    J = noise_jacobian(V, L, sc.kappa_lin, sc.kappa_att)
    ref = I.to_pxp(sc.kappa_lin * I.sigma_lin_index(V) + sc.kappa_att * I.attention_diffusion_index(V))
    assert normwise(J @ J.T, ref) <= 1e-12


def test_noise_monte_carlo_and_symmetry() -> None:
    m, N = 3, 200_000
    V = random_spd(m, seed=5)
    sc = Scenario("attention", 0.9, 0.5)
    g = torch.Generator().manual_seed(11)
    L, _ = psd_sqrt(V.expand(N, m, m))
    G1 = torch.randn(N, m, m, generator=g, dtype=torch.float64)
    G2 = torch.randn(N, m, m, generator=g, dtype=torch.float64)
    xi = matrix_free_noise(V.expand(N, m, m), L, G1, G2, sc.kappa_lin, sc.kappa_att)
    assert torch.equal(xi, xi.mT)
    iu = torch.triu_indices(m, m)
    u = xi[:, iu[0], iu[1]]
    est = u.T @ u / N  # mean is exactly 0
    th = I.sigma_pxp(sc, V)
    assert normwise(est, th) <= 0.02
    dg = torch.diagonal(th)
    se = torch.sqrt((dg[:, None] * dg[None, :] + th**2) / N)
    assert float(((est - th) / se).abs().max()) <= 4.0


def test_psd_sqrt_fallback_only_for_failed_paths() -> None:
    V = torch.stack([random_spd(3, 1), torch.diag(torch.tensor([1.0, 0.5, -1e-3], dtype=torch.float64))])
    L, clipped = psd_sqrt(V)
    assert clipped.tolist() == [0, 1]
    assert torch.allclose(L[0], torch.linalg.cholesky(V[0]))  # the good path keeps its Cholesky factor
    assert torch.allclose(L[1] @ L[1].T, torch.diag(torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)))
