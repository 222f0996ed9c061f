"""Activations: the shaped ReLU (Li, Nica & Roy 2022; Noci et al. 2023 Eq. 4) and a declarative factory.

The shaped ReLU ``σ_s(x) = s+·max(x, 0) + s−·min(x, 0)`` with ``s± = 1 + c±/√n`` approaches the identity as
the width ``n`` grows, which is what keeps a deep-and-wide network in the covariance-SDE regime. Its
normalising constant ``c = 1/E[σ_s(g)²] = 2/(s+² + s−²)`` (g ~ N(0, 1)) keeps the second moment at 1
(spec §2.4).

The factory :func:`get_activation` mirrors DeepMind DKS's ``get_transformed_activations`` in spirit: a name
plus keyword arguments gives a module; :func:`c_phi` gives the variance gain ``Var φ(z)/Var z`` that the
scaling core uses to set initial variances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.nn._validate import check_bool, check_real

SHAPED_RELU_MODES = ("fixed", "recover", "learn")


def shaped_relu_slopes(width: int, c_plus: float = 0.0, c_minus: float = -1.0) -> tuple[float, float]:
    """``(s+, s−) = (1 + c+/√n, 1 + c−/√n)``."""
    check_positive("width", width, integer=True)
    return 1.0 + c_plus / math.sqrt(width), 1.0 + c_minus / math.sqrt(width)


def shaped_relu_constant(s_plus: float, s_minus: float) -> float:
    """Normalising constant ``c = 2/(s+² + s−²)``, so that ``E[c·σ_s(g)²] = 1`` for g ~ N(0, 1)."""
    return 2.0 / (s_plus ** 2 + s_minus ** 2)


class ShapedReLU(nn.Module):
    """``σ_s(x) = s+·max(x, 0) + s−·min(x, 0)`` elementwise, any shape.

    mode:
      * ``"fixed"``: ``s±`` stay at ``1 + c±/√width`` (buffers);
      * ``"recover"``: ``s−`` moves linearly to 0 over ``recover_steps`` (call :meth:`set_step`), after which
        the module is a plain ReLU (App. D "recover");
      * ``"learn"``: ``s+`` and ``s−`` are trainable scalars.

    ``normalize=True`` multiplies the output by ``√c`` so that ``E[out²] = 1`` for standard Gaussian input;
    the default leaves the ``√(c/n)`` factor to the following linear layer as in spec §2.4 (see :attr:`c`).
    """

    def __init__(self, width: int, c_plus: float = 0.0, c_minus: float = -1.0, *,
                 mode: Literal["fixed", "recover", "learn"] = "fixed", recover_steps: int = 4000,
                 normalize: bool = False) -> None:
        super().__init__()
        if mode not in SHAPED_RELU_MODES:
            raise DeeplimitError(f"unknown shaped-ReLU mode {mode!r}; valid modes: "
                                 f"{', '.join(SHAPED_RELU_MODES)}")
        check_positive("recover_steps", recover_steps, integer=True)
        for name, c in (("c_plus", c_plus), ("c_minus", c_minus)):
            check_real(name, c, fix="the slopes are 1 + c/sqrt(width), e.g. c_plus=0, c_minus=-1")
        normalize = check_bool("normalize", normalize)
        s_plus, s_minus = shaped_relu_slopes(width, c_plus, c_minus)
        self.width, self.c_plus, self.c_minus = width, float(c_plus), float(c_minus)
        self.mode, self.recover_steps, self.normalize = mode, recover_steps, normalize
        slopes = torch.tensor(s_plus), torch.tensor(s_minus)
        if mode == "learn":
            self.s_plus, self.s_minus = nn.Parameter(slopes[0]), nn.Parameter(slopes[1])
        else:  # buffers, so that a moving schedule never triggers a torch.compile recompile
            self.register_buffer("s_plus", slopes[0])
            self.register_buffer("s_minus", slopes[1])
        self.register_buffer("s_minus_init", slopes[1].clone(), persistent=False)

    @property
    def c(self) -> float:
        """Current normalising constant ``2/(s+² + s−²)``."""
        return shaped_relu_constant(float(self.s_plus), float(self.s_minus))

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """``"recover"``: ``s− = s−_init · max(0, 1 − step/recover_steps)``; a no-op for other modes."""
        if self.mode != "recover":
            return
        self.s_minus.copy_(self.s_minus_init * max(0.0, 1.0 - float(step) / self.recover_steps))

    def forward(self, x: Tensor) -> Tensor:
        # One select and one multiply: x·s+ where x > 0, x·s− elsewhere.
        s_plus, s_minus = self.s_plus.to(x.dtype), self.s_minus.to(x.dtype)
        y = x * torch.where(x > 0, s_plus, s_minus)
        if self.normalize:
            y = y * torch.rsqrt((s_plus ** 2 + s_minus ** 2) / 2)
        return y

    def extra_repr(self) -> str:
        return f"width={self.width}, c_plus={self.c_plus}, c_minus={self.c_minus}, mode={self.mode}"


class Abs(nn.Module):
    """``|x|`` (the shaped ReLU's ``s+ = 1, s− = −1`` end point)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "abs": Abs,
    "identity": nn.Identity,
    "shaped_relu": ShapedReLU,
}
ACTIVATIONS = tuple(_FACTORIES)


