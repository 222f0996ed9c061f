"""The implementation table of the depth-mup spec §4: one pure function per column, the only place the formulas live.

Every function returns a factor relative to the base value tuned at (n₀, L₀), so each is 1 at the base shape
(spec §8.3). Arguments are plain numbers: ``fi``/``fo`` are the tensor's fan-in / fan-out multipliers (m_N of
each dimension), ``m_L = L/L₀``. The rule's width law is ``rule.is_mup`` (μP in the readout-multiplier form,
decision D1) or SP (no width law at all).
"""

from __future__ import annotations

import math

from deeplimit.scaling.hparams import HParams
from deeplimit.scaling.rules import Rule


def tensor_width_mult(fi: float, fo: float) -> float:
    """m_N of one tensor: its fan-in multiplier if fan-in scales, else its fan-out multiplier (as ``mup``)."""
    return fi if fi != 1.0 else fo


# --- forward multipliers (spec §3 (b), §2.2, §5.1) ------------------------------------------------------------
def branch_mult(rule: Rule, hp: HParams, m_L: float) -> float:
    """Residual branch multiplier a·m_L^{-α} (spec §3 (b))."""
    return hp.block_mult * m_L ** (-rule.alpha)


def input_mult(rule: Rule, hp: HParams) -> float:
    """Input-layer / embedding output multiplier (spec §4 "input" row): width-independent."""
    return hp.input_mult


def input_scale_correction(rule: Rule, m_N: float, power: float) -> float:
    """m_N^{-p} under μP for an input whose model multiplies it by width^p in its own forward (Gemma's √n
    normalizer: p = 1/2), so the input stays O(1) over width; 1 under SP (the model as it is) and at the base."""
    return m_N ** (-power) if rule.is_mup and power else 1.0


def readout_mult(rule: Rule, hp: HParams, m_N: float) -> float:
    """Readout multiplier: output_mult·m_N^{-1} under μP (canonical form, spec §2.2), output_mult under SP."""
    return hp.output_mult / m_N if rule.is_mup else hp.output_mult


def router_mult(rule: Rule, m_N: float) -> float:
    """A MoE router's input multiplier: m_N^{-1} under μP (its E outputs are finite, a readout's shape; no
    output_mult, which belongs to the model's head), 1 under SP (scaling/moe.py)."""
    return 1.0 / m_N if rule.is_mup else 1.0


def base_heads(n_heads: int, head_dim: int, m_N: float, head_growth: str) -> tuple[float, float]:
    """(H₀, d₀), heads and head dimension at the base width (spec §5.1): the dimension that grows with width is
    divided by m_N — head_dim when ``head_growth == "head_dim"`` (heads fixed), the heads otherwise."""
    if head_growth == "head_dim":
        return float(n_heads), head_dim / m_N
    return n_heads / m_N, float(head_dim)


def attention_scale(rule: Rule, hp: HParams, head_dim: int, base_head_dim: float, own_scale: float) -> float:
    """Logit scale on q·k (spec §5.1).

    ``own_scale`` is the model's own scale, c/√d (c = 1 for the usual 1/√d). μP: attn_mult·c·√d₀/d, the 1/d law
    normalised so that at the base shape (d = d₀) it equals the model's own scale and μP is the SP model bit for
    bit; SP ("sqrt"): attn_mult·c/√d.
    """
    c = own_scale * math.sqrt(head_dim)
    if rule.attention == "mup":
        return hp.attn_mult * c * math.sqrt(base_head_dim) / head_dim
    return hp.attn_mult * c / math.sqrt(head_dim)


# --- init std (spec §4 "init std" column) ----------------------------------------------------------------------
def init_std(rule: Rule, hp: HParams, role: str, kind: str | None, fan_in: int, fi: float) -> float:
    """Init std of a ``normal``-initialised tensor with ``fan_in`` (actual) and fan-in multiplier ``fi``.

    input σ_in/√d_in (embedding tables σ_emb); hidden σ_W/√fan_in; readout σ_out/√n₀ under μP (constant in n),
    σ_out/√fan_in under SP — equal at the base shape — or 0 (decision D10).
    """
    if kind == "embedding":
        return hp.sigma_emb
    if role == "input":
        return hp.sigma_in / math.sqrt(fan_in)
    if role == "router":  # a readout's width-independent std (μP), with the hidden σ of the block it sits in
        return hp.sigma_hidden / math.sqrt(fan_in / fi if rule.is_mup else fan_in)
    if role == "readout":
        if hp.readout_zero_init:
            return 0.0
        return hp.sigma_out / math.sqrt(fan_in / fi if rule.is_mup else fan_in)
    return hp.sigma_hidden / math.sqrt(fan_in)


