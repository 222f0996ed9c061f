"""Finite-network samplers of ``V_ℓ = X_ℓ X_ℓᵀ/n`` (spec §5.5): exact cheap sampler and explicit weights.

* ``method="cheap"``: replaces ``X W/√n`` by ``L Z`` (``L Lᵀ = V``, ``Z`` iid N(0,1)); the sequence
  ``(V_ℓ)`` has
  exactly the law of the explicit network, at ``O(B m n)`` random numbers per layer instead of ``O(B n²)``.
* ``method="gram"`` (derived, default): the same law with the state kept as ``V`` in the canonical frame
  ``X = √n [L | 0]`` (rotation invariance): Gram products of iid Gaussian matrices are drawn by the Bartlett
  decomposition, so attention layers cost ``O(B m³)`` independent of ``n``; MLP layers still draw the ``m×n``
  pre-activations (the nonlinearity needs them). Not available for the plain MLP (a), whose ``V`` is not
  Markov.
* ``method="explicit"``: the theory modules of :mod:`deeplimit.nn.theory` with fresh N(0,1) weights per
  path and
  layer (the reference the cheap sampler is tested against, spec §9 check 7).

Both apply the stopping rule of §3.8 after every layer and freeze stopped paths at their last in-band state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError
from deeplimit.nn.theory import (
    ATTENTION_VARIANTS,
    ShapedAttentionLayer,
    ShapedBlock,
    ShapedReLUMLP,
    ShapedReLUResidualMLP,
    attention_matrix,
    relu_slopes,
    shaped_relu,
    temperature,
)
from deeplimit.sde.events import RUNNING, Band, band_exit
from deeplimit.sde.names import METHODS
from deeplimit.sde.noise import psd_sqrt
from deeplimit.sde.saveat import SaveAt
from deeplimit.sde.solver import StoppedPaths, check_V0

NETWORK_KINDS = ("attention", "resnet", "block", "mlp")


@dataclass
class NetworkSamples(StoppedPaths):
    """Gram matrices of ``B`` finite networks.

    ``layers (S,)`` saved layer indices; ``V (S, B, m, m)``; ``terminal (B, m, m)`` (last in-band state
    for stopped
    paths); ``stop_layer (B,)`` = ``d*`` (``d`` if no exit); ``t_stop = d*/n``; ``reason (B,)`` codes as in
    :data:`deeplimit.sde.solver.REASONS`; ``n`` the width.
    """

    layers: Tensor
    V: Tensor
    terminal: Tensor
    stop_layer: Tensor
    reason: Tensor
    n: int

    @property
    def t_stop(self) -> Tensor:
        return self.stop_layer.double() / self.n


@dataclass(frozen=True)
class Network:
    """A finite shaped network of depth ``d`` (spec §2): what :func:`sample_network` draws ``V_ℓ`` of.

    ``kind``: ``attention`` (§2.1 with ``variant``), ``resnet`` (§2.4), ``block`` (§2.5) or ``mlp`` (plain (a));
    ``n, d, n_k``: width, depth (layers/blocks), key width (``None`` means ``n``, as in §4); ``gamma, tau0,
    c_plus, c_minus, variant``: layer hyper-parameters (§2; attention variants of §6). Checked on construction.
    """

    kind: str
    n: int
    d: int
    n_k: int | None = None
    gamma: float = 1 / math.sqrt(8)
    tau0: float = 1.0
    c_plus: float = 0.0
    c_minus: float = -1.0
    variant: str = "shaped"

    def __post_init__(self) -> None:
        if self.kind not in NETWORK_KINDS:
            raise DeeplimitError(f"unknown network kind {self.kind!r}; use one of {', '.join(NETWORK_KINDS)}")
        if self.variant not in ATTENTION_VARIANTS:
            raise DeeplimitError(
                f"unknown attention variant {self.variant!r}; use one of {', '.join(ATTENTION_VARIANTS)}"
            )
        if not (isinstance(self.d, int) and self.d >= 1 and isinstance(self.n, int) and self.n >= 1):
            raise DeeplimitError(f"n and d must be positive integers, got n={self.n!r}, d={self.d!r}")
        if self.n_k is None:
            object.__setattr__(self, "n_k", self.n)
        elif not (isinstance(self.n_k, int) and self.n_k >= 1):
            raise DeeplimitError(f"n_k must be a positive integer key width, got {self.n_k!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise DeeplimitError(f"gamma must lie in [0, 1] (λ² + γ² = 1), got {self.gamma!r}; pick γ ∈ [0, 1]")

    def module(self, batch: int, dtype: torch.dtype, gen: torch.Generator, draw: bool = True) -> torch.nn.Module:
        """The theory module of one layer/block with fresh N(0,1) weights for ``batch`` paths (weights frozen).

        ``draw=False``: the weights are left unset and ``gen`` advanced as their draw would (same random stream)."""
        kw = dict(batch=batch, dtype=dtype, generator=gen, draw=draw)
        if self.kind == "attention":
            mod = ShapedAttentionLayer(self.n, n_k=self.n_k, gamma=self.gamma, tau0=self.tau0, variant=self.variant,
                                       **kw)
        elif self.kind == "resnet":
            mod = ShapedReLUResidualMLP(self.n, gamma=self.gamma, c_plus=self.c_plus, c_minus=self.c_minus, **kw)
        elif self.kind == "block":
            mod = ShapedBlock(self.n, n_k=self.n_k, gamma=self.gamma, tau0=self.tau0, c_plus=self.c_plus,
                              c_minus=self.c_minus, variant=self.variant, **kw)
        else:
            mod = ShapedReLUMLP(self.n, c_plus=self.c_plus, c_minus=self.c_minus, **kw)
        return mod.requires_grad_(False)



def initial_X(
    paths: int,
    n: int,
    V0: Tensor | None = None,
    X0: Tensor | None = None,
    init_std: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Start ``X_0 (paths, m, n)``: ``√n [L_0 | 0]`` (exactly ``V_0``), a given ``X0``, or iid ``N(0,
    init_std²)``.

    Exactly one of ``V0 (m, m)``, ``X0 ((paths,) m, n)``, ``init_std`` (with ``V0`` only used for ``m``)
    is used,
    in that order of precedence: ``X0`` > ``init_std`` > ``V0``.
    """
    if X0 is not None:
        X0 = torch.as_tensor(X0, dtype=dtype)
        if X0.shape[-1] != n:
            raise DeeplimitError(f"X0 has width {X0.shape[-1]} but n = {n}; pass X0 of shape (m, n)")
        return X0.expand(paths, *X0.shape[-2:]).clone()
    if V0 is None:
        raise DeeplimitError("pass V0 (m, m), X0 (m, n), or init_std together with V0 (which fixes m)")
    V0 = torch.as_tensor(V0, dtype=dtype)
    check_V0(V0)
    m = V0.shape[-1]
    if init_std is not None:
        return init_std * torch.randn(paths, m, n, generator=generator, dtype=dtype)
    if n < m:
        raise DeeplimitError(f"width n = {n} is smaller than m = {m}; X0 = √n [L0 | 0] needs n ≥ m")
    L0, _ = psd_sqrt(V0)
    X = torch.zeros(paths, m, n, dtype=dtype)
    X[:, :, :m] = math.sqrt(n) * L0
    return X


