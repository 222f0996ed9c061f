"""Transformer LM: Pre-LN (CompleteP) and Shaped (no LayerNorm) are two configs of one class."""

import math

import pytest
import torch

import deeplimit as dl
from deeplimit.data import ByteCorpus
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM
from deeplimit.train import TrainConfig, train


def test_completep_plan_of_a_pre_ln_transformer_matches_completep_table_1():
    model = TransformerLM(width=128, depth=8, n_heads=4)
    plan = dl.make_plan(model, "completep", base_width=64, base_depth=2, optimizer="adamw")
    mN, mL = 2, 4
    assert plan["tok.weight"].role == "input" and plan["readout.weight"].role == "readout"
    assert plan["final_norm.weight"].role_label == "outer-vector" and plan["final_norm.weight"].lr_scale == 1
    w = plan["blocks.3.mlp.f.w_in.weight"]
    assert w.role == "hidden" and w.lr_scale == pytest.approx(1 / mN)  # η·m_N^{-1}·m_L^{α−1}, α = 1
    assert w.eps_scale == pytest.approx(1 / mN / mL) and w.wd_scale == pytest.approx(mN)
    ln = plan["blocks.3.attn.norm.weight"]
    assert ln.role_label == "block-vector" and ln.lr_scale == 1.0 and ln.wd_scale == 0.0
    dl.parametrize(model, "completep", base_width=64, base_depth=2, optimizer="adamw")
    assert model.blocks[5].attn.branch_mult == pytest.approx(1 / mL)
    assert model.readout.output_mult == pytest.approx(1 / mN)
    assert plan.block_depth == 2


def test_shaped_config_has_no_layernorm_and_shaped_parts():
    model = TransformerLM(TransformerConfig(width=64, depth=2, **SHAPED))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    attn = model.blocks[0].attn.f
    assert attn.attention == "shaped" and attn.scale == pytest.approx(1 / math.sqrt(64 * 16))
    lam, gam = model.blocks[0].attn.lam.item(), model.blocks[0].attn.gam.item()
    assert lam**2 + gam**2 == pytest.approx(1.0)


def test_zero_query_shaped_layer_is_the_linear_residual_map():
    """Spec §2.7: zero queries make A = I, so the attention branch is λx + γ·(x W_V W_O)."""
    torch.manual_seed(0)
    cfg = TransformerConfig(width=32, depth=1, n_heads=4, zero_query_init=True, bias=False, **SHAPED)
    model = TransformerLM(cfg).double()
    dl.parametrize(model, "mup", base_width=32, base_depth=1, seed=0)
    branch = model.blocks[0].attn
    assert torch.count_nonzero(branch.f.q.weight) == 0
    x = torch.randn(2, 10, 32, dtype=torch.float64)
    expected = branch.lam * x + branch.gam * branch.f.o(branch.f.v(x))
    assert torch.allclose(branch(x), expected, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(width=30, n_heads=4), "does not divide"),
    (dict(tau0=0.0), "tau0 must be positive"),
    (dict(residual_gamma=1.5), r"residual_gamma must lie in \[0, 1\]"),
])
def test_bad_transformer_config(kwargs, match):
    with pytest.raises(dl.DeeplimitError, match=match):
        TransformerConfig(**kwargs)


def test_sequence_longer_than_context_is_named():
    model = TransformerLM(width=32, depth=1, max_seq_len=8)
    with pytest.raises(dl.DeeplimitError, match="exceeds the context max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("model,rule", [("transformer", "completep"), ("shaped-transformer", "mup")])
def test_both_transformers_learn_bytes_below_the_unigram_entropy(model, rule):
    corpus = ByteCorpus.load("stdlib")
    res = train(TrainConfig(model=model, width=64, depth=2, base_width=64, base_depth=2, rule=rule, optimizer="adamw",
                            betas=(0.9, 0.95), lr=2**-7, warmup_frac=0.05, steps=160, batch_size=16, seq_len=64,
                            data="stdlib", min_window=20))
    assert res.status == "ok"
    assert res.eval_loss < corpus.unigram_entropy("train") - 0.5, (res.eval_loss, corpus.unigram_entropy())
