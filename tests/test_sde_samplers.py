"""Spec §9 check 7 (cheap samplers == explicit network) and unit checks of the theory blocks (§2, §6)."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.nn.theory import (
    ShapedAttentionLayer,
    ShapedBlock,
    ShapedReLUMLP,
    ShapedReLUResidualMLP,
    attention_matrix,
    relu_slopes,
    shaped_relu,
    skip_normal,
)
from deeplimit.sde.compare import extract, ks_distance
from deeplimit.sde.events import Band
from deeplimit.sde.samplers import Network, initial_X, sample_network
from deeplimit.sde.saveat import SaveAt
from sde_helpers import ks_with_seed_policy

V0_3 = torch.tensor([[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 1.2]], dtype=torch.float64)
ENTRIES = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]


@functools.lru_cache(maxsize=16)
def explicit_terminal(kind: str, seed: int, paths: int) -> torch.Tensor:
    # the explicit reference is the expensive side; both cheap methods are compared with the same draw
    return sample_network(
        kind, 32, 8, V0_3, gamma=0.6, tau0=0.7, paths=paths, method="explicit", seed=200 + seed
    ).terminal


def terminal_ks(kind: str, method: str, seed: int, paths: int = 4096) -> list[float]:
    a = sample_network(
        kind, 32, 8, V0_3, gamma=0.6, tau0=0.7, paths=paths, method=method, seed=100 + seed
    ).terminal
    b = explicit_terminal(kind, seed, paths)
    return [ks_distance(extract(a, "V", i, j), extract(b, "V", i, j)) for i, j in ENTRIES]


@pytest.mark.parametrize("kind", ["attention", "resnet", "block"])
@pytest.mark.parametrize("method", ["cheap", "gram"])
def test_cheap_sampler_matches_explicit(kind: str, method: str) -> None:
    ks = ks_with_seed_policy(lambda s: terminal_ks(kind, method, s), 0.03)
    assert max(ks) <= 0.03, ks


def test_plain_mlp_cheap_matches_explicit() -> None:
    # plain shaped-ReLU MLP (a) from Gaussian-like inputs; the gram method falls back to the X-state sampler
    X0 = torch.randn(3, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(n=32, d=4, X0=X0, paths=4096)
    ks = ks_with_seed_policy(
        lambda s: [
            ks_distance(
                extract(sample_network("mlp", method="cheap", seed=s, **kw).terminal, "V", i, j),
                extract(sample_network("mlp", method="explicit", seed=50 + s, **kw).terminal, "V", i, j),
            )
            for i, j in ENTRIES
        ],
        0.03,
    )
    assert max(ks) <= 0.03, ks


def test_samplers_negative_control() -> None:
    # power: the softmax network must be told apart from the shaped one by the same statistic
    kw = dict(n=32, d=8, V0=V0_3, gamma=0.6, paths=2048)
    a = sample_network("attention", seed=1, **kw).terminal
    b = sample_network("attention", variant="softmax", method="explicit", seed=2, **kw).terminal
    assert ks_distance(extract(a, "rho", 0, 1), extract(b, "rho", 0, 1)) > 0.3


def test_initial_X_is_exact_and_iid_option() -> None:
    X = initial_X(4, 16, V0=V0_3)
    assert torch.allclose(X @ X.mT / 16, V0_3.expand(4, 3, 3), atol=1e-14)
    Xi = initial_X(4, 16, V0=V0_3, init_std=10.0, generator=torch.Generator().manual_seed(0))
    assert Xi.shape == (4, 3, 16) and float(Xi.std()) > 5
    with pytest.raises(DeeplimitError, match="n ≥ m"):
        initial_X(2, 2, V0=V0_3)


def test_sampler_stopping_rules() -> None:
    # iid N(0, 100) start (eigenvalues ≈ 100) at γ = 1: many paths leave [1e-4, 1e4]; stopped paths are frozen
    V0 = torch.eye(3, dtype=torch.float64)
    s = sample_network(
        "attention",
        200,
        200,
        V0,
        init_std=10.0,
        gamma=1.0,
        tau0=2**-6,
        paths=64,
        event=Band(1e-4, 1e4),
        seed=0,
        saveat=SaveAt(every=50),
    )
    assert s.exit_fraction > 0
    w = torch.linalg.eigvalsh(s.terminal)
    assert bool((w[:, -1] <= 1e4).all()) and bool((w[:, 0] >= 1e-4).all())
    assert bool((s.t_stop[s.stopped] < 1.0).all()) and bool((s.t_stop[~s.stopped] == 1.0).all())
    assert s.V.shape == (5, 64, 3, 3)


def test_sampler_bad_input() -> None:
    with pytest.raises(DeeplimitError, match="unknown network kind"):
        sample_network("transformer", 8, 2, V0_3)
    with pytest.raises(DeeplimitError, match="variant"):
        sample_network("attention", 8, 2, V0_3, variant="nope")


def _explicit_as_first_written(net: Network, start: dict, paths: int, seed: int, chunk: int) -> torch.Tensor:
    """Terminal ``V`` of the explicit sampler as it was first written (no stopping): per chunk, the module's weights
    drawn at construction, the NumPy seed drawn, then the weights redrawn before every layer."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, paths, chunk):
        b = min(chunk, paths - s)
        X = initial_X(b, net.n, **start)
        mod = net.module(b, X.dtype, gen)
        torch.randint(0, 2**62, (1,), generator=gen)
        with torch.no_grad():
            for _ in range(net.d):
                mod.resample(gen)
                X = mod(X)
        V = X @ X.mT / net.n
        out.append(0.5 * (V + V.mT))
    return torch.cat(out)