def _gram(X: Tensor) -> Tensor:
    n = X.shape[-1]
    V = X @ X.mT / n
    return 0.5 * (V + V.mT)


def cheap_attention_step(
    X: Tensor, n_k: int, gamma: float, tau: float, variant: str, gen: torch.Generator
) -> Tensor:
    """One attention layer in law (spec §5.5): ``F_Q = L Z_Q``, ``F_K = L Z_K``, ``X ← λX + γ A L Z_V``.
    ``X (B, m, n)``."""
    B, m, n = X.shape
    L, _ = psd_sqrt(_gram(X))
    FQ = L @ torch.randn(B, m, n_k, generator=gen, dtype=X.dtype)
    FK = L @ torch.randn(B, m, n_k, generator=gen, dtype=X.dtype)
    A = attention_matrix(FQ @ FK.mT, tau, variant)
    ZV = torch.randn(B, m, n, generator=gen, dtype=X.dtype)
    return math.sqrt(1 - gamma**2) * X + gamma * (A @ L) @ ZV


def cheap_mlp_step(
    X: Tensor,
    gamma: float,
    s_plus: float,
    s_minus: float,
    c: float,
    gen: torch.Generator,
    residual: bool = True,
) -> Tensor:
    """One shaped-ReLU MLP layer in law (spec §5.5). Residual: ``H = L Z_1``, ``S = σ_s(H)``,
    ``R = psd_sqrt((c/n) S Sᵀ)``, ``X ← λX + γ R Z_2``. Plain (a): ``S = σ_s(X)``, ``X ← R Z``. ``X (B,
    m, n)``."""
    B, m, n = X.shape
    if residual:
        L, _ = psd_sqrt(_gram(X))
        S = shaped_relu(L @ torch.randn(B, m, n, generator=gen, dtype=X.dtype), s_plus, s_minus)
    else:
        S = shaped_relu(X, s_plus, s_minus)
    K = (c / n) * (S @ S.mT)
    R, _ = psd_sqrt(0.5 * (K + K.mT))
    out = R @ torch.randn(B, m, n, generator=gen, dtype=X.dtype)
    return math.sqrt(1 - gamma**2) * X + gamma * out if residual else out


