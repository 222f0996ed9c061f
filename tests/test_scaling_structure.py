"""Models described by a Structure (nanoGPT, a GQA Llama-like block): roles, hooks, attention scale, family."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from nanogpt import GPT, GPTConfig, build, structure, tokens

KW = dict(base_width=32, base_depth=2, optimizer="adamw")


def _hand_written(model, plan):
    """The same weights in nanoGPT with the plan's multipliers typed into its forward (nanoGPT-mup style)."""
    mults = {"input": plan.hparams.input_mult, "branch": plan.branch_mult,
             "output": plan.multipliers["lm_head"]["dl_output_mult"],
             "attn_scale": plan.attention["transformer.h.0.attn"]["scale"]}
    ref = GPT(model.config, mults=mults)
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if ".deeplimit." not in k})
    return ref


@pytest.mark.parametrize("rule", ["completep", "depth_mup", "mup", "sp"])
def test_hooked_nanogpt_equals_the_hand_written_multipliers(rule):
    model = build(n_embd=64, n_layer=4)
    plan = dl.parametrize(model, rule, input_mult=1.5, output_mult=2.0, block_mult=0.7, **KW)
    ref = _hand_written(model, plan)
    x = tokens(model.config)
    assert torch.equal(model(x), ref(x))
    m_N, m_L = 2, 2
    alpha = plan.rule.alpha
    assert plan.branch_mult == pytest.approx(0.7 * m_L ** -alpha)
    assert ref.mults["output"] == pytest.approx(2.0 / m_N if plan.rule.is_mup else 2.0)
    # μP: attn_mult·√d₀/d with d = 32, d₀ = 16; SP: 1/√d
    assert ref.mults["attn_scale"] == pytest.approx(math.sqrt(16) / 32 if plan.rule.is_mup else 1 / math.sqrt(32))
    # the hooks really act: undo them by hand and the output changes
    model.lm_head.dl_output_mult = 1.0
    assert not torch.allclose(model(x), ref(x)) or ref.mults["output"] == 1.0


def test_roles_of_the_nanogpt_structure():
    model = build(n_embd=64, n_layer=4)
    plan = dl.make_plan(model, "completep", **KW)
    assert plan["transformer.wte.weight"].role == "input"
    assert plan["transformer.wte.weight"].aliases == ("lm_head.weight",)
    assert plan["transformer.wpe.weight"].role == "input"
    c_attn = plan["transformer.h.3.attn.c_attn.weight"]
    assert c_attn.role == "hidden" and c_attn.in_block and c_attn.lr_scale == pytest.approx(1 / 2)
    assert plan["transformer.h.0.ln_1.weight"].role_label == "block-vector"
    assert plan["transformer.ln_f.weight"].role_label == "outer-vector"
    assert plan.family == "transformer" and plan.source == "nanogpt"


def test_base_shape_is_bit_identical_to_sp_including_the_attention_scale():
    """Spec §8.3 for a Structure model: at (n₀, L₀) μP with the 1/d law is the SP model bit for bit."""
    x = tokens(GPTConfig())
    sp = build(n_embd=32, n_layer=2)
    dl.parametrize(sp, "sp", base_width=32, base_depth=2, seed=3)
    mu = build(n_embd=32, n_layer=2)
    plan = dl.parametrize(mu, "completep", base_width=32, base_depth=2, seed=3)
    assert plan.attention["transformer.h.0.attn"]["scale"] == 1 / math.sqrt(16) == mu.transformer.h[0].attn.scale
    assert torch.equal(sp(x), mu(x))


