"""Signal-propagation diagnostics of transformers at initialisation and during training.

* :func:`grad_norms_at_init` — per-layer gradient norms of W^V and W^Q (Noci et al. 2023, Fig. 2: roughly
  constant over depth for shaped attention, decaying for Pre-LN queries, ≈ 0 for Post-LN queries);
* :func:`layer_attention_entropy` — mean entropy of each layer's softmax attention (Fig. 6: collapses for Pre-LN
  at large LR, not for the shaped model).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_save
from deeplimit.nn.attention import MultiHeadAttention
from deeplimit.nn.transformer import SHAPED
from deeplimit.plotting import tight_layout

SIGNAL_VARIANTS: dict[str, dict] = {
    "shaped": dict(SHAPED),
    # unshaped softmax attention with the same λ/γ residual and no LayerNorm: the rank-collapse baseline
    "softmax": dict(norm="none", attention="softmax", logit_scale="sqrt", activation="relu", residual="shaped"),
    "pre_ln": dict(norm="pre_ln", logit_scale="sqrt"),
    "post_ln": dict(norm="post_ln", logit_scale="sqrt"),
}
"""Transformer variants compared by the signal-propagation study (TransformerConfig overrides)."""


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    try:  # atomically: reports read the figures back
        atomic_save(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    finally:
        plt.close(fig)


def _attention_modules(model: nn.Module) -> list[MultiHeadAttention]:
    mods = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not mods:
        raise DeeplimitError(f"{type(model).__name__} has no MultiHeadAttention modules")
    return mods


@torch.no_grad()
def layer_attention_entropy(model: nn.Module, idx: torch.Tensor) -> list[float]:
    """Mean (over batch, heads, queries) softmax-attention entropy in nats, one value per layer of ``model``
    on the token batch ``idx`` ``(B, m)``. Per-head entropies of one attention matrix are
    :func:`deeplimit.nn.attention.attention_entropy`."""
    mods = _attention_modules(model)
    was_training = model.training
    model.eval()
    for m in mods:
        m.track_entropy = True
    try:
        model(idx)
        return [float(m.last_entropy.mean()) for m in mods]
    finally:
        for m in mods:
            m.track_entropy = False
        model.train(was_training)


def grad_norms_at_init(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> pd.DataFrame:
    """Frobenius norms of ∂loss/∂W^V and ∂loss/∂W^Q per layer for one next-token batch (no update)."""
    model.zero_grad(set_to_none=True)
    logits = model(idx)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
    rows = []
    for layer, m in enumerate(_attention_modules(model)):
        for name in ("v", "q"):
            g = getattr(m, name).weight.grad
            rows.append({"layer": layer, "param": f"W^{name.upper()}",
                         "grad_norm": float(g.norm()) if g is not None else 0.0})
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)


def plot_grad_norms(df: pd.DataFrame, path) -> str:
    """Fig. 2 style: gradient norm vs layer, one panel per parameter (W^V, W^Q), one curve per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted(df["param"].unique(), reverse=True)  # W^V first
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 3.6), squeeze=False)
    for ax, p in zip(axes[0], params):
        for variant, g in df[df["param"] == p].groupby("variant"):
            m = g.groupby("layer")["grad_norm"]
            ax.errorbar(m.mean().index, m.mean().values, yerr=m.sem().fillna(0).values, marker="o", ms=3,
                        capsize=2, label=variant)
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"‖∂loss/∂{p}‖ at init")
        ax.set_title(f"gradient norm of {p} (mean ± s.e. over seeds)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    tight_layout(fig)
    _save(fig, path)
    return str(path)


def plot_entropy(df: pd.DataFrame, path) -> str:
    """Fig. 6 style: mean attention entropy vs training step, first and last layer, one curve per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    last = int(df["layer"].max())
    for (variant, layer), g in df[df["layer"].isin([0, last])].groupby(["variant", "layer"]):
        g = g.sort_values("step")
        ax.plot(g["step"], g["value"], "o-" if layer == 0 else "s--", ms=3, label=f"{variant}, layer {layer}")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean attention entropy (nats)")
    ax.set_title("attention entropy during training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    tight_layout(fig)
    _save(fig, path)
    return str(path)


@torch.no_grad()
def token_correlation_vs_layer(model: nn.Module, idx: torch.Tensor) -> pd.DataFrame:
    """Token correlations ρ^{αβ} = ⟨x^α, x^β⟩/(‖x^α‖‖x^β‖) of the residual stream per layer, at the model's
    current weights (Noci et al. 2023, Fig. 1 left): mean |ρ| over token pairs and sequences, its 10/50/90%
    quantiles, and the mean |covariance| ⟨x^α, x^β⟩/n. Needs ``forward(idx, return_stream=True)``."""
    _, stream = model(idx, return_stream=True)
    rows = []
    for layer, x in enumerate(stream):
        x = x.double()
        V = x @ x.transpose(-1, -2) / x.shape[-1]  # (B, m, m)
        d = V.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
        rho = V / (d.unsqueeze(-1) * d.unsqueeze(-2))
        iu = torch.triu_indices(V.shape[-1], V.shape[-1], offset=1)
        r = rho[:, iu[0], iu[1]].abs().flatten()
        q = torch.quantile(r, torch.tensor([0.1, 0.5, 0.9], dtype=r.dtype))
        rows.append({"layer": layer, "mean_abs_rho": float(r.mean()), "q10": float(q[0]), "q50": float(q[1]),
                     "q90": float(q[2]), "mean_abs_cov": float(V[:, iu[0], iu[1]].abs().mean())})
    return pd.DataFrame(rows)


def plot_token_correlation(df: pd.DataFrame, path) -> str:
    """Mean |ρ| (with the 10–90% band) and mean |covariance| vs layer, one curve per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for variant, g in df.groupby("variant"):
        g = g.groupby("layer").mean(numeric_only=True)
        line, = axes[0].plot(g.index, g["mean_abs_rho"], lw=1.8, label=variant)
        axes[0].fill_between(g.index, g["q10"], g["q90"], color=line.get_color(), alpha=0.15)
        axes[1].plot(g.index, g["mean_abs_cov"], lw=1.8, label=variant)
    axes[0].set_ylabel("mean |ρ| between tokens (10–90% band)")
    axes[1].set_ylabel("mean |covariance| between tokens")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("token correlation at initialization (rank collapse)", fontsize=10)
    tight_layout(fig)
    _save(fig, path)
    return str(path)