def init_width_factor(rule: Rule, role: str, kind: str | None, fi: float) -> float:
    """How a tensor's init std changes from the base shape: the width law of :func:`init_std` alone
    (``init_std = base-shape std × init_width_factor``; 1 at the base shape). Embedding and input tensors keep
    theirs (fan-in fixed), hidden ones scale as fi^{-1/2}, a readout or MoE router keeps its std under μP and
    scales as fi^{-1/2} under SP. Used where the base-shape std is the model's own rather than a σ/√fan_in formula."""
    if kind == "embedding" or role == "input" or (role in ("readout", "router") and rule.is_mup):
        return 1.0
    return 1.0 / math.sqrt(fi)


# --- learning rate (spec §4 "SGD LR" / "Adam LR", §3 (c), note 1) ---------------------------------------------------
def width_lr(rule: Rule, optimizer: str, role: str, fi: float, fo: float) -> float:
    """Width factor of the LR. Adam: hidden η·m_N^{-1}, else η. SGD: hidden η·fo/fi (MuSGD, note 1), else η·m_N.
    Muon (hidden matrices): √(fo/fi), the change of the spectral factor √(fan_out/fan_in) from the base shape."""
    if not rule.is_mup:
        return 1.0
    if optimizer == "muon":
        return math.sqrt(fo / fi)
    if optimizer == "sgd":
        return fo / fi if role == "hidden" else tensor_width_mult(fi, fo)
    return 1.0 / fi if role == "hidden" else 1.0


def depth_lr(rule: Rule, optimizer: str, in_block: bool, m_L: float) -> float:
    """Depth factor of the LR for in-block tensors: Adam m_L^{-γ}, SGD m_L^{α-γ} (spec §3 (c)); 1 outside blocks."""
    if not in_block:
        return 1.0
    return m_L ** (rule.alpha - rule.gamma) if optimizer == "sgd" else m_L ** (-rule.gamma)


def lr_scale(rule: Rule, optimizer: str, role: str, in_block: bool, fi: float, fo: float, m_L: float) -> float:
    """LR factor of one tensor (group ``lr_scale``): width factor × depth factor."""
    return width_lr(rule, optimizer, role, fi, fo) * depth_lr(rule, optimizer, in_block, m_L)


# --- Muon (optimizers spec §1–§3; decisions O1–O4 in docs/optimizers.md) ----------------------------------------
def param_optimizer(optimizer: str, role: str, ndim: int) -> str:
    """The torch optimizer that updates one tensor. Under ``"muon"``: hidden 2-D matrices (in-block or not) on
    Muon; embeddings, readout, vectors and hidden tensors that are not 2-D (convolutions) on AdamW (decision O3:
    ``torch.optim.Muon`` takes 2-D parameters only). Other optimizers update every tensor themselves."""
    if optimizer != "muon":
        return optimizer
    return "muon" if role == "hidden" and ndim == 2 else "adamw"


def muon_torch_factor(shape: tuple[int, ...]) -> float:
    """The factor ``torch.optim.Muon`` itself multiplies the group LR by for a (A, B) = ``shape`` matrix under
    ``adjust_lr_fn="original"``: √max(1, A/B) (torch 2.13 ``_muon.py``; Keller Jordan's Muon)."""
    a, b = shape[0], shape[1]
    return math.sqrt(max(1.0, a / b))


