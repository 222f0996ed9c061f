"""Hugging Face defaults come from the model: at the base shape the plan draws every tensor as the model's own
init does, so the first loss is ≈ ln V (tied or not), and μP carries it to other widths; given σ's still win.
Also ``base=<model>`` (mup style) with tied and untied heads."""

import math
import warnings

import pytest
import torch

import deeplimit as dl

pytest.importorskip("transformers")
from deeplimit.scaling import hf  # noqa: E402
from deeplimit.scaling.hf_init import model_init_stds  # noqa: E402

VOCAB = 256
CASES = {"llama-tied": ("llama", {"tie_word_embeddings": True}),
         "llama-untied": ("llama", {"tie_word_embeddings": False}), "gpt2": ("gpt2", {}), "gemma": ("gemma", {})}


def _tokens():
    return torch.randint(0, VOCAB, (4, 32), generator=torch.Generator().manual_seed(0))


def _first_loss(model) -> float:
    x = _tokens()
    with torch.no_grad():
        return model(input_ids=x, labels=x).loss.item()


def _parametrize(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dl.parametrize(model, "mup", **{"base_width": 32, "base_depth": 2, **kw})


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_loss_is_ln_vocab_at_the_base_shape_and_at_4x_width(case):
    family, kw = CASES[case]
    for width in (32, 128):
        model = hf.build(family, width, 2, **kw)
        _parametrize(model)
        assert abs(_first_loss(model) - math.log(VOCAB)) < 0.5, (case, width)


def test_given_sigma_still_wins_and_the_table_says_where_each_sigma_came_from():
    model = hf.build("llama", 128, 2, tie_word_embeddings=True)
    plan = _parametrize(model, sigma_emb=1.0)
    emb = plan["model.embed_tokens.weight"]
    assert emb.init_std == 1.0 and emb.init_source == "sigma_emb=1 (given)"
    assert _first_loss(model) > 20  # the tied head's own-token logit ≈ σ_emb²·n₀ = 32: far from ln V
    q = plan["model.layers.0.self_attn.q_proj.weight"]
    assert q.init_source == "config.initializer_range = 0.02"
    assert q.init_std == pytest.approx(0.02 / 2)  # μP hidden: base std / sqrt(m_N), m_N = 4
    text = plan.table()
    assert "init std at the base shape from config.initializer_range = 0.02" in text
    assert "init std at the base shape from sigma_emb=1 (given): model.embed_tokens.weight" in text
    everything = _parametrize(hf.build("llama", 128, 2), sigma_from="hparams")
    assert everything["model.layers.0.self_attn.q_proj.weight"].init_std == pytest.approx(1 / math.sqrt(128))
    with pytest.raises(dl.DeeplimitError, match="sigma_from"):
        _parametrize(hf.build("llama", 32, 2), sigma_from="config")


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "vit"])
def test_base_shape_init_matches_the_models_own_draws(family):
    """At the base shape the plan's std of every normal tensor is the std HF itself draws it with (measured on
    the freshly built model), including GPT-2's residual projections at initializer_range/sqrt(2 n_layer)."""
    model = hf.build(family, 64, 2)
    measured = {n: p.detach().std().item() for n, p in model.named_parameters() if p.ndim >= 2 and p.numel() >= 256}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stds = model_init_stds(model)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # reading the init draws nothing
    plan = _parametrize(hf.build(family, 64, 2), base_width=64)
    for name, std in measured.items():
        pp = plan.params.get(name)
        if pp is None or pp.init != "normal":
            continue
        assert pp.init_std == pytest.approx(std, rel=0.15), name
        assert pp.init_std == pytest.approx(stds[name][0])
    if family == "gpt2":
        assert stds["transformer.h.0.attn.c_proj.weight"][0] == pytest.approx(0.02 / math.sqrt(4))
        assert model_init_stds(model, 64, 1)["transformer.h.0.mlp.c_proj.weight"][0] == pytest.approx(0.02 / 2 ** 0.5)


@pytest.mark.parametrize("tied", [True, False])
def test_base_model_works_with_tied_and_untied_heads_and_the_header_has_the_right_width(tied):
    base = hf.build("llama", 32, 2, tie_word_embeddings=tied)
    model = hf.build("llama", 128, 2, tie_word_embeddings=tied)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_base = dl.make_plan(model, "mup", base=base)
        by_width = dl.make_plan(model, "mup", base_width=32, base_depth=2)
    assert by_base.width_mult == 4 and "(m_N=4)" in by_base.summary()
    for name, pp in by_width.params.items():
        other = by_base.params[name]
        assert (other.role, other.aliases, other.fan_in_mult, other.fan_out_mult) == (
            pp.role, pp.aliases, pp.fan_in_mult, pp.fan_out_mult), name
        assert other.init_std == pytest.approx(pp.init_std) and other.lr_scale == pytest.approx(pp.lr_scale)
    assert by_base.multipliers.keys() == by_width.multipliers.keys()
    for module, attrs in by_width.multipliers.items():
        assert by_base.multipliers[module] == pytest.approx(attrs), module


def test_base_model_of_plain_torch_models_reads_the_width_off_the_shapes():
    """mup style: neither model declares a width; the header's m_N comes from the shapes (was: m_N = 1)."""
    from nanogpt import GPT, GPTConfig

    base, model = GPT(GPTConfig(n_embd=32, n_layer=2)), GPT(GPTConfig(n_embd=128, n_layer=2))
    roles = {"lm_head.weight": "readout", "transformer.h.*.weight": "hidden"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = dl.make_plan(model, "mup", base=base, roles=roles, depth=2, base_depth=2)
    assert (plan.width, plan.base_width) == (128, 32) and "(m_N=4)" in plan.summary()
    assert plan.multipliers["lm_head"]["dl_output_mult"] == pytest.approx(0.25)


def test_gemma_sqrt_width_embedding_normalizer_is_part_of_the_structure_and_mup_divides_it_out():
    """Gemma multiplies its embedding output by sqrt(hidden_size) in its own forward: under μP the input
    multiplier carries m_N^{-1/2}, so the input coordinate stays flat over width (it grew +0.49 per doubling)."""
    from deeplimit.diagnostics.coordinates import coord_data, run_coord_check

    assert hf.structure_of(hf.build("gemma", 64, 1)).input_scales == {"model.embed_tokens": 0.5}
    assert hf.structure_of(hf.build("llama", 64, 1)).input_scales == {}
    plan = _parametrize(hf.build("gemma", 128, 2))
    assert plan.multipliers["model.embed_tokens"]["dl_input_mult"] == pytest.approx(0.5)  # (32/128)^(1/2)
    x, y = coord_data("stdlib", kind="tokens", n=40, seq_len=64)
    slopes = {}
    for rule in ("mup", "sp"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slopes[rule] = run_coord_check(hf.factory("gemma"), rule, x, y, axis="width", sizes=[32, 64, 128],
                                           width=32, depth=2, seeds=1, steps=3, lr=2**-6, batch_size=8).verdict.slopes
    assert abs(slopes["mup"]["input"]) <= 0.15, slopes
    assert slopes["sp"]["input"] >= 0.3, slopes  # SP keeps the model's own sqrt(n): the check does see it
