"""Shaped attention (Noci et al. 2023, Eq. 9 and App. D Eq. 33) and a multi-head attention module.

Shaped attention replaces the softmax matrix by

    A = γ1 · I + Softmax(Q Kᵀ / τ) − γ2 · U,

where ``U`` is the uniform attention of the mask (``11ᵀ/m`` without a mask, row ``i`` equal to ``1/i`` on keys
``1..i`` for a causal mask; in general the attention you get with all logits zero). Every row of ``A`` sums to
``γ1 + 1 − γ2`` (to 1 when ``γ1 = γ2``), and with zero queries ``A = γ1 I + (1 − γ2) U``.

Two implementations that agree in float64 (shaped-transformer spec §2.7):

* ``impl="fused"`` computes ``A·V = γ1 V + SDPA(q, k, v) − γ2 (U V)``, where ``U V`` is the mean of the value
  rows (no mask) or their running mean (causal), without forming the m×m matrix: memory is O(m·d) beyond the
  fused kernel. Exception: causal attention on CPU with ``m ≤ DENSE_MAX_LEN`` (256) and no mask, where three
  batched matmuls on the m×m matrix are cheaper than SDPA plus the running sums (memory bounded by the threshold).
* ``impl="reference"`` builds ``A`` explicitly (and can return it); it is the executable definition.

Shapes follow ``torch.nn.functional.scaled_dot_product_attention``: ``q, k, v`` are ``(B, H, m, d)``; boolean
masks are ``True`` where a query may attend to a key and broadcast to ``(B, H, m, m)``.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.nn._validate import check_bool, check_real

Gain = float | Tensor

ATTENTION_KINDS = ("softmax", "shaped")
LOGIT_SCALES = ("sqrt", "mup", "shaped")
TAU_MODES = ("temperature", "init")
SHAPING_MODES = ("fixed", "recover", "learn")


# ----------------------------------------------------------------------------------------------------------
# Uniform attention U


def _inverse_counts(m: int, like: Tensor) -> Tensor:
    """``1/i`` for i = 1..m as an (m, 1) column, the row weights of the causal uniform attention."""
    return torch.arange(1, m + 1, device=like.device, dtype=like.dtype).reciprocal_().unsqueeze(-1)


def uniform_attention_apply(v: Tensor, causal: bool) -> Tensor:
    """``U·V`` without forming ``U``: the mean of the value rows, or their running mean if ``causal``.

    v: ``(..., m, d)``. Returns ``(..., m, d)`` (a broadcast view of ``(..., 1, d)`` when not causal), in
    O(m·d) memory. Causal row ``i`` (1-based) is ``(v_1 + … + v_i) / i``.
    """
    if not causal:
        return v.mean(dim=-2, keepdim=True).expand_as(v)
    return v.cumsum(dim=-2).mul_(_inverse_counts(v.shape[-2], v))


def uniform_attention_transpose_apply(g: Tensor, causal: bool) -> Tensor:
    """``Uᵀ·G``: the backward of :func:`uniform_attention_apply`. Causal row ``j`` is ``Σ_{i≥j} g_i / i``."""
    if not causal:  # U = 11ᵀ/m is symmetric
        return g.mean(dim=-2, keepdim=True).expand_as(g)
    # A reversed cumulative sum. flip-cumsum-flip costs about as much as `total − cumsum + x` and, unlike
    # it, has no cancellation error in the last rows (whose sums are small next to the total).
    scaled = g * _inverse_counts(g.shape[-2], g)
    return scaled.flip(-2).cumsum(dim=-2).flip(-2)


#: Longest causal sequence for which ``impl="fused"`` takes the dense path on CPU (see :func:`_dense_shaped`).
#: At short lengths the scan path's cost over SDPA is set by its two O(m·d) running sums (torch's CPU ``cumsum``
#: runs one dependent chain per column) rather than by their size, while the dense path's three batched matmuls
#: cost about what SDPA's kernel does; its O(m²) work and memory make it the worse choice as m grows
#: (``benchmarks/bench_attention.py`` times both sides). Set it to 0 to keep O(m·d) memory at every length.
DENSE_MAX_LEN = 256


@functools.lru_cache(maxsize=64)
def _scan_weights(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``1/i`` for i = 1..m as an (m, 1) column, built once per setting.

    At small m each op costs about as much as a 256×64 elementwise pass, so the column is cached rather than
    rebuilt per call. Built outside inference mode and autograd so that the cached tensor may be used anywhere.
    """
    with torch.inference_mode(False), torch.no_grad():
        return torch.arange(1, m + 1).to(device=device, dtype=dtype).reciprocal_().unsqueeze_(-1)