@pytest.mark.parametrize("kind", ["attention", "resnet", "block", "mlp"])
def test_explicit_sampler_draws_the_stream_it_always_drew(kind: str) -> None:
    # the explicit sampler skips its modules' first draw (redrawn before use) by advancing the generator instead;
    # its samples, which the report quotes, must stay bit-identical. n·n_k·chunk is not a multiple of 16 here, so
    # the Box-Muller fill's redrawn last block is covered, and two chunks build two modules.
    X0 = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = {"X0": X0} if kind == "mlp" else {"V0": V0_3}
    net = Network(kind, 8, 3, n_k=3, gamma=0.6, tau0=0.7)
    new = sample_network(kind, 8, 3, n_k=3, gamma=0.6, tau0=0.7, paths=5, method="explicit", seed=11, chunk=3,
                         **start).terminal
    assert torch.equal(new, _explicit_as_first_written(net, start, 5, 11, 3))


def test_skip_normal_advances_the_generator_as_normal_does() -> None:
    for k in (1, 15, 16, 17, 40, 100):
        a, b = torch.Generator().manual_seed(k), torch.Generator().manual_seed(k)
        torch.empty(k, dtype=torch.float64).normal_(generator=a)
        skip_normal(torch.empty(k, dtype=torch.float64), b)
        assert torch.equal(a.get_state(), b.get_state()), k


# ---- theory blocks (§2) ------------------------------------------------------------------------------------


