"""Shaped ReLU, the activation factory and the variance gains c_phi."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from deeplimit.errors import DeeplimitError
from deeplimit.nn.activations import (
    ACTIVATIONS,
    ShapedReLU,
    c_phi,
    get_activation,
    shaped_relu_constant,
    shaped_relu_slopes,
)


def _gaussian_expectation(fn) -> float:
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    neg, _ = integrate.quad(lambda z: fn(z) * pdf(z), -np.inf, 0.0, epsabs=1e-13)
    pos, _ = integrate.quad(lambda z: fn(z) * pdf(z), 0.0, np.inf, epsabs=1e-13)
    return neg + pos


@pytest.mark.parametrize("width, c_plus, c_minus", [(100, 0.0, -1.0), (16, 0.5, -1.5), (1000, 1.0, 0.0)])
def test_normalising_constant_gives_unit_second_moment(width, c_plus, c_minus):
    s_plus, s_minus = shaped_relu_slopes(width, c_plus, c_minus)
    c = shaped_relu_constant(s_plus, s_minus)
    act = ShapedReLU(width, c_plus, c_minus).double()
    sigma = lambda z: float(act(torch.tensor(z, dtype=torch.float64)))
    # the module's slopes are float32 buffers, so use its own constant for the exact identity
    assert _gaussian_expectation(lambda z: act.c * sigma(z) ** 2) == pytest.approx(1.0, abs=1e-10)
    assert act.c == pytest.approx(c, rel=1e-6)
    normalized = ShapedReLU(width, c_plus, c_minus, normalize=True).double()
    g = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(normalized(g).square().mean()) == pytest.approx(1.0, abs=0.01)


def test_shaped_relu_formula_and_default_slopes():
    act = ShapedReLU(64)  # project default c+ = 0, c− = −1
    assert float(act.s_plus) == pytest.approx(1.0) and float(act.s_minus) == pytest.approx(1 - 1 / 8)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    torch.testing.assert_close(act(x), torch.tensor([-2 * 0.875, -0.5 * 0.875, 0.0, 0.5, 3.0]))


def test_recover_schedule_reaches_plain_relu():
    act = ShapedReLU(64, mode="recover", recover_steps=10)
    x = torch.linspace(-3, 3, 13)
    act.set_step(5)
    assert float(act.s_minus) == pytest.approx(0.875 / 2)
    act.set_step(10)
    torch.testing.assert_close(act(x), torch.relu(x))
    act.set_step(50)  # clamped at the end of the warm-up
    torch.testing.assert_close(act(x), torch.relu(x))
    assert act.c == pytest.approx(2.0)  # He's ReLU gain


def test_learn_mode_has_trainable_slopes():
    act = ShapedReLU(64, mode="learn")
    assert {name for name, _ in act.named_parameters()} == {"s_plus", "s_minus"}
    act(torch.randn(10)).sum().backward()
    assert act.s_minus.grad is not None
    fixed = ShapedReLU(64)
    assert list(fixed.parameters()) == []
    fixed.set_step(100)  # no-op outside "recover"
    assert float(fixed.s_minus) == pytest.approx(0.875)


def test_factory_builds_each_activation():
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(get_activation("relu")(x), torch.relu(x))
    torch.testing.assert_close(get_activation("abs")(x), x.abs())
    torch.testing.assert_close(get_activation("identity")(x), x)
    torch.testing.assert_close(get_activation("tanh")(x), torch.tanh(x))
    torch.testing.assert_close(get_activation("gelu", approximate="tanh")(x),
                               torch.nn.functional.gelu(x, approximate="tanh"))
    shaped = get_activation("shaped_relu", width=100, c_minus=-1.0, mode="recover")
    assert isinstance(shaped, ShapedReLU) and shaped.mode == "recover"


def test_factory_errors():
    with pytest.raises(DeeplimitError, match="valid names: " + ", ".join(ACTIVATIONS)):
        get_activation("swish")
    with pytest.raises(DeeplimitError, match="needs the width"):
        get_activation("shaped_relu")
    with pytest.raises(DeeplimitError, match="bad arguments"):
        get_activation("relu", width=3)
    with pytest.raises(DeeplimitError, match="valid modes"):
        ShapedReLU(10, mode="anneal")


def test_c_phi_closed_forms_and_quadrature():
    assert c_phi("relu") == pytest.approx(0.5 - 1 / (2 * math.pi), abs=1e-15)
    assert c_phi("abs") == pytest.approx(1 - 2 / math.pi, abs=1e-15)
    assert c_phi("identity") == 1.0
    for name in ("gelu", "tanh"):
        module = get_activation(name).double()

        def phi(z, module=module):
            return float(module(torch.tensor(z, dtype=torch.float64)))

        mean = _gaussian_expectation(phi)
        var = _gaussian_expectation(lambda z, phi=phi: phi(z) ** 2) - mean ** 2
        assert c_phi(name) == pytest.approx(var, rel=1e-8)
    # shaped ReLU: Var σ_s(z) = (s+² + s−²)/2 − (s+ − s−)²/(2π)
    s_plus, s_minus = shaped_relu_slopes(100, 0.0, -1.0)
    expected = (s_plus ** 2 + s_minus ** 2) / 2 - (s_plus - s_minus) ** 2 / (2 * math.pi)
    assert c_phi("shaped_relu", width=100) == pytest.approx(expected)
    with pytest.raises(DeeplimitError, match="valid names"):
        c_phi("softplus")