def _shaped_residual(attn: Tensor, v: Tensor, gamma1: Gain, gamma2: Gain, causal: bool) -> Tensor:
    """``attn + γ1·V − γ2·(U V)`` from torch ops whose backward runs in C++: what shaped attention adds to SDPA.

    ``attn``, ``v``: ``(B, H, m, d)``; gains are Python floats, 0-dim tensors or ``(1, H, 1, 1)`` tensors.
    Causal ``U V`` is the running mean ``cumsum(V) / i``: two ``addcmul`` passes and one ``cumsum`` forward
    (autograd saves only the cached ``1/i`` column, and ``cumsum(V)`` when γ2 needs a gradient), a reversed
    ``cumsum`` backward. O(m·d) memory. It replaces a hand-written ``autograd.Function`` doing the same ops,
    whose Python forward and backward cost more than the ops they saved (timed with ``bench_attention``).
    """
    x = torch.addcmul(attn, v, gamma1) if isinstance(gamma1, Tensor) else torch.add(attn, v, alpha=gamma1)
    if not causal:  # U = 11ᵀ/m: the mean of the value rows, broadcast
        mean = v.mean(dim=-2, keepdim=True)
        return torch.addcmul(x, mean, gamma2, value=-1) if isinstance(gamma2, Tensor) else x - gamma2 * mean
    w = _scan_weights(v.shape[-2], v.dtype, v.device)
    if isinstance(gamma2, Tensor):
        return torch.addcmul(x, v.cumsum(dim=-2), w * gamma2, value=-1)
    return torch.addcmul(x, v.cumsum(dim=-2), w, value=-float(gamma2))


