"""The benchmarks' one timing method, their smoke run, and the fused attention kernel they time.

``python -m benchmarks --all --quick`` runs every benchmark at tiny sizes, so that the asserts inside them (peers
compute the same outputs, the same LRs) execute in the suite; its records go to a temporary folder, never over the
committed ``benchmarks/results``.
"""

import hashlib
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from deeplimit.nn import attention
from deeplimit.nn.attention import shaped_attention, uniform_attention_apply

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not put the checkout on the path
    sys.path.insert(0, str(ROOT))
common = importlib.import_module("benchmarks.common")
RESULTS = ROOT / "benchmarks" / "results"


def test_paired_rounds_alternates_the_order_and_pairs_the_ratio():
    calls: list[str] = []
    clock = {"t": 0.0}

    def peer(name: str, cost: float):
        def fn():
            calls.append(name)
            clock["t"] += cost
        return fn

    times = common.paired_rounds({"a": peer("a", 1), "b": peer("b", 2), "c": peer("c", 3)}, repeats=4, number=1,
                                 warmup=0)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert set(times["a"]) >= {"cpu_s", "wall_s", "median_s", "wall_median_s", "repeats", "number"}
    assert len(times["a"]["cpu_s"]) == len(times["a"]["wall_s"]) == 4
    # paired: the median of per-round ratios, not the ratio of medians
    fake = {"x": {"cpu_s": [1.0, 10.0, 1.0], "wall_s": [1.0, 1.0, 1.0]},
            "y": {"cpu_s": [2.0, 20.0, 1.0], "wall_s": [2.0, 2.0, 2.0]}}
    assert common.paired_ratio(fake, "y", "x") == 2.0
    assert common.paired_ratio(fake, "y", "x", "wall") == 2.0
    with pytest.raises(ValueError, match="clock"):
        common.paired_ratio(fake, "y", "x", "gpu")


def test_a_record_names_the_cpu_it_ran_on():
    """Records from two CPUs are not comparable (a bfloat16 matmul is ~50x slower without AVX-512 BF16)."""
    cpu = common.cpu()
    assert cpu["model"] and cpu["capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "NO AVX"}
    assert cpu["bf16_matmul"] in {True, False, None}
    assert common.environment()["cpu"] == cpu


def test_assert_same_outputs_names_the_peer_that_differs():
    common.assert_same_outputs({"a": torch.ones(3), "b": torch.ones(3)})
    common.assert_same_outputs({"a": torch.ones(3), "b": torch.ones(3) + 1e-7}, atol=1e-6)
    with pytest.raises(AssertionError, match="peer 'c'"):
        common.assert_same_outputs({"a": torch.ones(3), "b": torch.ones(3), "c": torch.zeros(3)})
    with pytest.raises(AssertionError, match="shape"):
        common.assert_same_outputs({"a": torch.ones(3), "b": torch.ones(4)})


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.json"))}


def test_every_benchmark_runs_quick_and_writes_its_record_elsewhere(tmp_path):
    """``python -m benchmarks --all --quick --out DIR``: every benchmark runs (its asserts with it), each record
    names its commit, date, method and settings, and the committed records are untouched."""
    from benchmarks.__main__ import main
    from threadpoolctl import threadpool_limits

    before = _digest(RESULTS)
    # In this process: a fresh interpreter would import torch, transformers and the peers again (more CPU than the
    # quick runs themselves). The context undoes the BLAS thread limit that the command sets for its own process.
    with threadpool_limits(limits=None):
        main(["--all", "--quick", "--out", str(tmp_path)])
    names = {p.name[len("bench_"):-3] for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert {p.stem for p in tmp_path.glob("*.json")} == names
    for name in names:
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["benchmark"] == name and record["quick"] is True
        assert record["commit"] and record["date"].endswith("UTC") and record["method"] == common.METHOD
        assert record["settings"], name
    assert _digest(RESULTS) == before


# ---- the fused shaped-attention kernel timed by bench_attention -------------------------------------------------
def _composite(q, k, v, g1, g2, tau, causal):
    """The formulation before the kernel was hand-written: SDPA + γ1 V − γ2 U V, differentiated by autograd."""
    attn = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1 / tau)
    g1 = g1.view(1, -1, 1, 1) if isinstance(g1, torch.Tensor) and g1.dim() == 1 else g1
    g2 = g2.view(1, -1, 1, 1) if isinstance(g2, torch.Tensor) and g2.dim() == 1 else g2
    return attn + g1 * v - g2 * uniform_attention_apply(v, causal)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("gains", ["floats", "tensors"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dense_max_len", [attention.DENSE_MAX_LEN, 0])  # the dense and the scan path
def test_fused_kernel_equals_the_composite_forward_and_backward(dtype, tol, gains, causal, dense_max_len,
                                                                  monkeypatch):
    monkeypatch.setattr(attention, "DENSE_MAX_LEN", dense_max_len)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 8, generator=g, dtype=dtype) for _ in range(3))
    grad_out = torch.randn(2, 3, 37, 8, generator=g, dtype=dtype)
    results = []
    for fn in (shaped_attention, None):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        if gains == "floats":
            g1, g2 = 0.7, 1.3
            gain_leaves = []
        else:
            g1, g2 = (torch.tensor([0.7, 1.0, 1.2], dtype=dtype).requires_grad_() for _ in range(2))
            gain_leaves = [g1, g2]
        if fn is None:
            out = _composite(*leaves, g1, g2, 1.7, causal)
        else:
            out = fn(*leaves, gamma1=g1, gamma2=g2, tau=1.7, causal=causal)
        out.backward(grad_out)
        results.append([out.detach()] + [t.grad for t in leaves + gain_leaves])
    for fused, composite in zip(*results, strict=True):
        torch.testing.assert_close(fused, composite, rtol=tol, atol=tol)


def test_fused_kernel_cache_is_safe_across_inference_mode_and_lengths():
    """The cached 1/i columns are built outside inference mode: a first call under inference_mode must not break
    a later training call at the same length, and lengths do not share columns."""
    q, k, v = (torch.randn(1, 2, 19, 4) for _ in range(3))
    with torch.inference_mode():
        shaped_attention(q, k, v, tau=1.0, causal=True)
    leaf = v.clone().requires_grad_()
    shaped_attention(q, k, leaf, tau=1.0, causal=True, gamma2=0.5).sum().backward()
    assert torch.isfinite(leaf.grad).all()
    short = shaped_attention(q[..., :5, :], k[..., :5, :], v[..., :5, :], tau=1.0, causal=True)
    torch.testing.assert_close(short, _composite(q[..., :5, :], k[..., :5, :], v[..., :5, :], 1.0, 1.0, 1.0, True))