def _bartlett(
    B: int, m: int, k: int, gen: torch.Generator, rng: np.random.Generator, dtype: torch.dtype
) -> Tensor:
    """Upper-triangular ``R (B, m, m)`` with ``Rᵀ R ~ Wishart(k, I_m)`` (Bartlett: ``R_ii² ~ χ²(k −
    i)``), ``k ≥ m``."""
    R = torch.randn(B, m, m, generator=gen, dtype=dtype).triu(1)
    chi = np.sqrt(rng.chisquare(k - np.arange(m), size=(B, m)))
    return R + torch.diag_embed(torch.as_tensor(chi, dtype=dtype))


def _gaussian_gram(
    B: int, m: int, k: int, gen: torch.Generator, rng: np.random.Generator, dtype: torch.dtype
) -> Tensor:
    """``Z Zᵀ`` for ``Z (B, m, k)`` iid N(0,1), drawn in ``O(m²)`` via Bartlett when ``k ≥ m``."""
    if k < m:
        Z = torch.randn(B, m, k, generator=gen, dtype=dtype)
        return Z @ Z.mT
    R = _bartlett(B, m, k, gen, rng, dtype)
    return R.mT @ R


def _logit_core(
    B: int, m: int, n_k: int, gen: torch.Generator, rng: np.random.Generator, dtype: torch.dtype
) -> Tensor:
    """``Z_Q Z_Kᵀ`` for independent ``Z_Q, Z_K (B, m, n_k)``: equal in law to ``G R`` (``G`` m×m iid,
    ``R`` Bartlett).

    Why: with ``Z_Kᵀ = Q R`` (thin QR), ``Z_Q Q`` is iid Gaussian and independent of ``R``.
    """
    if n_k <= m:
        ZQ = torch.randn(B, m, n_k, generator=gen, dtype=dtype)
        return ZQ @ torch.randn(B, m, n_k, generator=gen, dtype=dtype).mT
    G = torch.randn(B, m, m, generator=gen, dtype=dtype)
    return G @ _bartlett(B, m, n_k, gen, rng, dtype)


def _residual_gram_update(
    V: Tensor, L: Tensor, BL: Tensor, gamma: float, n: int, gen: torch.Generator, rng: np.random.Generator
) -> Tensor:
    """Gram of ``λX + γ BL Z`` with ``X = √n [L | 0]``, ``Z (m, n)`` iid: ``Z = [Z_a | Z_b]`` (derived).

    ``λ² L Lᵀ + (λγ/√n)(L Z_aᵀ BLᵀ + BL Z_a Lᵀ) + (γ²/n) BL (Z_a Z_aᵀ + Z_b Z_bᵀ) BLᵀ``.
    """
    B, m, _ = V.shape
    lam = math.sqrt(1 - gamma**2)
    Za = torch.randn(B, m, m, generator=gen, dtype=V.dtype)
    W = Za @ Za.mT + _gaussian_gram(B, m, n - m, gen, rng, V.dtype)
    cross = L @ Za.mT @ BL.mT
    Vn = (
        lam**2 * (L @ L.mT)
        + (lam * gamma / math.sqrt(n)) * (cross + cross.mT)
        + (gamma**2 / n) * (BL @ W @ BL.mT)
    )
    return 0.5 * (Vn + Vn.mT)