@functools.lru_cache(maxsize=16)
def _dense_constants(m: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The causal logit bias (0 on and below the diagonal, −∞ above), ``U`` and ``I``, as (m, m) constants."""
    with torch.inference_mode(False), torch.no_grad():
        allowed = torch.ones(m, m, dtype=torch.bool, device=device).tril_()
        bias = torch.zeros(m, m, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
        u = allowed.to(dtype) * _scan_weights(m, dtype, device)  # row i: 1/i on keys 1..i
        return bias, u, torch.eye(m, dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _dense_shaping(m: int, gamma1: float, gamma2: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``γ1·I − γ2·U`` (causal) as one (m, m) constant, for float gains."""
    _, u, eye = _dense_constants(m, dtype, device)
    with torch.inference_mode(False), torch.no_grad():
        return gamma1 * eye - gamma2 * u


def _dense_shaped(q: Tensor, k: Tensor, v: Tensor, gamma1: Gain, gamma2: Gain, scale: float) -> Tensor:
    """Causal shaped attention ``(γ1 I + Softmax(q kᵀ·scale + causal) − γ2 U) v`` in three batched matmuls.

    The fused implementation's path for causal attention without a mask, ``m ≤ DENSE_MAX_LEN``, on CPU (the
    accelerators' SDPA kernels were not timed against it): cheaper there than SDPA plus the two running sums.
    It forms ``(B, H, m, m)`` tensors (autograd keeps the softmax and ``A``: ``2·B·H·m²`` values, at most
    ``2·DENSE_MAX_LEN/d`` times the ``B·H·m·d`` of one of q, k, v), so its memory is bounded by the threshold.
    Gradients, including the gains', come from autograd.
    """
    B, H, m, d = q.shape
    bias, u, _ = _dense_constants(m, q.dtype, q.device)
    logits = torch.baddbmm(bias, q.reshape(B * H, m, d), k.reshape(B * H, m, d).transpose(1, 2), alpha=scale)
    probs = torch.softmax(logits, dim=-1).view(B, H, m, m)
    d_v = v.shape[-1]
    if isinstance(gamma1, Tensor) or isinstance(gamma2, Tensor):
        # tensor gains (per head, or 0-dim): −γ2·U on the m×m matrix, γ1·V on the output (O(m·d))
        a = torch.addcmul(probs, u, gamma2, value=-1) if isinstance(gamma2, Tensor) else probs - gamma2 * u
        out = torch.bmm(a.view(B * H, m, m), v.reshape(B * H, m, d_v)).view(B, H, m, d_v)
        return torch.addcmul(out, v, gamma1) if isinstance(gamma1, Tensor) else torch.add(out, v, alpha=gamma1)
    a = probs + _dense_shaping(m, float(gamma1), float(gamma2), q.dtype, q.device)
    return torch.bmm(a.view(B * H, m, m), v.reshape(B * H, m, d_v)).view(B, H, m, d_v)


def uniform_attention_matrix(m: int, causal: bool = False, mask: Tensor | None = None, *,
                             dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                             ) -> Tensor:
    """The uniform attention matrix ``U`` of a mask: row ``i`` is ``1/m_i`` on its ``m_i`` allowed keys.

    ``mask`` (bool, ``True`` = allowed, broadcastable to ``(..., m, m)``) is combined with ``causal``.
    Returns ``(m, m)`` without a mask, else the mask's broadcast shape. Used by the reference and tests.
    """
    check_positive("m", m, integer=True)
    allowed = torch.ones(m, m, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & _as_bool_mask(mask, m).to(device=allowed.device)
    counts = allowed.sum(dim=-1, keepdim=True)
    if bool((counts == 0).any()):
        raise DeeplimitError("attention mask has a query row with no allowed key; allow at least one key per "
                             "row (e.g. the query's own position)")
    return allowed.to(dtype) / counts.to(dtype)


def _as_bool_mask(mask: Tensor, m: int) -> Tensor:
    if mask.dtype != torch.bool:
        raise DeeplimitError(f"attn_mask must be a boolean tensor (True = may attend), got {mask.dtype}; "
                             "convert an additive mask with `mask == 0`, or build one with .tril() of ones")
    if mask.dim() < 2 or mask.shape[-2:] != (m, m):
        raise DeeplimitError(f"attn_mask of shape {tuple(mask.shape)} does not fit a sequence of length {m}; "
                             f"pass a mask broadcastable to (batch, heads, {m}, {m}), e.g. shape ({m}, {m})")
    return mask


# ----------------------------------------------------------------------------------------------------------
# Shaped attention on (B, H, m, d) tensors


def _head_gain(g: Gain, n_heads: int, name: str) -> Gain:
    """Scalars pass through; a per-head vector of shape (H,) becomes (1, H, 1, 1) to broadcast over heads."""
    if not isinstance(g, Tensor) or g.dim() == 0:
        return g
    if g.dim() == 1 and g.shape[0] == n_heads:
        return g.view(1, n_heads, 1, 1)
    if g.shape == (1, n_heads, 1, 1):
        return g
    raise DeeplimitError(f"{name} must be a scalar or have one value per head, shape ({n_heads},); "
                         f"got shape {tuple(g.shape)}")


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise DeeplimitError(f"q, k, v must be (batch, heads, seq, head_dim); got shapes {tuple(q.shape)}, "
                             f"{tuple(k.shape)}, {tuple(v.shape)}; split heads with "
                             "x.view(B, m, H, d).transpose(1, 2)")
    if not (q.shape[-2] == k.shape[-2] == v.shape[-2]):
        raise DeeplimitError("shaped attention is self-attention: q, k and v need the same sequence "
                             f"length (got {q.shape[-2]}, {k.shape[-2]}, {v.shape[-2]}); the identity term "
                             "γ1·I maps each query to its own value")


def shaped_attention(q: Tensor, k: Tensor, v: Tensor, *, gamma1: Gain = 1.0, gamma2: Gain = 1.0,
                     tau: float, causal: bool = False, impl: Literal["fused", "reference"] = "fused",
                     attn_mask: Tensor | None = None, return_attention: bool = False
                     ) -> Tensor | tuple[Tensor, Tensor]:
    """``(γ1 I + Softmax(q kᵀ / τ) − γ2 U) · v`` per batch and head.

    q, k, v: ``(B, H, m, d)`` (``v`` may have its own last dim). gamma1, gamma2: scalars or per-head
    tensors of shape ``(H,)``. tau: temperature (logits are multiplied by ``1/τ``). attn_mask: bool,
    ``True`` = may attend, broadcastable to ``(B, H, m, m)``; combined with ``causal``. Returns
    ``(B, H, m, d_v)``, and with ``return_attention=True`` (reference only) also ``A`` ``(B, H, m, m)``.
    """
    _check_qkv(q, k, v)
    if not tau > 0:
        raise DeeplimitError(f"tau must be positive, got {tau!r}; the shaped choice is "
                             "tau0 * sqrt(n * head_dim)")
    n_heads, m = q.shape[1], q.shape[-2]
    g1, g2 = _head_gain(gamma1, n_heads, "gamma1"), _head_gain(gamma2, n_heads, "gamma2")
    scale = 1.0 / tau

    if attn_mask is not None:
        attn_mask = _as_bool_mask(attn_mask, m)
        if causal:
            attn_mask = attn_mask & torch.ones(m, m, dtype=torch.bool, device=attn_mask.device).tril()
            causal = False
        if not bool(attn_mask.any(dim=-1).all()):
            raise DeeplimitError("attention mask has a query row with no allowed key; allow at least one key "
                                 "per row (e.g. the query's own position)")

    if impl == "fused":
        if return_attention:
            raise DeeplimitError("the fused implementation does not return A; pass impl='reference' to get it")
        if causal and attn_mask is None and m <= DENSE_MAX_LEN and q.device.type == "cpu":
            return _dense_shaped(q, k, v, g1, g2, scale)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal, scale=scale)
        if attn_mask is None:
            return _shaped_residual(attn, v, g1, g2, causal)
        # a general mask is already m×m, so applying U densely costs no more than the mask itself
        uv = uniform_attention_matrix(m, mask=attn_mask, dtype=v.dtype, device=v.device) @ v
        return attn + g1 * v - g2 * uv

    if impl == "reference":
        logits = (q @ k.transpose(-2, -1)) * scale
        allowed = None
        if causal:
            allowed = torch.ones(m, m, dtype=torch.bool, device=q.device).tril()
        elif attn_mask is not None:
            allowed = attn_mask
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        u = uniform_attention_matrix(m, causal=causal, mask=attn_mask, dtype=q.dtype, device=q.device)
        a = g1 * eye + probs - g2 * u
        out = a @ v
        return (out, a) if return_attention else out

    raise DeeplimitError(f"unknown impl {impl!r}; use 'fused' (default, O(m·d) memory) or 'reference'")


def softmax_probs(q: Tensor, k: Tensor, *, scale: float, causal: bool = False,
                  attn_mask: Tensor | None = None) -> Tensor:
    """The softmax part ``Softmax(q kᵀ · scale)`` as an explicit ``(B, H, m, m)`` tensor (for diagnostics)."""
    m = q.shape[-2]
    logits = (q @ k.transpose(-2, -1)) * scale
    if causal:
        allowed = torch.ones(m, m, dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def attention_entropy(probs: Tensor) -> Tensor:
    """Mean Shannon entropy (nats) per head of attention rows ``probs`` ``(B, H, m, m)`` → ``(H,)``."""
    plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-30).log(), torch.zeros_like(probs))
    return -plogp.sum(dim=-1).mean(dim=(0, 2))