def test_apply_is_idempotent_and_survives_deepcopy():
    model = build(n_embd=64, n_layer=4)
    plan = dl.parametrize(model, "completep", output_mult=2.0, **KW)
    x = tokens(model.config)
    y = model(x)
    n_hooks = len(model.lm_head._forward_pre_hooks) + len(model.transformer.h[0].attn._forward_hooks)
    plan.apply(model)
    dl.parametrize(model, "completep", output_mult=2.0, seed=None, **KW)
    assert torch.equal(model(x), y)  # never multiplied twice
    assert len(model.lm_head._forward_pre_hooks) + len(model.transformer.h[0].attn._forward_hooks) == n_hooks
    clone = copy.deepcopy(model)
    assert torch.equal(clone(x), y)
    clone.lm_head.dl_output_mult = 5.0  # the copy's hooks read the copy
    assert torch.equal(model(x), y) and not torch.equal(clone(x), y)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_hooked_model_under_torch_compile(backend):
    model = build(n_embd=64, n_layer=2)
    plan = dl.parametrize(model, "completep", output_mult=2.0, **KW)
    x = tokens(model.config)
    compiled = torch.compile(model, backend=backend)
    assert torch.allclose(compiled(x), model(x), atol=1e-6)
    opt = dl.make_optimizer(compiled, plan, 1e-2)
    y = x.roll(-1, dims=1)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(compiled(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_declare_structure_checks_names_and_shapes():
    model = GPT(GPTConfig())
    with pytest.raises(dl.DeeplimitError, match="names modules the model does not have: \\['lm_heads'\\]"):
        dl.declare_structure(model, dl.Structure(width=32, readouts=("lm_heads",)))
    with pytest.raises(dl.DeeplimitError, match="tuple of module names"):
        dl.Structure(width=32, readouts="lm_head")
    with pytest.raises(dl.DeeplimitError, match="branch 'h.0.attn' names block 'h.0', which is not in blocks"):
        dl.Structure(branches={"h.0.attn": "h.0"})
    with pytest.raises(dl.DeeplimitError, match="n_kv_heads=3 does not divide n_heads=4"):
        dl.AttentionSpec(4, 3, 8)


def test_a_block_without_branches_is_refused():
    cfg = GPTConfig()
    s = structure(cfg)
    model = dl.declare_structure(GPT(cfg), dl.Structure(width=32, depth=2, blocks=s.blocks, inputs=s.inputs,
                                                         readouts=s.readouts))
    with pytest.raises(dl.DeeplimitError, match="have no branch"):
        dl.make_plan(model, "completep", **KW)


def test_undeclared_nanogpt_lists_the_parameters_and_the_fix():
    with pytest.raises(dl.DeeplimitError, match=r"cannot tell the role of .*lm_head.weight.*declare_structure"):
        dl.make_plan(GPT(GPTConfig()), "mup", width=32, base_width=32)


def test_width_and_depth_come_from_the_structure_and_contradictions_are_named():
    model = build(n_embd=64, n_layer=4)
    plan = dl.make_plan(model, "completep", **KW)
    assert (plan.width, plan.depth, plan.width_mult, plan.depth_mult) == (64, 4, 2, 2)
    with pytest.raises(dl.DeeplimitError, match="width=128 contradicts the model's declared width 64"):
        dl.make_plan(model, "completep", width=128, **KW)


# --- family and the CompleteP warning (depth-mup spec §9) -----------------------------------------------------
def test_completep_on_a_declared_transformer_does_not_call_it_a_non_transformer(recwarn):
    dl.make_plan(build(n_embd=64, n_layer=4), "completep", **KW)
    assert not [w for w in recwarn if "CompleteP evidence" in str(w.message)]


def test_completep_warning_names_the_family_and_the_fix():
    net = nn.Sequential(dl.Input(8, 16), dl.Residual(nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)),
                                                     block_depth=2), dl.Readout(16, 2))
    with pytest.warns(dl.DeeplimitWarning, match="model of unknown family.*family='transformer'"):
        dl.make_plan(net, "completep", width=16, base_width=16, depth=4, base_depth=2)