def gram_attention_step(
    V: Tensor,
    n: int,
    n_k: int,
    gamma: float,
    tau: float,
    variant: str,
    gen: torch.Generator,
    rng: np.random.Generator,
) -> Tensor:
    """One attention layer on ``V (B, m, m)`` in the canonical frame (exact in law; derived from §5.5)."""
    B, m, _ = V.shape
    L, _ = psd_sqrt(V)
    Y = L @ _logit_core(B, m, n_k, gen, rng, V.dtype) @ L.mT
    A = attention_matrix(Y, tau, variant)
    return _residual_gram_update(V, L, A @ L, gamma, n, gen, rng)


def gram_mlp_step(
    V: Tensor,
    n: int,
    gamma: float,
    s_plus: float,
    s_minus: float,
    c: float,
    gen: torch.Generator,
    rng: np.random.Generator,
) -> Tensor:
    """One residual shaped-ReLU MLP layer on ``V (B, m, m)`` in the canonical frame (exact in law)."""
    B, m, _ = V.shape
    L, _ = psd_sqrt(V)
    S = shaped_relu(L @ torch.randn(B, m, n, generator=gen, dtype=V.dtype), s_plus, s_minus)
    K = (c / n) * (S @ S.mT)
    R, _ = psd_sqrt(0.5 * (K + K.mT))
    return _residual_gram_update(V, L, R, gamma, n, gen, rng)


