"""Signal-propagation diagnostics of transformers (Noci et al. 2023, Figs. 2 and 6)."""

import warnings

import pytest
import torch

import deeplimit as dl
from deeplimit.data import ByteCorpus
from deeplimit.diagnostics.signal import SIGNAL_VARIANTS, grad_norms_at_init, layer_attention_entropy
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM
from deeplimit.train import TrainConfig, train


@pytest.fixture(scope="module")
def batch():
    return ByteCorpus.load("stdlib").get_batch("train", 8, 64, torch.Generator().manual_seed(0))


def _norms(kw, batch):
    model = TransformerLM(TransformerConfig(width=64, depth=12, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl.parametrize(model, "sp", base_width=64, base_depth=12, seed=0)
    df = grad_norms_at_init(model, *batch)
    return df.pivot(index="layer", columns="param", values="grad_norm")


def test_shaped_gradients_stay_flat_over_depth_while_pre_ln_query_gradients_decay(batch):
    shaped = _norms(SHAPED, batch)
    pre_ln = _norms(dict(norm="pre_ln", logit_scale="sqrt"), batch)
    first, last = slice(0, 3), slice(9, 12)
    ratio = lambda df, p: df[p].iloc[last].mean() / df[p].iloc[first].mean()
    assert 0.6 < ratio(shaped, "W^Q") < 1.6 and 0.6 < ratio(shaped, "W^V") < 1.6
    assert ratio(pre_ln, "W^Q") < 0.45


def test_attention_entropy_is_recorded_per_layer_during_training(batch):
    model = TransformerLM(width=32, depth=3)
    ent = layer_attention_entropy(model, batch[0])
    assert len(ent) == 3 and all(0 < e <= torch.log(torch.tensor(64.0)).item() for e in ent)
    res = train(TrainConfig(model="transformer", width=32, depth=2, steps=20, batch_size=8, seq_len=32,
                            data="stdlib", entropy_every=10, min_window=5))
    rows = [r for r in res.rows if r["metric"] == "attn_entropy"]
    assert {(r["step"], r["layer"]) for r in rows} == {(0, 0), (0, 1), (10, 0), (10, 1), (19, 0), (19, 1)}


def test_signal_cli_writes_tables_and_figures(tmp_path):
    from deeplimit.cli import main

    assert main(["signal", "--depth", "4", "--width", "32", "--seeds", "1", "--train-steps", "10", "--data",
                 "stdlib", "--out", str(tmp_path), "-q"]) == 0
    for name in ("grad_norms.csv", "grad_norms.png", "attention_entropy.csv", "attention_entropy.png", "signal.json",
                 "token_correlation.csv", "token_correlation.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_shaped_attention_prevents_the_rank_collapse_of_softmax(batch):
    """Fig. 1 left on the real model family: same λ/γ residual, no LayerNorm; only the attention differs."""
    from deeplimit.diagnostics.signal import token_correlation_vs_layer

    last = {}
    for variant in ("shaped", "softmax"):
        vals = []
        for seed in range(2):
            model = TransformerLM(TransformerConfig(width=64, depth=24, residual_gamma=2**-1.5,
                                                    **SIGNAL_VARIANTS[variant]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dl.parametrize(model, "mup", base_width=64, base_depth=24, seed=seed)
            vals.append(token_correlation_vs_layer(model, batch[0])["mean_abs_rho"].iloc[-1])
        last[variant] = sum(vals) / 2
    assert last["shaped"] < 0.5 and last["softmax"] > last["shaped"] + 0.25, last
