"""The fused solver step and its CPU linear algebra equal the readable reference functions (float64)."""

from __future__ import annotations

import math

import pytest
import torch

import deeplimit.sde.solver as solver_mod
from deeplimit.sde import Band, Euler, Scenario, matrix_free_noise, psd_sqrt, solve
from deeplimit.sde._linalg import cholesky_ex, matmul
from deeplimit.sde.events import EXIT_HIGH, EXIT_LOW, RUNNING
from deeplimit.sde.scenarios import equicorrelated
from deeplimit.sde.step import em_step


def _random_psd(c: int, m: int, g: torch.Generator) -> torch.Tensor:
    X = torch.randn(c, m, 3 * m, generator=g, dtype=torch.float64)
    scale = 0.2 + 3 * torch.rand(c, 1, 1, generator=g, dtype=torch.float64)
    return X @ X.mT / (3 * m) * scale


@pytest.mark.parametrize("kind", ["mlp", "resnet", "attention", "block", "linear"])
@pytest.mark.parametrize("m", [2, 5, 40])
def test_fused_step_equals_reference_step(kind: str, m: int) -> None:
    g = torch.Generator().manual_seed(m)
    sc = Scenario(kind, 0.7, 0.6, 0.3, -1.2)
    V = _random_psd(6, m, g)
    L, _ = psd_sqrt(V)
    G = torch.randn(6, m, 2 * m, generator=g, dtype=torch.float64)
    h = 0.01
    ref = V + h * sc.drift(V) + math.sqrt(h) * matrix_free_noise(
        V, L, G[..., :m], G[..., m:], sc.kappa_lin, sc.kappa_att
    )
    new = em_step(sc, V, L, G, h)
    assert float((new - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    assert torch.equal(new, new.mT)  # symmetric by construction, not up to round-off


@pytest.mark.parametrize("m", [8, 40, 64])
def test_cholesky_matches_torch_and_flags_failures(m: int) -> None:
    g = torch.Generator().manual_seed(0)
    V = _random_psd(5, m, g)
    V[2] -= 10 * torch.eye(m, dtype=torch.float64)  # indefinite
    L, info = cholesky_ex(V)
    Lt, info_t = torch.linalg.cholesky_ex(V)
    assert (info != 0).tolist() == (info_t != 0).tolist() == [False, False, True, False, False]
    ok = info == 0
    assert torch.allclose(L[ok], Lt[ok], rtol=0, atol=1e-12)
    assert torch.equal(L[ok], L[ok].tril())


def test_matmul_matches_torch_on_strided_views() -> None:
    g = torch.Generator().manual_seed(1)
    A = torch.randn(3, 40, 40, generator=g, dtype=torch.float64)
    B = torch.randn(3, 40, 80, generator=g, dtype=torch.float64)
    for a, b in ((A, B[..., 40:]), (A.mT, B[..., :40]), (A.float(), B.float()[..., 3:43])):
        tol = 1e-4 if a.dtype == torch.float32 else 1e-12
        assert float((matmul(a, b) - a @ b).abs().max()) <= tol * float((a @ b).abs().max())


def test_torch_blas_switch_gives_the_same_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = Scenario("block", 8**-0.5)
    V0 = equicorrelated(40, 0.3)
    a = solve(sc, Euler(), 0.0, 0.002, 0.0005, V0, paths=6, seed=2).terminal
    monkeypatch.setenv("DEEPLIMIT_SDE_BLAS", "torch")
    b = solve(sc, Euler(), 0.0, 0.002, 0.0005, V0, paths=6, seed=2).terminal
    assert float((a - b).abs().max()) <= 1e-12


def test_paths_do_not_depend_on_the_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 tokens → 40 paths per chunk; 100 paths run in three chunks, then in one
    sc = Scenario("block", 8**-0.5)
    V0 = equicorrelated(40, 0.3)
    a = solve(sc, Euler(), 0.0, 0.002, 0.0005, V0, paths=100, seed=5).terminal
    monkeypatch.setattr(solver_mod, "path_chunk", lambda m: 10**6)
    b = solve(sc, Euler(), 0.0, 0.002, 0.0005, V0, paths=100, seed=5).terminal
    assert float((a - b).abs().max()) <= 1e-12


def test_cholesky_band_test_matches_eigenvalues() -> None:
    g = torch.Generator().manual_seed(3)
    V = _random_psd(200, 6, g) * torch.logspace(-3, 3, 200, dtype=torch.float64)[:, None, None]
    lo, hi = 1e-3, 1e2
    w = torch.linalg.eigvalsh(V)
    expect = torch.full((200,), RUNNING)
    expect[w[:, 0] < lo] = EXIT_LOW
    expect[w[:, -1] > hi] = EXIT_HIGH
    assert len(set(expect.tolist())) == 3  # all three outcomes occur
    assert torch.equal(Band(lo, hi).exit_codes(V), expect)
