"""Exact single-head "theory" blocks of the Shaped Transformer (spec §2.1–§2.5, Noci et al. 2023 Eq. 1,
4, 9, 11).

Theory parameterization (spec §2.7): every weight has iid N(0, 1) entries and the ``1/√n`` factors are written
explicitly; hidden width ``n``; a single head; no ``W^O``; no LayerNorm; ``λ = sqrt(1 − γ²)``.

Every module can hold an independent set of weights per path: pass ``batch=B`` and the weights get a leading
dimension ``B`` and the input must be ``(B, m, n)``. :meth:`resample` redraws all weights from a
``torch.Generator`` (fresh weights per layer and per path when sampling finite networks); ``draw=False`` builds
a module whose weights are unset and advances the generator as the draw would (:meth:`skip_draw`), for a caller
that resamples before every use.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from deeplimit.errors import DeeplimitError

# variant → (add identity, subtract uniform U, temperature √(n n_k) instead of √n_k); spec §2.3 and §6.
ATTENTION_VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "shaped": (True, True, True),  # Eq. 9: I + Softmax(Y/τ0√(n n_k)) − U
    "softmax": (False, False, False),  # standard Softmax(Y/√n_k)
    "softmax-wide": (False, False, True),  # "only τ² = n n_k"
    "center": (False, True, False),  # "only center": Softmax(Y/√n_k) − U
    "center-wide": (False, True, True),  # "τ² = n n_k, center"
    "identity": (True, False, False),  # "only id": I + Softmax(Y/√n_k)
    "identity-wide": (True, False, True),  # "id, τ² = n n_k"
    "id-center": (True, True, False),  # "id, center" with the standard temperature
}


def relu_slopes(n: int, c_plus: float, c_minus: float) -> tuple[float, float, float]:
    """``(s+, s−, c)`` with ``s± = 1 + c±/√n`` and ``c = 2/(s+² + s−²)`` (spec §2.4)."""
    sp, sm = 1 + c_plus / math.sqrt(n), 1 + c_minus / math.sqrt(n)
    return sp, sm, 2.0 / (sp * sp + sm * sm)


def shaped_relu(x: Tensor, s_plus: float, s_minus: float) -> Tensor:
    """``σ_s(x) = s+ max(x, 0) + s− min(x, 0)`` elementwise (spec §2.4)."""
    # this is on the sampler's hot path. For s+ ≥ s− > 0 (the shaped ReLU at n > c−²: s± = 1 + c±/√n, c+ ≥ c−),
    # σ_s(x) = max(s+ x, s− x) bit for bit: rounding is monotone, so the larger exact product stays the larger
    # rounded one; both products of a zero or an infinity carry its sign, NaN stays NaN, and x·1 is x. Two passes
    # instead of the select's four (compare, two products, select): ~8x faster. Not with s− = 0 (max(inf, NaN) at
    # x = +inf), nor under autograd (max splits the gradient at x = 0, where the select gives s−).
    if s_plus >= s_minus > 0 and not (x.requires_grad and torch.is_grad_enabled()):
        y = x * s_minus
        return torch.maximum(x if s_plus == 1.0 else x * s_plus, y, out=y)
    return torch.where(x > 0, x * s_plus, x * s_minus)


def temperature(n: int, n_k: int, tau0: float, variant: str) -> float:
    """Softmax temperature: ``τ0 √(n n_k)`` for shaped/"-wide" variants, ``√n_k`` for the standard ones."""
    if variant not in ATTENTION_VARIANTS:
        raise DeeplimitError(
            f"unknown attention variant {variant!r}; use one of {', '.join(ATTENTION_VARIANTS)}"
        )
    wide = ATTENTION_VARIANTS[variant][2]
    return tau0 * math.sqrt(n * n_k) if wide else math.sqrt(n_k)


def attention_matrix(Y: Tensor, tau: float, variant: str = "shaped") -> Tensor:
    """Attention matrix from logits ``Y (..., m, m)`` (no mask): ``[I] + Softmax(Y/τ) [− U]`` (spec §2.3, §6).

    Softmax subtracts the row max (inside ``torch.softmax``). Rows always sum to 1 for the shaped variant.
    """
    ident, center, _ = ATTENTION_VARIANTS[variant]
    m = Y.shape[-1]
    A = torch.softmax(Y / tau, dim=-1)
    if center:
        A = A - 1.0 / m
    if ident:
        A = A + torch.eye(m, dtype=Y.dtype, device=Y.device)
    return A


@functools.cache
def _normal_consumes_uniforms(dtype: torch.dtype) -> bool:
    """Whether ``t.normal_()`` of a contiguous CPU tensor with ``k ≥ 16`` entries advances its generator exactly as
    ``uniform_()`` of ``k`` entries, plus 16 more when 16 ∤ k (PyTorch's Box–Muller fill: one uniform per entry, the
    last block of 16 redrawn). Checked on this PyTorch, so :func:`skip_normal` never changes a random stream."""
    for k in (16, 17, 48, 50):
        a, b = torch.Generator().manual_seed(k), torch.Generator().manual_seed(k)
        torch.empty(k, dtype=dtype).normal_(generator=a)
        torch.empty(k + (16 if k % 16 else 0), dtype=dtype).uniform_(generator=b)
        if not torch.equal(a.get_state(), b.get_state()):
            return False
    return True


def skip_normal(t: Tensor, generator: torch.Generator | None = None) -> None:
    """Advance ``generator`` as ``t.normal_(generator=generator)`` would, at about a quarter of its cost; ``t``'s
    values are overwritten (with uniforms, or normals where the cheaper way does not apply)."""
    k = t.numel()
    if k >= 16 and t.device.type == "cpu" and t.is_contiguous() and _normal_consumes_uniforms(t.dtype):
        t.uniform_(generator=generator)
        if k % 16:
            torch.empty(16, dtype=t.dtype).uniform_(generator=generator)
    else:
        t.normal_(generator=generator)


def _check_gamma(gamma: float) -> float:
    if not 0.0 <= gamma <= 1.0:
        raise DeeplimitError(f"gamma must lie in [0, 1] so that λ = sqrt(1 − γ²) is real, got {gamma!r}")
    return math.sqrt(1.0 - gamma * gamma)


class _TheoryModule(nn.Module):
    """Shared weight handling: N(0, 1) parameters with an optional leading path dimension."""

    def __init__(self, batch: int | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.batch = batch
        self.dtype = dtype

    def _param(self, *shape: int) -> nn.Parameter:
        full = ((self.batch,) if self.batch is not None else ()) + shape
        return nn.Parameter(torch.empty(full, dtype=self.dtype))

    @torch.no_grad()
    def resample(self, generator: torch.Generator | None = None) -> None:
        """Redraw every weight iid N(0, 1) (theory parameterization)."""
        for p in self.parameters():
            p.normal_(0.0, 1.0, generator=generator)

    @torch.no_grad()
    def skip_draw(self, generator: torch.Generator | None = None) -> None:
        """Advance ``generator`` exactly as :meth:`resample` would, without computing the normals (the weights are
        left unset): for a caller that redraws before every use, e.g. the finite-network sampler."""
        for p in self.parameters():
            skip_normal(p, generator)

    def _first_draw(self, generator: torch.Generator | None, draw: bool) -> None:
        if draw:
            self.resample(generator)
        else:
            self.skip_draw(generator)


class ShapedAttentionLayer(_TheoryModule):
    """Residual attention layer ``X ↦ λX + γ A X W^V/√n`` (spec §2.1, Eq. 1) with ``A`` from
    :data:`ATTENTION_VARIANTS`.

    Logits ``Y = (X W^Q/√n)(X W^K/√n)ᵀ``, so ``E[Y^{αβ}Y^{δω}] = n_k V^{αδ}V^{βω}`` (Lemma C.1). Default
    ``variant="shaped"``: ``A = I + Softmax(Y/τ) − U`` with ``τ = τ0 √(n n_k)`` (Eq. 9).
    Input ``X (..., m, n)`` (``(B, m, n)`` when ``batch=B``) → same shape.
    """

    def __init__(
        self,
        n: int,
        n_k: int | None = None,
        gamma: float = 1 / math.sqrt(8),
        tau0: float = 1.0,
        variant: str = "shaped",
        batch: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
        *,
        draw: bool = True,
    ) -> None:
        super().__init__(batch, dtype)
        self.n, self.n_k = n, n if n_k is None else n_k
        self.gamma, self.lam = gamma, _check_gamma(gamma)
        self.tau = temperature(n, self.n_k, tau0, variant)
        self.variant = variant
        self.W_Q = self._param(n, self.n_k)
        self.W_K = self._param(n, self.n_k)
        self.W_V = self._param(n, n)
        self._first_draw(generator, draw)

    def attention(self, X: Tensor) -> Tensor:
        """Attention matrix ``A (..., m, m)`` for input ``X (..., m, n)``."""
        s = 1.0 / math.sqrt(self.n)
        Y = (X @ self.W_Q * s) @ (X @ self.W_K * s).mT
        return attention_matrix(Y, self.tau, self.variant)

    def forward(self, X: Tensor) -> Tensor:
        return self.lam * X + self.gamma * (self.attention(X) @ X) @ self.W_V / math.sqrt(self.n)


class ShapedReLUResidualMLP(_TheoryModule):
    """Residual shaped-ReLU MLP ``X ↦ λX + γ σ_s(X W^pre/√n) sqrt(c/n) W^post`` (spec §2.4, Eq. 4).

    Hidden width ``n``; ``s± = 1 + c±/√n``; default ``c+ = 0, c− = −1``. ``X (..., m, n)`` → same shape.
    """

    def __init__(
        self,
        n: int,
        gamma: float = 1 / math.sqrt(8),
        c_plus: float = 0.0,
        c_minus: float = -1.0,
        batch: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
        *,
        draw: bool = True,
    ) -> None:
        super().__init__(batch, dtype)
        self.n = n
        self.gamma, self.lam = gamma, _check_gamma(gamma)
        self.s_plus, self.s_minus, self.c = relu_slopes(n, c_plus, c_minus)
        self.W_pre = self._param(n, n)
        self.W_post = self._param(n, n)
        self._first_draw(generator, draw)

    def forward(self, X: Tensor) -> Tensor:
        H = shaped_relu(X @ self.W_pre / math.sqrt(self.n), self.s_plus, self.s_minus)
        return self.lam * X + self.gamma * math.sqrt(self.c / self.n) * (H @ self.W_post)


class ShapedReLUMLP(_TheoryModule):
    """Plain shaped-ReLU MLP layer (a) ``X ↦ σ_s(X) sqrt(c/n) W`` (spec §3.2, Li, Nica & Roy 2022).

    ``σ_s`` acts on ``X`` directly, so inputs should have Gaussian-like coordinates. ``X (..., m, n)``.
    """

    def __init__(
        self,
        n: int,
        c_plus: float = 0.0,
        c_minus: float = -1.0,
        batch: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
        *,
        draw: bool = True,
    ) -> None:
        super().__init__(batch, dtype)
        self.n = n
        self.s_plus, self.s_minus, self.c = relu_slopes(n, c_plus, c_minus)
        self.W = self._param(n, n)
        self._first_draw(generator, draw)

    def forward(self, X: Tensor) -> Tensor:
        return math.sqrt(self.c / self.n) * shaped_relu(X, self.s_plus, self.s_minus) @ self.W


class ShapedBlock(nn.Module):
    """Full shaped Transformer block (spec §2.5, Eq. 11): shaped attention then residual shaped-ReLU MLP.

    Same ``λ, γ`` in both sub-blocks; one block advances SDE time by ``1/n``. ``X (..., m, n)`` → same shape.
    """

    def __init__(
        self,
        n: int,
        n_k: int | None = None,
        *,
        gamma: float = 1 / math.sqrt(8),
        tau0: float = 1.0,
        c_plus: float = 0.0,
        c_minus: float = -1.0,
        variant: str = "shaped",
        batch: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
        draw: bool = True,
    ) -> None:
        super().__init__()
        self.attn = ShapedAttentionLayer(n, n_k, gamma, tau0, variant, batch, dtype, generator, draw=draw)
        self.mlp = ShapedReLUResidualMLP(n, gamma, c_plus, c_minus, batch, dtype, generator, draw=draw)

    @torch.no_grad()
    def resample(self, generator: torch.Generator | None = None) -> None:
        self.attn.resample(generator)
        self.mlp.resample(generator)

    @torch.no_grad()
    def skip_draw(self, generator: torch.Generator | None = None) -> None:
        self.attn.skip_draw(generator)
        self.mlp.skip_draw(generator)

    def forward(self, X: Tensor) -> Tensor:
        return self.mlp(self.attn(X))
