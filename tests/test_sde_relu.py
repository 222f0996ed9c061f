"""Spec §9 check 5: exact finite-n shaped-ReLU identity by 2-D quadrature, convergence to ν, erratum
control."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from deeplimit.nn.theory import relu_slopes
from deeplimit.sde.coefficients import relu_nu

PAIRS = [(0.0, -1.0), (0.5, -1.5), (1.0, 0.0)]
RHOS = [-0.5, 0.3, 0.9]


def expectation_quadrature(rho: float, sp: float, sm: float) -> float:
    """``E[σ_s(g^α) σ_s(g^β)]`` for a standard bivariate normal with correlation ρ, by 2-D quadrature.

    Write ``g^α = x``, ``g^β = ρx + sqrt(1−ρ²) y`` with x, y iid N(0,1) and split the plane along the kinks
    ``x = 0`` and ``y = −ρx/sqrt(1−ρ²)`` so each piece is smooth.
    """
    s = math.sqrt(1 - rho * rho)
    phi = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    sig = lambda t: sp * t if t > 0 else sm * t
    f = lambda y, x: sig(x) * sig(rho * x + s * y) * phi(x) * phi(y)
    cut = lambda x: -rho * x / s
    total = 0.0
    for xlo, xhi in ((-12.0, 0.0), (0.0, 12.0)):
        total += integrate.dblquad(f, xlo, xhi, lambda x: -12.0, cut, epsabs=1e-13, epsrel=1e-13)[0]
        total += integrate.dblquad(f, xlo, xhi, cut, lambda x: 12.0, epsabs=1e-13, epsrel=1e-13)[0]
    return total


def closed_form_expectation(rho: float, sp: float, sm: float) -> float:
    """``E = [ρ + (s+ − s−)²/(s+² + s−²) · (1/π)(sqrt(1−ρ²) − ρ arccos ρ)] / c`` (spec §3.2, derived)."""
    c = 2 / (sp * sp + sm * sm)
    return (
        rho
        + (sp - sm) ** 2 / (sp * sp + sm * sm) / math.pi * (math.sqrt(1 - rho * rho) - rho * math.acos(rho))
    ) / c


@pytest.mark.parametrize("cp, cm", PAIRS)
def test_exact_identity_by_quadrature(cp: float, cm: float) -> None:
    for n in (100, 10_000):
        sp, sm, c = relu_slopes(n, cp, cm)
        for rho in RHOS:
            E = expectation_quadrature(rho, sp, sm)
            assert abs(E - closed_form_expectation(rho, sp, sm)) <= 1e-8
            lhs = n * (c * E - rho)
            rhs = c * float(relu_nu(torch.tensor(rho, dtype=torch.float64), cp, cm))
            # the quadrature error 1e-8 on E is multiplied by n·c
            assert abs(lhs - rhs) <= 2 * n * c * 1e-8 + 1e-12


@pytest.mark.parametrize("cp, cm", PAIRS)
def test_convergence_to_nu(cp: float, cm: float) -> None:
    for rho in RHOS:
        nu = float(relu_nu(torch.tensor(rho, dtype=torch.float64), cp, cm))
        errs = []
        for n in (10**4, 10**6):
            sp, sm, c = relu_slopes(n, cp, cm)
            exact = n * (c * closed_form_expectation(rho, sp, sm) - rho)
            errs.append(abs(exact - nu) / nu)
            assert errs[-1] == pytest.approx(abs(c - 1), rel=1e-5, abs=1e-9)
        assert errs[1] < 0.002
        assert errs[0] / errs[1] == pytest.approx(10.0, rel=0.05)  # O(n^{-1/2}): 100× n → 10× smaller


def test_app_b_formula_fails() -> None:
    # negative control (spec §10): App. B's ν = (c+ + c−)²/(2π)(sqrt(1−ρ²) + ρ arccos ρ) is wrong
    for cp, cm in PAIRS:
        n = 10_000
        sp, sm, c = relu_slopes(n, cp, cm)
        for rho in RHOS:
            exact = n * (c * expectation_quadrature(rho, sp, sm) - rho) / c
            wrong = (cp + cm) ** 2 / (2 * math.pi) * (math.sqrt(1 - rho * rho) + rho * math.acos(rho))
            assert abs(wrong - exact) / abs(exact) > 0.1