def sample_network(
    kind: str,
    n: int,
    d: int,
    V0: Tensor | None = None,
    *,
    X0: Tensor | None = None,
    init_std: float | None = None,
    n_k: int | None = None,
    gamma: float = 1 / math.sqrt(8),
    tau0: float = 1.0,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    variant: str = "shaped",
    paths: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    saveat: SaveAt | None = None,
    event: Band | None = None,
    method: str = "gram",
    chunk: int | None = None,
) -> NetworkSamples:
    """Sample ``V_ℓ`` of ``paths`` independent finite networks of depth ``d`` (spec §5.5).

    Args:
        kind, n, d, n_k, gamma, tau0, c_plus, c_minus, variant: the :class:`Network` (kind ``attention``,
            ``resnet``, ``block`` or ``mlp``; width, depth, key width (default ``n``); layer hyper-parameters).
        V0 / X0 / init_std: start, see :func:`initial_X` (stopping presets use ``init_std=10``).
        saveat: layers to save (:class:`~deeplimit.sde.saveat.SaveAt`: ``every`` k layers, or ``ts`` as SDE
            times ``ℓ/n``); layers ``0`` and ``d`` are always kept (also with ``None``).
        event: stopping band on eigenvalues (:class:`~deeplimit.sde.events.Band`, §3.8); ``None`` stops only
            on non-finite values.
        method: ``"gram"`` (exact in law, fastest), ``"cheap"`` (exact in law, ``X`` state) or
            ``"explicit"`` (theory modules, fresh weights per path and layer).
        chunk: explicit method only, number of paths per weight batch (memory ``chunk·n²``).
    """
    net = Network(kind, n, d, n_k, gamma, tau0, c_plus, c_minus, variant)
    if method not in METHODS:
        raise DeeplimitError(f"unknown sampler method {method!r}; use 'gram', 'cheap' or 'explicit'")
    if method == "gram" and kind == "mlp":
        method = "cheap"  # V of the plain MLP (a) is not Markov: σ_s acts on X's coordinates.
    if event is not None and not isinstance(event, Band):
        raise DeeplimitError(f"event must be a deeplimit.sde.Band(lo, hi) or None, got {event!r}")
    saveat = SaveAt() if saveat is None else saveat
    if not isinstance(saveat, SaveAt):
        raise DeeplimitError(f"saveat must be a deeplimit.sde.SaveAt(every=…, ts=…), got {saveat!r}")
    save = {0, d} | saveat.indices(0.0, 1 / n, d)
    gen = torch.Generator().manual_seed(seed)
    if method != "explicit":
        X = initial_X(paths, n, V0, X0, init_std, generator=gen, dtype=dtype)
        return _run(net, X, gen, save, event, method)
    chunk = chunk or max(1, min(paths, 4_000_000 // (n * n)))
    parts = []
    for start in range(0, paths, chunk):
        b = min(chunk, paths - start)
        X0b = X0[start : start + b] if X0 is not None and X0.ndim == 3 else X0
        parts.append(_run(net, initial_X(b, n, V0, X0b, init_std, generator=gen, dtype=dtype), gen, save, event,
                          method))
    return NetworkSamples(
        layers=parts[0].layers,
        V=torch.cat([p.V for p in parts], dim=1),
        terminal=torch.cat([p.terminal for p in parts]),
        stop_layer=torch.cat([p.stop_layer for p in parts]),
        reason=torch.cat([p.reason for p in parts]),
        n=n,
    )


def _layer_map(net: Network, method: str, X: Tensor, gen: torch.Generator) -> Callable[[Tensor], Tensor]:
    """One layer (or block) of ``net`` as a map on the state: ``X (B, m, n)``, or ``V (B, m, m)`` for ``gram``.

    Draws from ``gen`` in the order the samplers always have: the explicit module's weights first, then the
    seed of the NumPy stream used by the Bartlett draws.
    """
    tau = temperature(net.n, net.n_k, net.tau0, net.variant)
    sp, sm, c = relu_slopes(net.n, net.c_plus, net.c_minus)
    # every layer redraws the weights before using them, so the module's first draw is only skipped over (its
    # normals were never read; the stream stays the one the sampler always drew)
    mod = net.module(X.shape[0], X.dtype, gen, draw=False) if method == "explicit" else None
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    if method == "gram" and X.shape[-1] < X.shape[-2]:
        raise DeeplimitError(f"method='gram' needs n ≥ m, got n={X.shape[-1]}, m={X.shape[-2]}; use 'cheap'")
    n, n_k, gamma, kind, variant = net.n, net.n_k, net.gamma, net.kind, net.variant

    def gram_layer(V: Tensor) -> Tensor:
        if kind == "attention":
            return gram_attention_step(V, n, n_k, gamma, tau, variant, gen, rng)
        if kind == "resnet":
            return gram_mlp_step(V, n, gamma, sp, sm, c, gen, rng)
        Z = gram_attention_step(V, n, n_k, gamma, tau, variant, gen, rng)
        return gram_mlp_step(Z, n, gamma, sp, sm, c, gen, rng)

    def explicit_layer(X: Tensor) -> Tensor:
        mod.resample(gen)
        return mod(X)

    def cheap_layer(X: Tensor) -> Tensor:
        if kind == "attention":
            return cheap_attention_step(X, n_k, gamma, tau, variant, gen)
        if kind == "resnet":
            return cheap_mlp_step(X, gamma, sp, sm, c, gen)
        if kind == "mlp":
            return cheap_mlp_step(X, 0.0, sp, sm, c, gen, residual=False)
        Z = cheap_attention_step(X, n_k, gamma, tau, variant, gen)
        return cheap_mlp_step(Z, gamma, sp, sm, c, gen)

    return {"gram": gram_layer, "explicit": explicit_layer, "cheap": cheap_layer}[method]


def _run(net: Network, X: Tensor, gen: torch.Generator, save: set[int], event: Band | None,
         method: str) -> NetworkSamples:
    """Advance ``X (B, m, n)`` through ``net.d`` layers, stopping paths by ``event``; keep ``V`` at ``save``."""
    B, d = X.shape[0], net.d
    layer = _layer_map(net, method, X, gen)
    gram = method == "gram"
    V = _gram(X)
    if gram:
        X = V
    reason = torch.zeros(B, dtype=torch.long)
    stop = torch.full((B,), d, dtype=torch.long)
    saved_layers, saved = [], []
    if 0 in save:
        saved_layers.append(0)
        saved.append(V.clone())
    with torch.no_grad():
        for ell in range(1, d + 1):
            alive = reason == RUNNING
            Xn = layer(X)
            Vn = Xn if gram else _gram(Xn)
            code = band_exit(Vn, event)
            newly = alive & (code != RUNNING)
            reason = torch.where(newly, code, reason)
            stop = torch.where(newly, ell - 1, stop)
            keep = reason == RUNNING
            X = torch.where(keep[:, None, None], Xn, X)
            V = torch.where(keep[:, None, None], Vn, V)
            if ell in save:
                saved_layers.append(ell)
                saved.append(V.clone())
    return NetworkSamples(torch.tensor(saved_layers), torch.stack(saved), V, stop, reason, net.n)
