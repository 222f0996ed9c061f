"""Hugging Face models: the Structure found by one probe forward, checked against what the forward really does.

These tests need transformers but not the scaling core's consumer side: they check that the branches found are
exactly what each block adds to its residual stream (zero them and the block is the identity), that the inputs
are where the stream starts, and that the logit-scale attribute named is the one the attention forward reads.
"""

import sys

import pytest
import torch

from deeplimit.errors import DeeplimitError

transformers = pytest.importorskip("transformers")
from deeplimit.scaling import hf  # noqa: E402

# family → (branch suffixes inside block 0, inputs, readout, kv heads, scale attribute, tied)
EXPECTED = {
    "llama": (("self_attn.o_proj", "mlp.down_proj"), ("model.embed_tokens",), "lm_head", 2, "scaling", False),
    "mistral": (("self_attn.o_proj", "mlp.down_proj"), ("model.embed_tokens",), "lm_head", 2, "scaling", False),
    "qwen3": (("self_attn.o_proj", "mlp.down_proj"), ("model.embed_tokens",), "lm_head", 2, "scaling", False),
    "phi3": (("self_attn.o_proj", "mlp.down_proj"), ("model.embed_tokens",), "lm_head", 2, "scaling", False),
    "gpt2": (("attn.c_proj", "mlp.c_proj"), ("transformer.wte", "transformer.wpe"), "lm_head", 4, "scaling", True),
    "gpt_neox": (("attention.dense", "mlp.dense_4h_to_h"), ("gpt_neox.embed_in",), "lm_head", 4, "scaling", False),
    "opt": (("self_attn.out_proj", "fc2"), ("model.decoder.embed_tokens", "model.decoder.embed_positions"),
            "lm_head", 4, "scaling", True),
    # Falcon without ALiBi calls SDPA with its default 1/sqrt(d) scale: inv_norm_factor is not read.
    "falcon": (("self_attention.dense", "mlp.dense_4h_to_h"), ("transformer.word_embeddings",), "lm_head", 1, None,
               True),
    # OLMo-2 normalises each branch output before the add: the norm is the branch output.
    "olmo2": (("post_attention_layernorm", "post_feedforward_layernorm"), ("model.embed_tokens",), "lm_head", 2,
              "scaling", False),
    # BERT is post-LN: the add sits inside BertSelfOutput / BertOutput, right after output.dense.
    "bert": (("attention.output.dense", "output.dense"), ("bert.embeddings",), "cls.predictions.decoder", 4,
             "scaling", True),
    "vit": (("attention.o_proj", "mlp.fc2"), ("vit.embeddings",), "classifier", 4, "scaling", False),
}


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    models = {f: hf.build(f, 64, 2) for f in EXPECTED}
    return {f: (m, hf.structure_of(m)) for f, m in models.items()}


def _inputs(model):
    return hf._dummy_inputs(model)


def _block_io(model, block):
    seen = {}
    h1 = block.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("in", (a[0] if a else k["hidden_states"])
                                                                         .clone()), with_kwargs=True)
    h2 = block.register_forward_hook(lambda m, i, o: seen.__setitem__("out", hf._first_tensor(o).clone()))
    try:
        with torch.no_grad():
            out = model(**_inputs(model))
    finally:
        h1.remove()
        h2.remove()
    return seen["in"], seen["out"], out


def _scale_output(c):
    def hook(module, args, out):
        if isinstance(out, tuple):
            return (out[0] * c, *out[1:])
        return out * c
    return hook


@pytest.mark.parametrize("family", list(EXPECTED))
def test_structure_is_found_from_config_and_one_probe(built, family):
    model, s = built[family]
    suffixes, inputs, readout, kv, scale_attr, tied = EXPECTED[family]
    block0 = next(iter(s.blocks))
    assert s.width == 64 and s.depth == 2 and list(s.blocks.values()) == [2, 2]
    assert sorted(b for b, blk in s.branches.items() if blk == block0) == sorted(f"{block0}.{x}" for x in suffixes)
    assert len(s.branches) == 4 and s.inputs == inputs and s.readouts == (readout,)
    assert s.source == f"hf:{family}" and s.family == "transformer"
    assert len(s.attention) == 2
    spec = next(iter(s.attention.values()))
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.scale_attr) == (4, kv, 16, scale_attr)
    head = dict(model.named_modules())[readout]
    emb = model.get_input_embeddings()
    assert (head.weight is getattr(emb, "weight", None)) == tied


@pytest.mark.parametrize("family", [f for f in EXPECTED if f != "bert"])
def test_zeroing_the_branches_makes_every_block_the_identity(built, family):
    """The branches are exactly what each block adds to its stream: x + 0·f(x) = x."""
    model, s = built[family]
    modules = dict(model.named_modules())
    block = modules[next(iter(s.blocks))]
    x_in, x_out, _ = _block_io(model, block)
    assert not torch.allclose(x_in, x_out)
    handles = [modules[b].register_forward_hook(_scale_output(0.0)) for b in s.branches]
    try:
        x_in0, x_out0, _ = _block_io(model, block)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(x_out0, x_in0, rtol=0, atol=1e-6)


def test_bert_branches_feed_the_post_ln_adds(built):
    """Post-LN: zeroing the branches leaves LN(LN(x)), the two norms applied to the block input."""
    model, s = built["bert"]
    modules = dict(model.named_modules())
    name = next(iter(s.blocks))
    handles = [modules[b].register_forward_hook(_scale_output(0.0)) for b in s.branches]
    try:
        x_in, x_out, _ = _block_io(model, modules[name])
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        expect = modules[f"{name}.output.LayerNorm"](modules[f"{name}.attention.output.LayerNorm"](x_in))
    torch.testing.assert_close(x_out, expect)


