"""Signal-propagation diagnostics of transformers at initialisation and during training.

* :func:`grad_norms_at_init` — per-layer gradient norms of W^V and W^Q (Noci et al. 2023, Fig. 2: roughly
  constant over depth for shaped attention, decaying for Pre-LN queries, ≈ 0 for Post-LN queries);
* :func:`attention_entropy` — mean entropy of each layer's softmax attention (Fig. 6: collapses for Pre-LN
  at large LR, not for the shaped model).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn.attention import MultiHeadAttention


def _attention_modules(model: nn.Module) -> list[MultiHeadAttention]:
    mods = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not mods:
        raise DeeplimitError(f"{type(model).__name__} has no MultiHeadAttention modules")
    return mods


@torch.no_grad()
def attention_entropy(model: nn.Module, idx: torch.Tensor) -> list[float]:
    """Mean (over batch, heads, queries) softmax-attention entropy in nats, one value per layer."""
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