def muon_update_scale(rule: Rule, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> float:
    """Width factor of a Muon matrix's *effective* LR (what multiplies the orthogonalised update O).

    μP: the spectral condition ΔW = −η·√(fan_out/fan_in)·O with a width-independent η (optimizers spec §1,
    decision O1). SP: the factor plain ``torch.optim.Muon`` applies (√max(1, A/B)), i.e. Muon as people use it.
    """
    if rule.is_mup:
        return math.sqrt(fan_out / fan_in)
    return muon_torch_factor(shape)


def muon_lr_scale(rule: Rule, hp: HParams, in_block: bool, fan_in: int, fan_out: int, shape: tuple[int, ...],
                  m_L: float) -> float:
    """Group LR factor of a Muon matrix: muon_lr_ratio × effective factor ÷ torch's own factor × m_L^{-γ}.

    torch multiplies the group LR by :func:`muon_torch_factor` inside ``step``; dividing it out here means the
    effective step is η·muon_lr_ratio·:func:`muon_update_scale`·m_L^{-γ}, the factor applied exactly once
    (decision O2). The depth factor is Adam's (optimizers spec §3: an update whose size ignores the gradient's
    scale; measured in docs/optimizers.md). ``hp.muon_lr_ratio`` is the Muon base LR over η (decision O5).
    """
    effective = muon_update_scale(rule, fan_in, fan_out, shape) * depth_lr(rule, "adam", in_block, m_L)
    return hp.muon_lr_ratio * effective / muon_torch_factor(shape)


# --- Adam ε (spec §4 "Adam ε", note 4, decision D2) -----------------------------------------------------------------
def eps_scale(rule: Rule, in_block: bool, m_N: float, global_m_N: float, m_L: float) -> float:
    """ε factor: ε follows the group's gradient scale, m_N^{-1} (μP) × m_L^{-α} in blocks (``consistent``).

    ``blocks``: only in-block groups scaled (CompleteP Table 1); ``all``: one ε for every group from the model's
    global m_N (nanoGPT-mup); ``none``: unscaled. ``m_N`` is the tensor's width multiplier.
    """
    depth = m_L ** (-rule.alpha)
    width = 1.0 / m_N if rule.is_mup else 1.0
    if rule.eps_scope == "consistent":
        return width * (depth if in_block else 1.0)
    if rule.eps_scope == "blocks":
        return width * depth if in_block else 1.0
    if rule.eps_scope == "all":
        return (1.0 / global_m_N if rule.is_mup else 1.0) * depth
    return 1.0


# --- weight decay (decisions D3, D4) -------------------------------------------------------------------------------
def wd_scale(rule: Rule, hp: HParams, role: str, width_lr_factor: float) -> float:
    """λ factor: vectors never decay (unless ``decay_vectors``); ``mup`` mode divides by the width LR factor
    so the coupled decay lr·λ is width-invariant (MuAdam/MuSGD); ``torch``/``independent``: 1."""
    if role == "vector" and not hp.decay_vectors:
        return 0.0
    if rule.wd_mode == "mup":
        return 1.0 / width_lr_factor
    return 1.0


def decay_for_rate(rate: float, lr: float, lr_factor: float) -> float:
    """The coefficient λ that makes a decoupled decay shrink weights by ``rate`` per step at the group LR
    lr_g = lr·lr_factor: torch applies p ← p·(1 − lr_g·λ), so λ = rate / lr_g."""
    return rate / (lr * lr_factor)


def group_weight_decay(rule: Rule, weight_decay: float, wd_factor: float, lr: float | None,
                       lr_factor: float) -> float:
    """The ``weight_decay`` value of an optimizer group with base λ, base LR ``lr`` and the tensor's factors.

    ``independent`` mode (u-μP): λ / lr_g(0) with lr_g(0) = lr·lr_scale, so the per-step decay λ·s(t) ignores η
    and the width/depth factors. Without a base LR (a factor-only table) it falls back to λ·wd_scale.
    """
    if rule.wd_mode == "independent" and wd_factor and lr:
        return decay_for_rate(weight_decay, lr, lr_factor)
    return weight_decay * wd_factor


def timescale_weight_decay(tau_steps: float, wd_factor: float, lr: float, lr_factor: float) -> float:
    """λ of a group whose weights are an EMA of their updates with timescale τ = 1/(η_g·λ) steps (optimizers
    spec §4, Wang & Aitchison 2024): λ = 1/(η_g·τ), held fixed per tensor whatever its width/depth LR factor.
    Tensors that never decay (``wd_factor == 0``: vectors, decision D4) keep λ = 0."""
    if not wd_factor:
        return 0.0
    return decay_for_rate(1.0 / tau_steps, lr, lr_factor)