# ----------------------------------------------------------------------------------------------------------
# Multi-head attention module


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with softmax or shaped attention and a choice of logit scale.

    Input and output ``(B, m, n)``. Projections ``q, k, v, o`` are plain ``nn.Linear(n, n)`` (the scaling
    core assigns parametrization roles by module). Logit scale on ``q kᵀ`` per head of size ``d = n / H``:

    * ``"sqrt"``: ``1/√d`` (standard);
    * ``"mup"``: ``attn_mult/d`` (μP);
    * ``"shaped"``, ``tau_mode="temperature"``: ``1/τ`` with ``τ = τ0 √(n d)`` (spec §2.3);
      ``tau_mode="init"``: ``1/√d`` with ``W^Q, W^K ~ N(0, n^{-3/2}/τ0)`` — same logits at init (§2.6).

    Shaped attention gains ``γ1, γ2`` (one per head) follow ``shaping``: ``"fixed"`` (buffers), ``"recover"``
    (buffers decaying linearly to 0 over ``recover_steps``; call :meth:`set_step` each optimizer step) or
    ``"learn"`` (``nn.Parameter``). Buffers, not Python floats, so torch.compile does not recompile per step.

    With ``track_entropy = True`` the forward pass also computes the softmax probabilities (O(m²) memory) and
    stores their mean entropy per head in ``last_entropy`` (shape ``(H,)``, detached).
    """

    def __init__(self, n: int, n_heads: int, *, attention: Literal["softmax", "shaped"] = "softmax",
                 logit_scale: Literal["sqrt", "mup", "shaped"] | None = None,
                 tau_mode: Literal["temperature", "init"] = "temperature", tau0: float = 1.0,
                 attn_mult: float = 1.0, causal: bool = True, bias: bool = False,
                 shaping: Literal["fixed", "recover", "learn"] = "fixed", gamma1_init: float = 1.0,
                 gamma2_init: float = 1.0, recover_steps: int = 4000, zero_query_init: bool = False,
                 max_seq_len: int | None = None, impl: Literal["fused", "reference"] = "fused") -> None:
        super().__init__()
        check_positive("n", n, integer=True)
        check_positive("n_heads", n_heads, integer=True)
        if n % n_heads != 0:
            divisors = [h for h in range(1, min(n, 64) + 1) if n % h == 0]
            raise DeeplimitError(f"n_heads={n_heads} does not divide width n={n}; pick a divisor of n "
                                 f"(e.g. one of {divisors}) or change the width")
        _check_choice("attention", attention, ATTENTION_KINDS)
        logit_scale = logit_scale or ("shaped" if attention == "shaped" else "sqrt")
        _check_choice("logit_scale", logit_scale, LOGIT_SCALES)
        _check_choice("tau_mode", tau_mode, TAU_MODES)
        _check_choice("shaping", shaping, SHAPING_MODES)
        _check_choice("impl", impl, ("fused", "reference"))
        check_real("tau0", tau0, lo=0.0, lo_open=True, fix="the paper uses tau0 = 1")
        check_real("attn_mult", attn_mult, lo=0.0, lo_open=True, fix="1 is the standard logit multiplier")
        causal, bias = check_bool("causal", causal), check_bool("bias", bias)
        zero_query_init = check_bool("zero_query_init", zero_query_init)
        for name, g in (("gamma1_init", gamma1_init), ("gamma2_init", gamma2_init)):
            check_real(name, g, lo=0.0, hi=1.0, fix="1 is the paper's shaped attention (identity kept, uniform "
                                                    "part removed)")
        check_positive("recover_steps", recover_steps, integer=True)
        if max_seq_len is not None:
            check_positive("max_seq_len", max_seq_len, integer=True)

        self.n, self.n_heads, self.head_dim = n, n_heads, n // n_heads
        self.attention, self.logit_scale, self.tau_mode = attention, logit_scale, tau_mode
        self.tau0, self.attn_mult, self.causal = float(tau0), float(attn_mult), causal
        self.shaping, self.recover_steps, self.impl = shaping, recover_steps, impl
        self.zero_query_init, self.max_seq_len = zero_query_init, max_seq_len
        self.track_entropy = False
        self.last_entropy: Tensor | None = None

        self.q = nn.Linear(n, n, bias=bias)
        self.k = nn.Linear(n, n, bias=bias)
        self.v = nn.Linear(n, n, bias=bias)
        self.o = nn.Linear(n, n, bias=bias)

        # Shaping gains exist only for shaped attention: a softmax module has the same state dict as a
        # shaped one minus the gains, so a recovered shaped model loads into a plain one.
        if attention != "shaped":
            self.gamma1 = self.gamma2 = None
        else:
            gains = (torch.full((n_heads,), float(gamma1_init)), torch.full((n_heads,), float(gamma2_init)))
            if shaping == "learn":
                self.gamma1, self.gamma2 = nn.Parameter(gains[0]), nn.Parameter(gains[1])
            else:
                self.register_buffer("gamma1", gains[0])
                self.register_buffer("gamma2", gains[1])
            self.register_buffer("gamma1_init", gains[0].clone(), persistent=False)
            self.register_buffer("gamma2_init", gains[1].clone(), persistent=False)
        self.reset_parameters()

    @property
    def scale(self) -> float:
        """Multiplier applied to the logits ``q kᵀ`` of each head."""
        d = self.head_dim
        if self.logit_scale == "sqrt":
            return 1.0 / math.sqrt(d)
        if self.logit_scale == "mup":
            return self.attn_mult / d
        if self.tau_mode == "temperature":
            return 1.0 / (self.tau0 * math.sqrt(self.n * d))
        return 1.0 / math.sqrt(d)  # init mode: the √n·τ0 is in the q, k weight variance instead

    def init_std(self, name: Literal["q", "k", "v", "o"]) -> float:
        """Initial weight std of projection ``name``: ``1/√n``, except ``√(n^{-3/2}/τ0)`` for q and k in
        shaped init mode (spec §2.6) and 0 for q with ``zero_query_init``. A re-initialising scaling core
        should keep these ratios to preserve the logit scale at init."""
        if name == "q" and self.zero_query_init:
            return 0.0
        if name in ("q", "k") and self.logit_scale == "shaped" and self.tau_mode == "init":
            return math.sqrt(self.n ** -1.5 / self.tau0)
        if name in ("q", "k", "v", "o"):
            return 1.0 / math.sqrt(self.n)
        raise DeeplimitError(f"unknown projection {name!r}; use 'q', 'k', 'v' or 'o'")

    def reset_parameters(self) -> None:
        """Weights N(0, init_std(name)²) (see :meth:`init_std`), zero biases."""
        for name in ("q", "k", "v", "o"):
            lin = getattr(self, name)
            nn.init.normal_(lin.weight, std=self.init_std(name))
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """Advance the ``"recover"`` schedule: ``γ = γ_init · max(0, 1 − step/recover_steps)``.

        A no-op for other schedules, so a training loop can call it on every module unconditionally.
        """
        if self.attention != "shaped" or self.shaping != "recover":
            return
        frac = max(0.0, 1.0 - float(step) / self.recover_steps)
        self.gamma1.copy_(self.gamma1_init * frac)
        self.gamma2.copy_(self.gamma2_init * frac)

    def extra_repr(self) -> str:
        return (f"n={self.n}, n_heads={self.n_heads}, attention={self.attention}, "
                f"logit_scale={self.logit_scale}, tau_mode={self.tau_mode}, tau0={self.tau0}, "
                f"shaping={self.shaping}, causal={self.causal}")

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, return_probs: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        """x: ``(B, m, n)`` → ``(B, m, n)``; with ``return_probs`` also the softmax part ``(B, H, m, m)``."""
        if x.dim() != 3 or x.shape[-1] != self.n:
            raise DeeplimitError(f"expected input of shape (batch, seq, {self.n}), got {tuple(x.shape)}")
        B, m, _ = x.shape
        if self.max_seq_len is not None and m > self.max_seq_len:
            raise DeeplimitError(f"sequence length {m} exceeds the context max_seq_len={self.max_seq_len}; "
                                 "crop the input or build the module with a larger max_seq_len")
        if attn_mask is not None:
            attn_mask = _as_bool_mask(attn_mask, m)
            try:
                torch.broadcast_shapes(attn_mask.shape, (B, self.n_heads, m, m))
            except RuntimeError as err:
                raise DeeplimitError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                                     f"(batch, heads, seq, seq) = {(B, self.n_heads, m, m)}; pass shape "
                                     f"({m}, {m}), (B, 1, {m}, {m}) or (B, {self.n_heads}, {m}, {m})"
                                     ) from err

        H, d = self.n_heads, self.head_dim
        q = self.q(x).view(B, m, H, d).transpose(1, 2)  # (B, H, m, d)
        k = self.k(x).view(B, m, H, d).transpose(1, 2)
        v = self.v(x).view(B, m, H, d).transpose(1, 2)
        scale = self.scale

        probs = None
        if self.track_entropy or return_probs:
            with torch.set_grad_enabled(return_probs and torch.is_grad_enabled()):
                probs = softmax_probs(q, k, scale=scale, causal=self.causal, attn_mask=attn_mask)
            if self.track_entropy:
                self.last_entropy = attention_entropy(probs.detach())

        if self.attention == "shaped":
            y = shaped_attention(q, k, v, gamma1=self.gamma1, gamma2=self.gamma2, tau=1.0 / scale,
                                 causal=self.causal, impl=self.impl, attn_mask=attn_mask)
        else:
            mask, causal = attn_mask, self.causal
            if mask is not None and causal:
                mask, causal = mask & torch.ones(m, m, dtype=torch.bool, device=x.device).tril(), False
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)

        y = self.o(y.transpose(1, 2).reshape(B, m, self.n))
        return (y, probs) if return_probs else y


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DeeplimitError(f"unknown {name} {value!r}; valid choices: {', '.join(map(repr, choices))}")