# --- attention: 1/d vs 1/√d, heads vs head_dim, GQA -------------------------------------------------------------
class GQAttention(nn.Module):
    """Llama-shaped attention: H query heads, H_kv key/value heads of size d, settable ``scaling``."""

    def __init__(self, n, n_heads, n_kv_heads, head_dim):
        super().__init__()
        self.h, self.h_kv, self.d = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(n, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(n, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(n, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, n, bias=False)
        self.scaling = head_dim ** -0.5

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k, v = (p(x).view(B, T, self.h_kv, self.d).transpose(1, 2) for p in (self.k_proj, self.v_proj))
        rep = self.h // self.h_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.h * self.d))


class TinyLlama(nn.Module):
    def __init__(self, n, n_heads, n_kv_heads, depth=2, vocab=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, n)
        self.layers = nn.ModuleList(nn.ModuleDict(dict(norm=nn.RMSNorm(n), attn=GQAttention(
            n, n_heads, n_kv_heads, n // n_heads))) for _ in range(depth))
        self.head = nn.Linear(n, vocab, bias=False)

    def forward(self, idx):
        x = self.embed(idx)
        for layer in self.layers:
            x = x + layer["attn"](layer["norm"](x))
        return self.head(x)


def tiny_llama(n, n_heads, n_kv_heads, head_growth, attn_scale_attr="scaling"):
    torch.manual_seed(0)
    model = TinyLlama(n, n_heads, n_kv_heads)
    names = [f"layers.{i}" for i in range(2)]
    return dl.declare_structure(model, dl.Structure(
        width=n, depth=2, blocks={b: 2 for b in names}, branches={f"{b}.attn": b for b in names},
        inputs=("embed",), readouts=("head",), head_growth=head_growth,
        attention={f"{b}.attn": dl.AttentionSpec(n_heads, n_kv_heads, n // n_heads, attn_scale_attr)
                   for b in names}))


@pytest.mark.parametrize("head_growth,heads,base_heads", [("head_dim", (4, 2), (4, 2)), ("heads", (8, 4), (4, 2))])
def test_gqa_kv_projections_scale_with_width_under_both_head_growths(head_growth, heads, base_heads):
    """k/v have fan-out H_kv·d: it scales with width whether heads or head_dim grow, so fan_out_mult = m_N.
    Checked against the per-tensor multipliers measured from an actual base-width model (as mup's base shapes)."""
    model = tiny_llama(64, *heads, head_growth)
    base = tiny_llama(32, *base_heads, head_growth)
    by_role = dl.make_plan(model, "mup", base_width=32, base_depth=2, optimizer="adam")
    by_base = dl.make_plan(model, "mup", base=base, base_depth=2, optimizer="adam")
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        a, b = by_role[f"layers.1.attn.{name}.weight"], by_base[f"layers.1.attn.{name}.weight"]
        assert (a.fan_in_mult, a.fan_out_mult) == (b.fan_in_mult, b.fan_out_mult) == (2.0, 2.0), name
        assert a.lr_scale == b.lr_scale == pytest.approx(0.5), name
    info = by_role.attention["layers.0.attn"]
    assert info["n_kv_heads"] == heads[1] and info["base_n_heads"] == base_heads[0]
    # μP logit scale attn_mult·√d₀/d: head_dim grows → d = 16, d₀ = 8; heads grow → d = d₀ = 8 (= SP's 1/√8)
    d, d0 = (16, 8) if head_growth == "head_dim" else (8, 8)
    assert info["scale"] == pytest.approx(math.sqrt(d0) / d)
    text = by_role.summary()
    assert ("head_dim grows with width" if head_growth == "head_dim" else "heads grow with width") in text
    assert f"H_kv={heads[1]} (GQA)" in text


def test_attention_scale_switch_and_attn_mult():
    model = tiny_llama(64, 4, 2, "head_dim")
    mup = dl.parametrize(model, "mup", base_width=32, base_depth=2, attn_mult=2.0)
    assert model.layers[0]["attn"].scaling == pytest.approx(2.0 * math.sqrt(8) / 16)
    assert mup.rule.attention == "mup"
    sqrt = dl.parametrize(model, "mup", base_width=32, base_depth=2, attn_scale="sqrt")
    assert model.layers[0]["attn"].scaling == pytest.approx(1 / math.sqrt(16))  # the model's own, not re-derived
    assert sqrt.rule.to_dict()["attn_scale"] == "sqrt" and "attn_mult/sqrt(d)" in sqrt.summary()


def test_attention_without_a_scale_attribute_is_refused_when_the_scale_must_change():
    model = tiny_llama(64, 4, 2, "head_dim", attn_scale_attr=None)
    with pytest.raises(dl.DeeplimitError, match="no settable logit scale.*scale_attr"):
        dl.make_plan(model, "mup", base_width=32, base_depth=2)
    dl.make_plan(model, "mup", base_width=32, base_depth=2, attn_scale="sqrt")  # nothing to change: fine


def test_a_base_width_with_fractional_heads_is_named():
    model = tiny_llama(64, 8, 4, "heads")
    with pytest.raises(dl.DeeplimitError, match="base n_heads would be 2.5.*head_growth=.head_dim."):
        dl.make_plan(model, "mup", base_width=20, base_depth=2)


def test_builtin_transformer_states_its_config_driven_attention_scale():
    model = dl.TransformerLM(width=128, depth=4, n_heads=4)
    plan = dl.make_plan(model, "completep", base_width=64, base_depth=2)
    info = plan.attention["blocks.0.attn.f"]
    assert info["set_by"] == "model config" and info["scale"] == pytest.approx(1 / 32)  # attn_mult/d_head, d = 32
    assert "logit_scale='mup' from the model's config" in plan.summary()


class PatchEmbeddings(nn.Module):
    """ViT-shaped embeddings: a patch projection, a class token and a position table owned by the module."""

    def __init__(self, n, patches=4):
        super().__init__()
        self.projection = nn.Conv2d(3, n, kernel_size=2, stride=2)
        self.cls_token = nn.Parameter(torch.randn(1, 1, n))
        self.position_embeddings = nn.Parameter(torch.randn(1, patches + 1, n))

    def forward(self, img):
        x = self.projection(img).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(len(img), -1, -1), x], dim=1) + self.position_embeddings


class TinyViT(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.embeddings = PatchEmbeddings(n)
        self.layer = nn.ModuleList(nn.Sequential(nn.LayerNorm(n), nn.Linear(n, n)) for _ in range(2))
        self.classifier = nn.Linear(n, 3)

    def forward(self, img):
        x = self.embeddings(img)
        for block in self.layer:
            x = x + block(x)
        return self.classifier(x[:, 0])


def test_everything_inside_a_declared_input_module_is_input_and_multiplied_once():
    torch.manual_seed(0)
    model = dl.declare_structure(TinyViT(64), dl.Structure(
        width=64, depth=2, blocks={"layer.0": 1, "layer.1": 1}, branches={"layer.0": "layer.0", "layer.1": "layer.1"},
        inputs=("embeddings",), readouts=("classifier",), family="transformer"))
    plan = dl.parametrize(model, "mup", base_width=16, base_depth=2, input_mult=3.0, sigma_emb=0.5, seed=0)
    assert set(plan.multipliers) == {"embeddings", "layer.0", "layer.1", "classifier"}  # not the projection
    proj, pos = plan["embeddings.projection.weight"], plan["embeddings.position_embeddings"]
    assert proj.role == "input" and proj.fan_in == 12 and proj.init_std == pytest.approx(1 / math.sqrt(12))
    assert pos.role == "input" and (pos.fan_in, pos.fan_out) == (5, 64) and pos.init_std == 0.5  # a table
    assert plan["embeddings.cls_token"].role == "input" and plan["embeddings.projection.bias"].role == "vector"
    img = torch.randn(2, 3, 4, 4)
    e = model.embeddings
    raw = torch.cat([e.cls_token.expand(2, -1, -1), e.projection(img).flatten(2).transpose(1, 2)], 1)
    assert torch.allclose(e(img), 3.0 * (raw + e.position_embeddings))


def test_an_attention_scale_attribute_that_is_not_a_number_is_named():
    model = tiny_llama(64, 4, 2, "head_dim", attn_scale_attr="softmax_scale")
    with pytest.raises(dl.DeeplimitError, match="has no number attribute 'softmax_scale'"):
        dl.make_plan(model, "mup", base_width=32, base_depth=2)
