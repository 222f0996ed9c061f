"""Shaped attention unit checks (shaped-transformer spec §9 check 8) and the multi-head module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deeplimit.nn.attention as attention_module
from deeplimit.errors import DeeplimitError
from deeplimit.nn.attention import (
    DENSE_MAX_LEN,
    MultiHeadAttention,
    _dense_shaped,
    _shaped_residual,
    attention_entropy,
    shaped_attention,
    uniform_attention_apply,
    uniform_attention_matrix,
)

B, H, M, D = 2, 3, 7, 5


@pytest.fixture(params=["dense", "scan"])
def fused_path(request, monkeypatch):
    """Run a test through each of the fused implementation's two causal paths: the dense one (m ≤ DENSE_MAX_LEN
    on CPU, the default at these sizes) and the SDPA + running-sum one (the threshold set to 0)."""
    if request.param == "scan":
        monkeypatch.setattr(attention_module, "DENSE_MAX_LEN", 0)
    return request.param


def _qkv(seed: int = 0, dtype=torch.float64, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, M, D, generator=g, dtype=dtype).requires_grad_(requires_grad) for _ in range(3)]


# ---------------------------------------------------------------------------------------------------------
# uniform attention


@pytest.mark.parametrize("causal", [False, True])
def test_uniform_apply_matches_matrix(causal):
    (v,) = _qkv()[:1]
    u = uniform_attention_matrix(M, causal, dtype=torch.float64)
    torch.testing.assert_close(uniform_attention_apply(v, causal), u @ v, rtol=0, atol=1e-14)


def test_uniform_matrix_rows():
    u = uniform_attention_matrix(4, causal=True, dtype=torch.float64)
    expected = torch.tensor([[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 4] * 4],
                            dtype=torch.float64)
    torch.testing.assert_close(u, expected)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(uniform_attention_matrix(3, mask=mask, dtype=torch.float64).sum(-1),
                               torch.ones(3, dtype=torch.float64))
    with pytest.raises(DeeplimitError, match="no allowed key"):
        uniform_attention_matrix(3, mask=torch.zeros(3, 3, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------------
# shaped attention: spec §9 check 8


@pytest.mark.parametrize("causal", [False, True])
def test_rows_of_A_sum_to_one(causal):
    q, k, v = _qkv()
    _, a = shaped_attention(q, k, v, gamma1=1.0, gamma2=1.0, tau=0.7, causal=causal, impl="reference",
                            return_attention=True)
    torch.testing.assert_close(a.sum(-1), torch.ones(B, H, M, dtype=torch.float64), rtol=0, atol=1e-13)
    # and γ1 + 1 − γ2 in general
    _, a = shaped_attention(q, k, v, gamma1=0.3, gamma2=0.8, tau=0.7, causal=causal, impl="reference",
                            return_attention=True)
    torch.testing.assert_close(a.sum(-1), torch.full((B, H, M), 0.5, dtype=torch.float64), rtol=0, atol=1e-13)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("gammas", [(1.0, 1.0), (0.4, 0.7), (0.0, 0.0)])
def test_zero_queries_give_identity_plus_uniform(causal, gammas, fused_path):
    g1, g2 = gammas
    _, k, v = _qkv()
    q = torch.zeros_like(k)
    out, a = shaped_attention(q, k, v, gamma1=g1, gamma2=g2, tau=1.0, causal=causal, impl="reference",
                              return_attention=True)
    u = uniform_attention_matrix(M, causal, dtype=torch.float64)
    expected = g1 * torch.eye(M, dtype=torch.float64) + (1 - g2) * u
    torch.testing.assert_close(a, expected.expand_as(a), rtol=0, atol=1e-14)
    fused = shaped_attention(q, k, v, gamma1=g1, gamma2=g2, tau=1.0, causal=causal)
    torch.testing.assert_close(fused, out, rtol=0, atol=1e-13)
    if gammas == (1.0, 1.0):
        torch.testing.assert_close(fused, v, rtol=0, atol=1e-13)  # identity map on the values


def _per_head(values, requires_grad):
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("gains", ["float", "scalar_tensor", "per_head"])
def test_fused_equals_reference_forward_and_grads(causal, gains, fused_path):
    outs, grads = {}, {}
    for impl in ("fused", "reference"):
        q, k, v = _qkv(seed=1, requires_grad=True)
        if gains == "per_head":
            g1, g2 = _per_head([1.0, 0.6, 0.2], True), _per_head([0.9, 1.0, 0.3], True)
        elif gains == "scalar_tensor":
            g1, g2 = _per_head(0.8, True), _per_head(0.5, True)
        else:
            g1, g2 = 0.8, 0.5
        out = shaped_attention(q, k, v, gamma1=g1, gamma2=g2, tau=1.3, causal=causal, impl=impl)
        w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)  # a generic cotangent
        (out * w).sum().backward()
        outs[impl] = out.detach()
        grads[impl] = [t.grad for t in (q, k, v, g1, g2) if isinstance(t, torch.Tensor)]
    torch.testing.assert_close(outs["fused"], outs["reference"], rtol=1e-12, atol=1e-12)
    for gf, gr in zip(grads["fused"], grads["reference"], strict=True):
        torch.testing.assert_close(gf, gr, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_uniform_residual_gradcheck(causal):
    # attn + γ1·V − γ2·U V (float gains, 0-dim and per-head tensor gains) against finite differences
    attn, v = (torch.randn(1, 2, 5, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    g1 = torch.tensor([0.7, 0.2], dtype=torch.float64, requires_grad=True)
    g2 = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    f = lambda attn, v, g1, g2: _shaped_residual(attn, v, g1.view(1, 2, 1, 1), g2, causal)
    assert torch.autograd.gradcheck(f, (attn, v, g1, g2))
    f_float = lambda attn, v: _shaped_residual(attn, v, 0.3, 0.9, causal)
    assert torch.autograd.gradcheck(f_float, (attn, v))


def test_dense_path_gradcheck():
    q, k, v = (torch.randn(1, 2, 6, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    g1 = torch.tensor([0.7, 0.2], dtype=torch.float64, requires_grad=True)
    g2 = torch.tensor([0.4, 1.1], dtype=torch.float64, requires_grad=True)
    f = lambda q, k, v, g1, g2: _dense_shaped(q, k, v, g1.view(1, 2, 1, 1), g2.view(1, 2, 1, 1), 0.8)
    assert torch.autograd.gradcheck(f, (q, k, v, g1, g2))
    assert torch.autograd.gradcheck(lambda q, k, v: _dense_shaped(q, k, v, 0.3, 0.9, 0.8), (q, k, v))


def _graph_ops(t: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``t``."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


@pytest.mark.parametrize("causal", [True, False])
def test_fused_takes_the_dense_path_only_up_to_the_threshold(causal):
    """Causal attention on CPU: dense (softmax of the m×m logits) for m ≤ DENSE_MAX_LEN, SDPA + running sum beyond;
    bidirectional attention always takes SDPA + mean. Both sides of the threshold equal the reference."""
    for m in (DENSE_MAX_LEN, DENSE_MAX_LEN + 1):
        g = torch.Generator().manual_seed(m)
        q, k, v = (torch.randn(1, 2, m, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
        out = shaped_attention(q, k, v, gamma1=0.9, gamma2=0.6, tau=2.0, causal=causal)
        ops = _graph_ops(out)
        dense = causal and m <= DENSE_MAX_LEN
        assert ("SoftmaxBackward0" in ops) == dense, (m, sorted(ops))
        assert any("ScaledDotProduct" in name for name in ops) == (not dense), (m, sorted(ops))
        ref = shaped_attention(q, k, v, gamma1=0.9, gamma2=0.6, tau=2.0, causal=causal, impl="reference")
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_fused_equals_reference_with_mask():
    q, k, v = _qkv(seed=2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(B, 1, M, M, generator=g) > 0.4
    mask |= torch.eye(M, dtype=torch.bool)  # every row keeps its own key
    for causal in (False, True):
        fused = shaped_attention(q, k, v, tau=0.9, causal=causal, attn_mask=mask)
        ref, a = shaped_attention(q, k, v, tau=0.9, causal=causal, attn_mask=mask, impl="reference",
                                  return_attention=True)
        torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.sum(-1), torch.ones(B, H, M, dtype=torch.float64))


def _softmax_expansion_errors(sign: float):
    """Max error of the second-order expansion of Softmax(y/τ) (spec §2.2) over a τ grid."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(16, 6))
    taus = np.geomspace(20.0, 200.0, 6)
    ybar = y.mean(-1, keepdims=True)
    y2bar = (y ** 2).mean(-1, keepdims=True)
    m = y.shape[-1]
    errs = []
    for tau in taus:
        z = y / tau
        exact = np.exp(z - z.max(-1, keepdims=True))
        exact /= exact.sum(-1, keepdims=True)
        # correct bracket: (y−ȳ)² − (mean(y²) − ȳ²); the printed Eq. 8 flips the sign of the second part
        bracket = (y - ybar) ** 2 - sign * (y2bar - ybar ** 2)
        approx = 1 / m + (y - ybar) / (tau * m) + bracket / (2 * tau ** 2 * m)
        errs.append(np.abs(exact - approx).max())
    return np.log(taus), np.log(errs)


