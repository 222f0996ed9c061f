"""Spec §9 check 1: one-step moments of the finite network against the SDE coefficients.

Drift (attention): ``W^V`` integrated out exactly, antithetic logits ``±Y`` cancel the first-order term.
Diffusion: one full layer sampled in the canonical frame ``X = √n [L | 0]`` through the exact-in-law Gram
step (itself checked against explicit weights in ``test_sde_samplers.py``), ``n·Cov(ΔV)`` vs ``Σ(V)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeplimit.nn.theory import attention_matrix, relu_slopes
from deeplimit.sde import _index as I
from deeplimit.sde.coefficients import Scenario, drift_attention
from deeplimit.sde.samplers import _logit_core, gram_attention_step, gram_mlp_step

MILD = dict(gamma=0.6, tau0=0.7, n=400, scale=None)
STRESS = dict(gamma=0.9, tau0=0.5, n=1600, scale=3.0)


def test_covariance(scale: float | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    G = torch.randn(3, 6, generator=g, dtype=torch.float64)
    V = G @ G.T / 6
    if scale is not None:
        V = V * scale / float(torch.linalg.eigvalsh(V)[-1])
    return V


test_covariance.__test__ = False  # helper, not a test


def normwise(est: torch.Tensor, th: torch.Tensor) -> float:
    return float((est - th).abs().max() / th.abs().max())


def antithetic_drift(
    V: torch.Tensor, gamma: float, tau0: float, n: int, N: int, seed: int, bartlett: bool = True
) -> torch.Tensor:
    """``mean n γ² (½(A₊VA₊ᵀ + A₋VA₋ᵀ) − V)`` with ``Y = (L Z_Q)(L Z_K)ᵀ``, ``n_k = n`` (spec §9 check 1).

    ``bartlett=True`` draws ``Z_Q Z_Kᵀ`` as ``G R`` (same law, O(m²) per sample); ``False`` draws ``Z_Q,
    Z_K``.
    """
    m = V.shape[-1]
    L = torch.linalg.cholesky(V)
    tau = tau0 * n  # τ0 √(n n_k) with n_k = n
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    acc = torch.zeros(m, m, dtype=torch.float64)
    chunk = 5000
    for start in range(0, N, chunk):
        b = min(chunk, N - start)
        if bartlett:
            Y = L @ _logit_core(b, m, n, g, rng, torch.float64) @ L.mT
        else:
            FQ = L @ torch.randn(b, m, n, generator=g, dtype=torch.float64)
            FK = L @ torch.randn(b, m, n, generator=g, dtype=torch.float64)
            Y = FQ @ FK.mT
        Ap, Am = attention_matrix(Y, tau), attention_matrix(-Y, tau)
        acc += (0.5 * (Ap @ V @ Ap.mT + Am @ V @ Am.mT) - V).sum(0)
    return n * gamma**2 * acc / N


def one_step_cov(
    V: torch.Tensor, kind: str, gamma: float, tau0: float, n: int, N: int, seed: int
) -> torch.Tensor:
    """``n · Cov(ΔV)`` (p×p, upper triangle) of one layer/block sampled in law from ``V``."""
    m = V.shape[-1]
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sp, sm, c = relu_slopes(n, 0.0, -1.0)
    iu = torch.triu_indices(m, m)
    rows = []
    chunk = 20000 if kind == "attention" else 2000
    for start in range(0, N, chunk):
        b = min(chunk, N - start)
        Vb = V.expand(b, m, m).clone()
        if kind in ("attention", "block"):
            Vb = gram_attention_step(Vb, n, n, gamma, tau0 * n, "shaped", g, rng)
        if kind in ("resnet", "block"):
            Vb = gram_mlp_step(Vb, n, gamma, sp, sm, c, g, rng)
        rows.append((Vb - V)[:, iu[0], iu[1]])
    dv = torch.cat(rows)
    dv = dv - dv.mean(0)
    return n * dv.T @ dv / (N - 1)


@pytest.mark.parametrize("setting", ["mild", "stress"])
def test_attention_drift_antithetic(setting: str) -> None:
    p = MILD if setting == "mild" else STRESS
    V = test_covariance(p["scale"])
    est = antithetic_drift(V, p["gamma"], p["tau0"], p["n"], 100_000, seed=7)
    th = drift_attention(V, p["gamma"], p["tau0"])
    print(setting, "drift normwise", normwise(est, th))
    assert normwise(est, th) <= 0.02
    if setting == "stress":
        # power: dropping either drift term must fail by a wide margin
        m = V.shape[-1]
        C = V - V.mean(0, keepdim=True) - V.mean(1, keepdim=True) + V.mean()
        first = p["gamma"] ** 2 / p["tau0"] ** 2 * (V * C).sum() / m**2 * V
        assert normwise(est, th - first) > 0.2
        assert normwise(est, first) > 0.2


def attention_sigma(
    V: torch.Tensor, gamma: float, tau0: float, drop_att: bool = False, k_lin: float | None = None
) -> torch.Tensor:
    sc = Scenario("attention", gamma, tau0)
    kl = sc.kappa_lin if k_lin is None else k_lin
    S = kl * I.sigma_lin_index(V)
    if not drop_att:
        S = S + sc.kappa_att * I.attention_diffusion_index(V)
    return I.to_pxp(S)


@pytest.mark.parametrize("setting", ["mild", "stress"])
def test_attention_diffusion(setting: str) -> None:
    p = MILD if setting == "mild" else STRESS
    V = test_covariance(p["scale"])
    est = one_step_cov(V, "attention", p["gamma"], p["tau0"], p["n"], 100_000, seed=3)
    th = attention_sigma(V, p["gamma"], p["tau0"])
    print(setting, "diffusion normwise", normwise(est, th))
    assert normwise(est, th) <= 0.02
    if setting == "stress":
        assert normwise(est, attention_sigma(V, p["gamma"], p["tau0"], drop_att=True)) > 0.1
        assert normwise(est, attention_sigma(V, p["gamma"], p["tau0"], k_lin=2 * p["gamma"] ** 2)) > 0.1


def test_resnet_and_block_diffusion_mild() -> None:
    p = MILD
    V = test_covariance(None)
    N = 40_000  # MLP layers draw m×n pre-activations; 4·10⁴ keeps this test near 5 s
    est_r = one_step_cov(V, "resnet", p["gamma"], p["tau0"], p["n"], N, seed=5)
    th_r = I.to_pxp(Scenario("resnet", p["gamma"]).kappa_lin * I.sigma_lin_index(V))
    # relative SE of a covariance entry is ≈ sqrt(2/N) = 0.7%; a 3% bound is > 4 SE on the largest entry.
    assert normwise(est_r, th_r) <= 0.03
    est_b = one_step_cov(V, "block", p["gamma"], p["tau0"], p["n"], N, seed=6)
    th_b = I.sigma_pxp(Scenario("block", p["gamma"], p["tau0"]), V)
    assert normwise(est_b, th_b) <= 0.03


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["mild", "stress"])
def test_resnet_and_block_diffusion_full(setting: str) -> None:
    p = MILD if setting == "mild" else STRESS
    V = test_covariance(p["scale"])
    est_r = one_step_cov(V, "resnet", p["gamma"], p["tau0"], p["n"], 100_000, seed=5)
    th_r = I.to_pxp(Scenario("resnet", p["gamma"]).kappa_lin * I.sigma_lin_index(V))
    assert normwise(est_r, th_r) <= 0.02
    est_b = one_step_cov(V, "block", p["gamma"], p["tau0"], p["n"], 100_000, seed=6)
    th_b = I.sigma_pxp(Scenario("block", p["gamma"], p["tau0"]), V)
    assert normwise(est_b, th_b) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["mild", "stress"])
def test_attention_drift_explicit_logits(setting: str) -> None:
    # same check with Z_Q, Z_K drawn in full (m×n each) instead of the Bartlett form
    p = MILD if setting == "mild" else STRESS
    V = test_covariance(p["scale"])
    est = antithetic_drift(V, p["gamma"], p["tau0"], p["n"], 100_000, seed=8, bartlett=False)
    assert normwise(est, drift_attention(V, p["gamma"], p["tau0"])) <= 0.02


def test_lemma_c1_logit_moments() -> None:
    # E[Y^{αβ} Y^{δω}] = n_k V^{αδ} V^{βω} for Y = (X W^Q/√n)(X W^K/√n)ᵀ (spec §2.1, §9 check 7)
    V = test_covariance(None)
    m, n_k, N = 3, 16, 200_000
    L = torch.linalg.cholesky(V)
    g = torch.Generator().manual_seed(2)
    Y = (L @ torch.randn(N, m, n_k, generator=g, dtype=torch.float64)) @ (
        L @ torch.randn(N, m, n_k, generator=g, dtype=torch.float64)
    ).mT
    Yf = Y.reshape(N, m * m)
    est = (Yf.T @ Yf / N).reshape(m, m, m, m)
    th = n_k * torch.einsum("ad,bw->abdw", V, V)
    assert normwise(est, th) <= 0.03
    assert math.isfinite(float(est.sum()))