def get_activation(name: str, **kwargs) -> nn.Module:
    """Build an activation module by name.

    ``get_activation("shaped_relu", width=n, c_minus=-1.0, mode="recover")``; ``get_activation("gelu")``
    (``approximate="tanh"`` is passed through). Unknown names raise a DeeplimitError listing valid ones.
    """
    if name not in _FACTORIES:
        raise DeeplimitError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    if name == "shaped_relu" and "width" not in kwargs:
        raise DeeplimitError("shaped_relu needs the width: get_activation('shaped_relu', width=n), since its "
                             "slopes are 1 + c±/√n")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as err:
        raise DeeplimitError(f"bad arguments {sorted(kwargs)} for activation {name!r}: {err}; "
                             "see deeplimit.nn.activations.get_activation") from err


def _gauss_hermite_var(fn: Callable[[np.ndarray], np.ndarray], degree: int = 200) -> float:
    """``Var fn(z)`` for z ~ N(0, 1) by Gauss–Hermite quadrature (probabilists' weights sum to √(2π))."""
    z, w = np.polynomial.hermite_e.hermegauss(degree)
    w = w / w.sum()
    f = fn(z)
    mean = float(w @ f)
    return float(w @ (f - mean) ** 2)


def c_phi(name: str, **kwargs) -> float:
    """Variance gain ``Var φ(z) / Var z`` of activation ``name`` for z ~ N(0, 1).

    Closed forms for the piecewise-linear family (quadrature converges slowly at the kink): a map with
    slopes ``(a, b)`` on ``(x>0, x<0)`` has ``Var = (a² + b²)/2 − (a − b)²/(2π)``; ReLU ``½ − 1/(2π)``,
    abs ``1 − 2/π``, identity 1. Smooth activations (gelu, tanh) use 200-point Gauss–Hermite quadrature.
    """
    if name not in _FACTORIES:
        raise DeeplimitError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    piecewise = {"relu": (1.0, 0.0), "abs": (1.0, -1.0), "identity": (1.0, 1.0)}
    if name == "shaped_relu":
        if "width" not in kwargs:
            raise DeeplimitError("c_phi('shaped_relu') needs width=n (slopes are 1 + c±/√n)")
        allowed = {"width", "c_plus", "c_minus"}
        piecewise[name] = shaped_relu_slopes(**{k: v for k, v in kwargs.items() if k in allowed})
    if name in piecewise:
        a, b = piecewise[name]
        return (a * a + b * b) / 2.0 - (a - b) ** 2 / (2.0 * math.pi)
    module = get_activation(name, **kwargs)
    with torch.no_grad():
        fn = lambda z: module(torch.from_numpy(z)).numpy()
        return _gauss_hermite_var(fn)
