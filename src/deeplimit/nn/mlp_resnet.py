"""The TP6 MLP-ResNet family (depth-mup spec §1; TP6 §6.3, §8–§10).

    x⁰ = input_mult · U ξ                         U ∈ R^{n×d_in}
    h^ℓ = W^ℓ x^{ℓ−1}                             (post-nonlin, block depth k = 1)
    x^ℓ = x^{ℓ−1} + a·m_L^{−α} · MS(φ(h^ℓ))        ℓ = 1..L
    f  = output_mult·m_N^{−1} · V x^L              V ∈ R^{d_out×n}
    MS(y) = y − mean_width(y)                      per sample, no parameters

The multipliers (``branch_mult`` = a·m_L^{−α}, ``input_mult``, ``output_mult``) are plain floats set by a
:class:`~deeplimit.scaling.Plan`; a freshly built model uses 1 everywhere (the base/SP model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn._validate import MAX_DEPTH, MAX_WIDTH, check_bool, check_fits, check_size
from deeplimit.nn.activations import c_phi
from deeplimit.nn.layers import Input, Readout

Activation = Callable[[torch.Tensor], torch.Tensor]

PHI: dict[str, Activation] = {
    "relu": F.relu,
    "abs": torch.abs,
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}
# Var φ(z) / Var z for z ~ N(0, 1) (spec §8.1); MS removes the mean, so a variance, not a second moment.
C_PHI = {name: c_phi(name) for name in PHI}
_NONZERO_MEAN = {"relu", "abs", "gelu"}


def mean_subtract(y: torch.Tensor) -> torch.Tensor:
    """MS(y) = y − (1/n)⟨y, 1⟩·1 across the width (last) axis."""
    return y - y.mean(dim=-1, keepdim=True)


@dataclass(frozen=True)
class MLPResNetConfig:
    d_in: int = 784
    d_out: int = 10
    width: int = 64
    depth: int = 4  # L: number of residual blocks
    block_depth: int = 1  # k: weight matrices in series per branch (TP6 §9)
    block: Literal["post", "pre"] = "post"  # φ(W x) or W φ(x) (TP6 §8.2)
    activation: str = "relu"
    mean_subtract: bool = True
    pre_ln: bool = False  # LayerNorm on x^{ℓ−1} before W^ℓ (TP6 Fig. 12), keeping MS
    bias: bool = False

    def __post_init__(self) -> None:
        # Sizes are bounded (a typo such as depth=10**12 must not build modules forever) and flags are real
        # bools (mean_subtract='no' would otherwise silently mean True).
        for name, limit in (("d_in", None), ("d_out", None), ("width", MAX_WIDTH), ("depth", MAX_DEPTH),
                            ("block_depth", 1024)):
            object.__setattr__(self, name, check_size(name, getattr(self, name), maximum=limit))
        for name in ("mean_subtract", "pre_ln", "bias"):
            object.__setattr__(self, name, check_bool(name, getattr(self, name)))
        if self.block not in ("post", "pre"):
            raise DeeplimitError(f"block must be 'post' (phi(Wx)) or 'pre' (W phi(x)), got {self.block!r}")
        if not isinstance(self.activation, str) or self.activation not in PHI:
            raise DeeplimitError(f"activation {self.activation!r} is unknown; choose one of {sorted(PHI)}")

    def n_params(self) -> int:
        """Parameter count in closed form (no model is built): d_in·n + L·k·n² + n·d_out, plus biases/norms."""
        n, b = self.width, int(self.bias)
        block = self.block_depth * (n * n + b * n) + (2 * n if self.pre_ln else 0)
        return self.d_in * n + b * n + self.depth * block + n * self.d_out + b * self.d_out

    def n_modules(self) -> int:
        """Modules the model holds (each costs Python memory beyond its tensors)."""
        return 4 + self.depth * (2 + self.block_depth + int(self.pre_ln))


class MLPBlock(nn.Module):
    """One residual block x + branch_mult · MS(φ(W_k … φ(W_1 x))) (post) or x + branch_mult · MS(W_k φ(… x)) (pre)."""

    def __init__(self, cfg: MLPResNetConfig) -> None:
        super().__init__()
        self.dl_block_depth = cfg.block_depth
        self.branch_mult = 1.0
        self.post = cfg.block == "post"
        self.phi = PHI[cfg.activation]
        self.ms = cfg.mean_subtract
        self.ln = nn.LayerNorm(cfg.width) if cfg.pre_ln else None
        self.W = nn.ModuleList(nn.Linear(cfg.width, cfg.width, bias=cfg.bias) for _ in range(cfg.block_depth))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x) if self.ln is not None else x
        for W in self.W:
            h = self.phi(W(h)) if self.post else W(self.phi(h))
        return mean_subtract(h) if self.ms else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch_mult * self.branch(x)


class MLPResNet(nn.Module):
    """TP6 MLP-ResNet. ``forward(ξ)`` → logits; ``forward(ξ, return_stream=True)`` → (logits, [x⁰ … x^L])."""

    dl_family = "resnet"

    def __init__(self, cfg: MLPResNetConfig | None = None, **kw) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MLPResNetConfig(**kw)
        if kw and cfg is not None and not isinstance(cfg, MLPResNetConfig):
            raise DeeplimitError("pass either an MLPResNetConfig or keyword arguments")
        check_fits(f"MLPResNet(width={cfg.width}, depth={cfg.depth})", cfg.n_params(), cfg.n_modules())
        self.width, self.depth = cfg.width, cfg.depth
        self.input = Input(cfg.d_in, cfg.width, bias=cfg.bias)
        self.blocks = nn.ModuleList(MLPBlock(cfg) for _ in range(cfg.depth))
        self.readout = Readout(cfg.width, cfg.d_out, bias=cfg.bias)

    def forward(self, xi: torch.Tensor, return_stream: bool = False):
        x = self.input(xi)
        stream = [x] if return_stream else None
        for block in self.blocks:
            x = block(x)
            if stream is not None:
                stream.append(x)
        f = self.readout(x)
        return (f, stream) if return_stream else f

    def dl_rule_warnings(self, rule) -> list[str]:
        """Model-specific warnings of the depth-mup spec §9 (items 3 and 5)."""
        out = []
        if self.cfg.block == "pre" and rule.alpha <= 0.5:
            out.append("block='pre' with alpha <= 1/2 loses feature diversity; performance saturates (TP6 Fig. 2)")
        if self.cfg.activation in _NONZERO_MEAN and not self.cfg.mean_subtract and not self.cfg.pre_ln:
            out.append(f"activation {self.cfg.activation} has a nonzero Gaussian mean and the branch has no mean "
                       "subtraction or normalisation: the mean accumulates across blocks (spec §1)")
        return out

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def init_rms_ratio(depth: int, base_depth: int, alpha: float, block_mult: float = 1.0, activation: str = "relu",
                   sigma_hidden: float = 1.0) -> float:
    """Closed form RMS(x^L)/RMS(x⁰) = (1 + a²σ_W²c_φ·m_L^{−2α})^{L/2} at init, n → ∞ (spec §8.1, derived)."""
    if activation not in C_PHI:
        raise DeeplimitError(f"activation {activation!r} is unknown; choose one of {sorted(C_PHI)}")
    q = 1 + block_mult**2 * sigma_hidden**2 * C_PHI[activation] * (depth / base_depth) ** (-2 * alpha)
    return q ** (depth / 2)