@pytest.mark.parametrize("family", list(EXPECTED))
def test_inputs_are_where_the_residual_stream_starts(built, family):
    model, s = built[family]
    modules = dict(model.named_modules())
    block = modules[next(iter(s.blocks))]
    x_in, _, _ = _block_io(model, block)
    handles = [modules[n].register_forward_hook(_scale_output(3.0)) for n in s.inputs]
    try:
        x_in3, _, _ = _block_io(model, block)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(x_in3, 3.0 * x_in)


@pytest.mark.parametrize("family", list(EXPECTED))
def test_the_scale_attribute_is_the_one_attention_reads(built, family):
    """Set the named attribute to 0 (uniform attention) in every attention module: the logits change; Falcon's
    inv_norm_factor changes nothing, which is why it is not named."""
    model, s = built[family]
    modules = dict(model.named_modules())
    with torch.no_grad():
        before = hf._first_tensor(model(**_inputs(model)))
    attr = next(iter(s.attention.values())).scale_attr or "inv_norm_factor"
    saved = {n: getattr(modules[n], attr) for n in s.attention}
    try:
        for n in s.attention:
            setattr(modules[n], attr, 0.0)
        with torch.no_grad():
            after = hf._first_tensor(model(**_inputs(model)))
    finally:
        for n, v in saved.items():
            setattr(modules[n], attr, v)
    changed = not torch.allclose(before, after, rtol=0, atol=1e-7)
    assert changed == (EXPECTED[family][4] is not None)


def test_probe_leaves_the_model_as_it_was(built):
    model, _ = built["llama"]
    model.train()
    model.model.layers[0].eval()  # a user's mixed train/eval state is restored module by module
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hf.structure_of(model)
    assert model.training and not model.model.layers[0].training and model.model.layers[1].training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not model._forward_hooks and not model.model.layers[0]._forward_pre_hooks


def test_gpt2_conv1d_weights_are_declared_transposed(built):
    _, s = built["gpt2"]
    assert "transformer.h.0.attn.c_attn" in s.transposed and "transformer.h.1.mlp.c_proj" in s.transposed
    assert not any("ln_" in n or "wte" in n for n in s.transposed)


def test_vit_and_bert_declare_the_roles_types_cannot_tell(built):
    _, vit = built["vit"]
    _, bert = built["bert"]
    assert vit.roles == {"vit.embeddings.patch_embeddings.projection.weight": "input"}
    assert bert.roles == {"cls.predictions.transform.dense.weight": "hidden"}


def test_heads_growth_and_gqa_come_from_the_config():
    m = hf.build("llama", 96, 1, head_dim=16, kv_heads=2)
    spec = next(iter(hf.structure_of(m, head_growth="heads").attention.values()))
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim) == (6, 2, 16)
    assert hf.structure_of(m, head_growth="heads").head_growth == "heads"


def test_unsupported_families_and_models_get_a_one_line_fix():
    bart = hf.build("bart", 32, 1)
    with pytest.raises(DeeplimitError, match=r"family 'bart' .*encoder-decoder.*declare_structure"):
        hf.structure_of(bart)
    with pytest.raises(DeeplimitError, match="needs a transformers PreTrainedModel, got Linear"):
        hf.structure_of(torch.nn.Linear(2, 2))
    with pytest.raises(DeeplimitError, match="unknown Hugging Face model type 'lama'"):
        hf.tiny_config("lama", 64, 2)
    with pytest.raises(DeeplimitError, match="not a multiple of 3 heads"):
        hf.tiny_config("llama", 64, 2, heads=3)
    with pytest.raises(DeeplimitError, match="meta tensors"):
        with torch.device("meta"):
            meta = hf.build("llama", 32, 1)
        hf.structure_of(meta)


def test_is_hf_model_sees_through_wrappers_and_rejects_others(built):
    model, _ = built["llama"]
    assert hf.is_hf_model(model) and not hf.is_hf_model(torch.nn.Linear(2, 2))
    # the wrapper is the same OptimizedModule for any backend; it is never called here, and "eager" does not
    # import the inductor (the default backend's import alone is ~1 s of CPU)
    assert hf.is_hf_model(torch.compile(model, backend="eager")) and hf.input_kind(model) == "tokens"
    assert hf.input_kind(built["vit"][0]) == "images"


@pytest.fixture
def fresh_deeplimit_without_transformers(monkeypatch):
    """deeplimit imported afresh with ``transformers`` unimportable (as in an environment without it); the modules
    loaded before are put back afterwards, and the fresh ones dropped."""
    ours = [k for k in sys.modules if k == "deeplimit" or k.startswith("deeplimit.")]
    saved = {k: sys.modules.pop(k) for k in ours}
    monkeypatch.setitem(sys.modules, "transformers", None)
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "deeplimit" or k.startswith("deeplimit.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_missing_transformers_names_the_extra(fresh_deeplimit_without_transformers):
    from deeplimit.scaling import hf as fresh  # imports without transformers

    assert fresh is not hf
    with pytest.raises(Exception) as e:
        fresh.tiny_config("llama", 64, 2)
    assert type(e.value).__name__ == "DeeplimitError" and "pip install deeplimit[hf]" in str(e.value), e.value
    assert fresh.is_hf_model(torch.nn.Linear(1, 1)) is False