def test_softmax_taylor_expansion_order():
    slope_correct = np.polyfit(*_softmax_expansion_errors(+1.0), 1)[0]
    slope_erratum = np.polyfit(*_softmax_expansion_errors(-1.0), 1)[0]
    assert slope_correct == pytest.approx(-3.0, abs=0.1)
    assert slope_erratum == pytest.approx(-2.0, abs=0.1)


def test_shaped_attention_errors():
    q, k, v = _qkv()
    with pytest.raises(DeeplimitError, match="tau must be positive"):
        shaped_attention(q, k, v, tau=0.0)
    with pytest.raises(DeeplimitError, match="one value per head"):
        shaped_attention(q, k, v, tau=1.0, gamma1=torch.ones(H + 1))
    with pytest.raises(DeeplimitError, match="does not fit"):
        shaped_attention(q, k, v, tau=1.0, attn_mask=torch.ones(M + 1, M + 1, dtype=torch.bool))
    with pytest.raises(DeeplimitError, match="boolean"):
        shaped_attention(q, k, v, tau=1.0, attn_mask=torch.zeros(M, M))
    with pytest.raises(DeeplimitError, match="impl='reference'"):
        shaped_attention(q, k, v, tau=1.0, return_attention=True)
    with pytest.raises(DeeplimitError, match="unknown impl"):
        shaped_attention(q, k, v, tau=1.0, impl="flash")