def test_attention_rows_sum_to_one_and_zero_queries_identity() -> None:
    g = torch.Generator().manual_seed(0)
    layer = ShapedAttentionLayer(16, gamma=0.5, generator=g)
    X = torch.randn(5, 16, generator=g, dtype=torch.float64)
    A = layer.attention(X)
    assert torch.allclose(A.sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-14)
    with torch.no_grad():
        layer.W_Q.zero_()
    assert torch.allclose(layer.attention(X), torch.eye(5, dtype=torch.float64), atol=1e-15)
    # with A = I the layer is the linear residual map λX + γ X W^V/√n
    ref = math.sqrt(0.75) * X + 0.5 * X @ layer.W_V / 4
    assert torch.allclose(layer(X), ref, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shaped_relu_is_the_select_bit_for_bit(dtype: torch.dtype) -> None:
    # the sampler's σ_s is max(s+ x, s− x) where that equals the select s+ x if x > 0 else s− x exactly; its
    # samples are quoted by the report, so every bit must match: signed zeros, infinities, subnormals, NaN
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, generator=g, dtype=torch.float64) * torch.exp(30 * torch.randn(4096, generator=g,
                                                                                         dtype=torch.float64))
    edge = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1e-310, -1.7e308, 1.7e308]
    x = torch.cat([x, torch.tensor(edge, dtype=torch.float64)]).to(dtype)
    bits = torch.int64 if dtype == torch.float64 else torch.int32
    for n, c_plus, c_minus in ((300, 0.0, -1.0), (4, 0.5, -1.0), (1, 0.0, -1.0), (16, 1.0, 1.0), (9, 0.0, -3.0)):
        sp, sm, _ = relu_slopes(n, c_plus, c_minus)
        ref, got = torch.where(x > 0, x * sp, x * sm), shaped_relu(x, sp, sm)
        nan = ref.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got[~nan].view(bits), ref[~nan].view(bits)), (n, c_plus, c_minus)
    xg = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    shaped_relu(xg, 1.0, 0.5).sum().backward()  # under autograd the gradient at 0 is still s−
    assert torch.equal(xg.grad, torch.full((3,), 0.5, dtype=torch.float64))


def test_temperature_and_variants() -> None:
    Y = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    U = torch.full((4, 4), 0.25, dtype=torch.float64)
    assert torch.allclose(attention_matrix(Y, 1.0, "center") + U, torch.softmax(Y, -1))
    assert torch.allclose(
        attention_matrix(Y, 1.0, "identity"), torch.eye(4, dtype=torch.float64) + torch.softmax(Y, -1)
    )
    layer = ShapedAttentionLayer(64, 8, gamma=0.5, tau0=2.0)
    assert layer.tau == pytest.approx(2.0 * math.sqrt(64 * 8))
    assert ShapedAttentionLayer(64, 8, variant="softmax").tau == pytest.approx(math.sqrt(8))


def test_theory_modules_batched_weights_and_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, 16, generator=g, dtype=torch.float64)
    for mod in (
        ShapedAttentionLayer(16, batch=6, generator=g),
        ShapedReLUResidualMLP(16, batch=6, generator=g),
        ShapedBlock(16, batch=6, generator=g),
        ShapedReLUMLP(16, batch=6, generator=g),
    ):
        out = mod(X)
        assert out.shape == X.shape
    blk = ShapedBlock(16, batch=6, generator=g)
    # path 0 and path 1 use different weights
    assert not torch.allclose(blk.attn.W_V[0], blk.attn.W_V[1])
    with pytest.raises(DeeplimitError):
        ShapedAttentionLayer(16, gamma=1.5)


# ---- §9 check 9 (qualitative regressions of §6), via the exact-in-law sampler --------------------------


def test_ablation_rates_and_rank_collapse() -> None:
    import numpy as np

    from deeplimit.sde.coefficients import correlation
    from deeplimit.sde.scenarios import equicorrelated

    g = 1 / math.sqrt(2)
    lam2 = 1 - g * g
    kw = dict(n=300, d=30, V0=equicorrelated(3, 0.2), gamma=g, paths=512, saveat=SaveAt(every=1), seed=4)
    layers = np.arange(31)
    sel = (layers >= 10) & (layers <= 30)

    def slope(variant: str) -> float:
        V = sample_network("attention", variant=variant, **kw).V
        med = V[:, :, 0, 1].median(dim=1).values.numpy()
        return float(np.polyfit(layers[sel], np.log(med[sel]), 1)[0])

    assert slope("center") == pytest.approx(math.log(lam2), rel=0.05)
    assert slope("identity") == pytest.approx(math.log(lam2 + 4 * g * g), rel=0.05)
    soft = sample_network("attention", variant="softmax", **kw).V
    shaped = sample_network("attention", **kw).V
    assert float(correlation(soft[30])[:, 0, 1].abs().mean()) >= 0.99
    assert float(correlation(shaped[30])[:, 0, 1].abs().mean()) <= 0.5
