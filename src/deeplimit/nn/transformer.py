"""Decoder-only byte/token language model: Pre-LN (CompleteP) and Shaped Transformers as configs of one class.

    x⁰ = input_mult · (E_tok[idx] + E_pos[0..m))
    per layer ℓ = 1..L (two residual branches, both multiplied, depth-mup spec §5.1):
        z = λ·x + γ·branch_mult · Attn(N(x))          N = LayerNorm (norm="pre_ln") or identity (norm="none")
        x = λ·z + γ·branch_mult · MLP(N(z))           MLP(u) = W_out φ(W_in u)
    (norm="post_ln" instead applies LayerNorm after each residual sum, for the paper's Fig. 2 baseline)
    f = output_mult · m_N^{-1} · V N_final(x)         (tie_embeddings=True: V = E_tok, one tensor)

``residual="scaled"`` uses λ = γ = 1 (the CompleteP / Depth-μP form, branch_mult = a·m_L^{-α} from the plan);
``residual="shaped"`` uses λ² + γ² = 1 with γ = ``residual_gamma`` (shaped-transformer spec §2.5–2.6), fixed or
trainable. Shaped attention (A = γ1 I + Softmax(QKᵀ/τ) − γ2 U, τ = τ0√(n d_head)) and the shaped ReLU come
from :mod:`deeplimit.nn.attention` and :mod:`deeplimit.nn.activations`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.nn.activations import get_activation
from deeplimit.nn.attention import MultiHeadAttention
from deeplimit.nn.layers import Embedding, Readout, TiedReadout, watch_multipliers


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 256
    max_seq_len: int = 64
    width: int = 64
    depth: int = 2  # L: number of layers (each has an attention and an MLP branch)
    n_heads: int = 4
    mlp_ratio: int = 4
    norm: Literal["pre_ln", "post_ln", "none"] = "pre_ln"
    attention: Literal["softmax", "shaped"] = "softmax"
    logit_scale: Literal["sqrt", "mup", "shaped"] | None = None  # None: "mup" (attn_mult/d_head) or "shaped"
    attn_mult: float = 1.0
    tau0: float = 1.0
    tau_mode: Literal["temperature", "init"] = "temperature"
    shaping: Literal["fixed", "recover", "learn"] = "fixed"  # γ1, γ2 of shaped attention
    recover_steps: int = 4000
    activation: str = "gelu"  # gelu, relu, shaped_relu
    c_plus: float = 0.0
    c_minus: float = -1.0
    residual: Literal["scaled", "shaped"] = "scaled"
    residual_gamma: float = 0.1  # γ of the shaped residual (λ = √(1 − γ²))
    residual_trainable: bool = False
    bias: bool = True
    zero_query_init: bool = False
    tie_embeddings: bool = False  # readout shares E_tok (input role; μP readout factor in its forward)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "width", "depth", "n_heads", "mlp_ratio"):
            check_positive(name, getattr(self, name), integer=True)
        if self.width % self.n_heads:
            raise DeeplimitError(f"n_heads={self.n_heads} does not divide width={self.width}; choose a divisor")
        if self.norm not in ("pre_ln", "post_ln", "none"):
            raise DeeplimitError(f"norm must be 'pre_ln', 'post_ln' or 'none', got {self.norm!r}")
        if self.residual not in ("scaled", "shaped"):
            raise DeeplimitError(f"residual must be 'scaled' or 'shaped', got {self.residual!r}")
        if not 0.0 <= self.residual_gamma <= 1.0:
            raise DeeplimitError(f"residual_gamma must lie in [0, 1] (lambda^2 + gamma^2 = 1), got "
                                 f"{self.residual_gamma}")
        if not self.tau0 > 0:
            raise DeeplimitError(f"tau0 must be positive, got {self.tau0}")


class Branch(nn.Module):
    """One residual branch ``x ↦ λ·x + γ·branch_mult·f(N(x))``; declares block depth 2 (two matrices in series)."""

    def __init__(self, cfg: TransformerConfig, f: nn.Module) -> None:
        super().__init__()
        self.dl_block_depth = 2
        self.branch_mult = 1.0
        watch_multipliers(self)
        self.norm = nn.LayerNorm(cfg.width, bias=cfg.bias) if cfg.norm != "none" else None
        self.post = cfg.norm == "post_ln"
        self.f = f
        if cfg.residual == "shaped":
            g = cfg.residual_gamma
            lam, gam = torch.tensor(math.sqrt(1 - g * g)), torch.tensor(g)
            if cfg.residual_trainable:
                self.lam, self.gam = nn.Parameter(lam), nn.Parameter(gam)
            else:
                self.register_buffer("lam", lam)
                self.register_buffer("gam", gam)
        else:
            self.lam = self.gam = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.f(self.norm(x) if self.norm is not None and not self.post else x)
        out = x + self.branch_mult * y if self.lam is None else self.lam * x + (self.gam * self.branch_mult) * y
        return self.norm(out) if self.post else out


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.width
        self.w_in = nn.Linear(cfg.width, hidden, bias=cfg.bias)
        if cfg.activation == "shaped_relu":
            # normalize=True folds √c into the activation so the branch keeps unit variance (spec §2.4)
            # the slope s− follows the attention's γ schedule (spec §2.6: "recover" moves both to 0 together,
            # "learn" trains both), so the paper's training recipe is one setting, not two
            self.phi = get_activation("shaped_relu", width=hidden, c_plus=cfg.c_plus, c_minus=cfg.c_minus,
                                      normalize=True, mode=cfg.shaping, recover_steps=cfg.recover_steps)
        else:
            self.phi = get_activation(cfg.activation)
        self.w_out = nn.Linear(hidden, cfg.width, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_out(self.phi(self.w_in(x)))


class Layer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        attn = MultiHeadAttention(
            cfg.width, cfg.n_heads, attention=cfg.attention,
            logit_scale=cfg.logit_scale or ("shaped" if cfg.attention == "shaped" else "mup"),
            tau_mode=cfg.tau_mode, tau0=cfg.tau0, attn_mult=cfg.attn_mult, causal=True, bias=cfg.bias,
            shaping=cfg.shaping, recover_steps=cfg.recover_steps, zero_query_init=cfg.zero_query_init,
            max_seq_len=cfg.max_seq_len)
        # The plan re-initialises q, k with σ/√fan_in; keep the module's own ratio (shaped init mode, zero queries).
        for name in ("q", "k"):
            getattr(attn, name).dl_init_mult = {"weight": attn.init_std(name) * math.sqrt(cfg.width)}
        self.attn = Branch(cfg, attn)
        self.mlp = Branch(cfg, MLP(cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class TransformerLM(nn.Module):
    """``forward(idx)`` → logits ``(B, m, vocab)``; ``return_stream=True`` also returns ``[x⁰, …, x^L]``."""

    dl_family = "transformer"

    def __init__(self, cfg: TransformerConfig | None = None, **kw) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TransformerConfig(**kw)
        self.width, self.depth = cfg.width, cfg.depth
        self.tok = Embedding(cfg.vocab_size, cfg.width)
        self.pos = Embedding(cfg.max_seq_len, cfg.width)
        self.blocks = nn.ModuleList(Layer(cfg) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(cfg.width, bias=cfg.bias) if cfg.norm == "pre_ln" else None
        self.readout = TiedReadout(self.tok) if cfg.tie_embeddings else Readout(cfg.width, cfg.vocab_size, bias=False)
        self.register_buffer("_positions", torch.arange(cfg.max_seq_len), persistent=False)

    @property
    def input(self) -> nn.Module:  # the site a coordinate check records as x⁰
        return self.pos

    def forward(self, idx: torch.Tensor, return_stream: bool = False):
        if idx.dim() != 2:
            raise DeeplimitError(f"expected token ids of shape (batch, seq), got {tuple(idx.shape)}")
        m = idx.shape[1]
        if m > self.cfg.max_seq_len:
            raise DeeplimitError(f"sequence length {m} exceeds the context max_seq_len={self.cfg.max_seq_len}; "
                                 "crop the input or build the model with a larger max_seq_len")
        x = self.tok(idx) + self.pos(self._positions[:m])
        stream = [x] if return_stream else None
        for layer in self.blocks:
            x = layer(x)
            if stream is not None:
                stream.append(x)
        f = self.readout(self.final_norm(x) if self.final_norm is not None else x)
        return (f, stream) if return_stream else f

    def set_step(self, step: int) -> None:
        """Advance every "recover" schedule (shaped attention gains, shaped-ReLU slopes)."""
        for m in self.modules():
            if m is not self and hasattr(m, "set_step"):
                m.set_step(step)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


SHAPED = dict(norm="none", attention="shaped", activation="shaped_relu", residual="shaped")
"""Config overrides that turn the Pre-LN transformer into the paper's Shaped Transformer (no LayerNorm)."""