# ---------------------------------------------------------------------------------------------------------
# MultiHeadAttention


def _x(n=24, m=6, seed=0):
    return torch.randn(2, m, n, generator=torch.Generator().manual_seed(seed))


def test_module_projections_are_plain_linears():
    mha = MultiHeadAttention(24, 4, attention="shaped")
    for name in "qkvo":
        assert type(getattr(mha, name)) is torch.nn.Linear
    assert mha(_x()).shape == (2, 6, 24)


def test_logit_scales():
    n, h = 64, 4
    d = n // h
    assert MultiHeadAttention(n, h).scale == pytest.approx(1 / math.sqrt(d))
    assert MultiHeadAttention(n, h, logit_scale="mup", attn_mult=2.0).scale == pytest.approx(2.0 / d)
    shaped = MultiHeadAttention(n, h, attention="shaped", tau0=0.5)
    assert shaped.scale == pytest.approx(1 / (0.5 * math.sqrt(n * d)))
    init_mode = MultiHeadAttention(n, h, attention="shaped", tau_mode="init", tau0=0.5)
    assert init_mode.scale == pytest.approx(1 / math.sqrt(d))


def test_temperature_and_init_mode_agree_at_init_in_distribution():
    # Same logits at init: W^Q W^Kᵀ carries the extra 1/(√n τ0) either in the scale or in the weights.
    n, h, tau0 = 256, 4, 0.7
    temp = MultiHeadAttention(n, h, attention="shaped", tau0=tau0)
    init = MultiHeadAttention(n, h, attention="shaped", tau_mode="init", tau0=tau0)
    assert init.init_std("q") == pytest.approx((n ** -1.5 / tau0) ** 0.5) and init.init_std("v") == n ** -0.5
    var_temp = temp.q.weight.var() * temp.k.weight.var() * temp.scale ** 2
    var_init = init.q.weight.var() * init.k.weight.var() * init.scale ** 2
    assert float((var_init / var_temp).detach()) == pytest.approx(1.0, rel=0.05)


def test_zero_query_init_gives_identity_attention():
    mha = MultiHeadAttention(24, 4, attention="shaped", logit_scale="sqrt", zero_query_init=True)
    x = _x()
    with torch.no_grad():
        expected = mha.o(mha.v(x))  # A = I: attention is the identity on the values
        torch.testing.assert_close(mha(x), expected, rtol=1e-5, atol=1e-6)


