"""A small nanoGPT (karpathy/nanoGPT ``model.py`` module names, tied ``lm_head``) and its deeplimit Structure.

``GPT(cfg)`` is the model as users have it: no deeplimit declarations, residual sums written in ``Block.forward``.
``GPT(cfg, mults=...)`` is the same network with the multipliers typed into its forward (the way nanoGPT-mup
does it), the hand-written reference a Structure-parametrized model must reproduce. The attention module
keeps its logit scale in ``self.scale`` (nanoGPT-mup's ``attn_scale``), so the plan can set it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl


@dataclass
class GPTConfig:
    block_size: int = 16
    vocab_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    bias: bool = True


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's own class, not nn.LayerNorm)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.scale = 1.0 / math.sqrt(config.n_embd // config.n_head)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config, branch_mult=None):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.branch_mult = branch_mult

    def forward(self, x):
        if self.branch_mult is None:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x)) * self.branch_mult
        return x + self.mlp(self.ln_2(x)) * self.branch_mult


class GPT(nn.Module):
    def __init__(self, config, mults=None):
        super().__init__()
        self.config = config
        self.mults = mults  # {"input", "branch", "output", "attn_scale"}: the hand-written reference
        branch = mults["branch"] if mults else None
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config, branch) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT
        if mults:
            for block in self.transformer.h:
                block.attn.scale = mults["attn_scale"]

    def forward(self, idx):
        pos = torch.arange(0, idx.shape[1], dtype=torch.long, device=idx.device)
        tok, pos = self.transformer.wte(idx), self.transformer.wpe(pos)
        x = tok + pos if not self.mults else tok * self.mults["input"] + pos * self.mults["input"]
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x if not self.mults else x * self.mults["output"])


def structure(config: GPTConfig, head_growth: str = "head_dim", scale_attr: str | None = "scale") -> dl.Structure:
    """The nanoGPT model described for deeplimit: two branches per block, tied head, attention scale attribute."""
    blocks = [f"transformer.h.{i}" for i in range(config.n_layer)]
    return dl.Structure(
        width=config.n_embd, depth=config.n_layer,
        blocks={b: 2 for b in blocks},
        branches={**{f"{b}.attn": b for b in blocks}, **{f"{b}.mlp": b for b in blocks}},
        inputs=("transformer.wte", "transformer.wpe"), readouts=("lm_head",),
        attention={f"{b}.attn": dl.AttentionSpec(config.n_head, config.n_head, config.n_embd // config.n_head,
                                                 scale_attr) for b in blocks},
        family="transformer", head_growth=head_growth, source="nanogpt")


def build(seed: int = 0, head_growth: str = "head_dim", **kw) -> GPT:
    """A declared nanoGPT (no deeplimit classes inside), seeded."""
    torch.manual_seed(seed)
    cfg = GPTConfig(**kw)
    return dl.declare_structure(GPT(cfg), structure(cfg, head_growth))


def tokens(config: GPTConfig, batch: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, config.block_size), generator=g)