def test_recover_schedule_reaches_plain_softmax():
    mha = MultiHeadAttention(24, 4, attention="shaped", shaping="recover", recover_steps=10)
    plain = MultiHeadAttention(24, 4, attention="softmax", logit_scale="shaped")
    plain.load_state_dict({k: v for k, v in mha.state_dict().items() if not k.startswith("gamma")})
    mha.set_step(5)
    torch.testing.assert_close(mha.gamma1, torch.full((4,), 0.5))
    mha.set_step(10)
    assert float(mha.gamma1.abs().max()) == 0.0 and float(mha.gamma2.abs().max()) == 0.0
    mha.set_step(10_000)  # clamped, never negative
    assert float(mha.gamma1.min()) == 0.0
    x = _x()
    torch.testing.assert_close(mha(x), plain(x), rtol=1e-5, atol=1e-6)


def test_learn_mode_gains_are_trainable_per_head():
    mha = MultiHeadAttention(24, 4, attention="shaped", shaping="learn")
    assert isinstance(mha.gamma1, torch.nn.Parameter) and mha.gamma1.shape == (4,)
    mha(_x()).square().sum().backward()
    assert mha.gamma1.grad is not None and mha.gamma2.grad.shape == (4,)
    fixed = MultiHeadAttention(24, 4, attention="shaped")
    assert "gamma1" not in dict(fixed.named_parameters())


def test_entropy_uses_softmax_part_only_when_flagged():
    mha = MultiHeadAttention(24, 4, attention="shaped", causal=False, zero_query_init=True)
    mha(_x())
    assert mha.last_entropy is None
    mha.track_entropy = True
    y, probs = mha(_x(), return_probs=True)
    # zero queries: the softmax part is uniform, so its entropy is log m (the shaped A = I would give 0)
    torch.testing.assert_close(mha.last_entropy, torch.full((4,), math.log(6.0)))
    torch.testing.assert_close(attention_entropy(probs), mha.last_entropy)


def test_module_matches_reference_impl_with_mask():
    torch.manual_seed(0)
    fused = MultiHeadAttention(24, 4, attention="shaped", shaping="learn").double()
    ref = MultiHeadAttention(24, 4, attention="shaped", shaping="learn", impl="reference").double()
    ref.load_state_dict(fused.state_dict())
    x = _x().double()
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[:, 0] = False
    mask[0, 0] = True
    torch.testing.assert_close(fused(x, attn_mask=mask), ref(x, attn_mask=mask), rtol=1e-12, atol=1e-12)


def test_module_compiles_and_schedule_needs_no_recompile():
    mha = MultiHeadAttention(16, 2, attention="shaped", shaping="recover", recover_steps=4)
    x = _x(n=16, m=4)
    n_compiles = 0

    def counting_backend(gm, example_inputs):
        nonlocal n_compiles
        n_compiles += 1
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(mha, backend=counting_backend, fullgraph=True)
    for step in range(3):
        mha.set_step(step)
        torch.testing.assert_close(compiled(x), mha(x))
    assert n_compiles == 1  # the schedule lives in buffers, so a new step is not a new graph


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=24, n_heads=5), "does not divide"),
        (dict(n=24, n_heads=4, tau0=0.0), "tau0 must be positive"),
        (dict(n=24, n_heads=4, gamma1_init=1.5), r"\[0, 1\]"),
        (dict(n=24, n_heads=4, gamma2_init=-0.1), r"\[0, 1\]"),
        (dict(n=24, n_heads=4, attention="linear"), "valid choices"),
        (dict(n=24, n_heads=4, logit_scale="sqrtn"), "valid choices"),
    ],
)
def test_module_construction_errors(kwargs, match):
    with pytest.raises(DeeplimitError, match=match):
        MultiHeadAttention(**kwargs)


def test_module_input_errors():
    mha = MultiHeadAttention(24, 4, max_seq_len=5)
    with pytest.raises(DeeplimitError, match="exceeds the context"):
        mha(_x(m=6))
    mha = MultiHeadAttention(24, 4)
    with pytest.raises(DeeplimitError, match="does not broadcast"):
        mha(_x(), attn_mask=torch.ones(3, 4, 6, 6, dtype=torch.bool))
    with pytest.raises(DeeplimitError, match="does not fit"):
        mha(_x(), attn_mask=torch.ones(5, 5, dtype=torch.bool))
