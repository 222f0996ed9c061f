"""Mixture-of-experts models with no declarations: Mixtral, Qwen2-MoE, Qwen3-MoE and OLMoE as transformers ships them.

Checked: the stacked expert tensors get per-expert fans (Mixtral's ``gate_up_proj`` (E, 2I, n) is drawn with std
σ/√n, not σ/√(2In) as a convolution reading gave), routers are fixed-output-width matrices (role ``router``: input
× m_N^{-1}, no width factor on their Adam LR), each layer is one residual block, the load-balancing loss is the
model's own, and an *independent* coordinate check (forward hooks on the decoder layers, not deeplimit's
coord_check) over width and depth: under Depth-μP every layer's change after 3 Adam steps is flat, under SP it
grows.
"""

import math
import warnings

import pytest
import torch

import deeplimit as dl
from deeplimit.errors import DeeplimitError

transformers = pytest.importorskip("transformers")
from deeplimit.scaling import get_structure, hf  # noqa: E402
from deeplimit.scaling.moe import declare_experts  # noqa: E402

transformers.logging.set_verbosity_error()
# family → config overrides that make the MoE tiny (4 experts, top-2, small expert MLPs)
FAMILIES = {
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                      shared_expert_intermediate_size=48),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2),
}


def _build(family, width, depth, **kw):
    torch.manual_seed(0)
    return hf.build(family, width, depth, **FAMILIES[family], **kw)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_experts_get_per_expert_fans_and_routers_a_fixed_output_width(family):
    model = _build(family, 64, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the HParams σ's (σ/√fan_in shows the per-expert fan-in); the model's own init is checked below
        plan = dl.parametrize(model, "depth_mup", base_width=16, base_depth=1, sigma_from="hparams")
        own = dl.make_plan(model, "depth_mup", base_width=16, base_depth=1)
    params = dict(model.named_parameters())
    experts = [n for n, p in params.items() if p.ndim == 3]
    assert len(experts) == 4  # gate_up_proj and down_proj of each of the 2 layers
    for name in experts:
        pp, p = plan[name], params[name]
        e, out_dim, in_dim = p.shape  # transformers' experts are (E, out, in): F.linear(x, w[e])
        assert (pp.role, pp.in_block, pp.fan_in, pp.fan_out) == ("hidden", True, in_dim, out_dim)
        assert pp.fan_in_mult == pp.fan_out_mult == 4.0
        assert pp.init_std == pytest.approx(1 / math.sqrt(in_dim))
        # the drawn weights have it: every expert's slice, not the stack as one convolution kernel
        assert p.detach().std().item() == pytest.approx(1 / math.sqrt(in_dim), rel=0.05)
        assert pp.lr_scale == pytest.approx(4.0 ** -1 * 2.0 ** -0.5)  # hidden: m_N^-1 · m_L^-1/2
        # default: HF's initializer_range at the base shape, hidden width law m_N^-1/2 (per-expert fan-in × 4)
        assert own[name].init_std == pytest.approx(model.config.initializer_range / 2)
    routers = [n for n in plan.params if plan[n].role == "router"]
    assert {n.rsplit(".", 2)[-2] for n in routers} == ({"gate", "shared_expert_gate"} if family == "qwen2_moe"
                                                       else {"gate"})
    for name in routers:
        pp = plan[name]
        assert pp.shape[1] == 64 and pp.shape[0] in (4, 1) and pp.in_block
        assert (pp.fan_in_mult, pp.fan_out_mult) == (4.0, 1.0)
        assert pp.init_std == pytest.approx(1 / math.sqrt(16))  # σ/√n₀: width-independent, as a readout's
        assert own[name].init_std == pytest.approx(model.config.initializer_range)  # μP: the base std, kept
        assert pp.lr_scale == pytest.approx(2.0 ** -0.5)  # Adam: no width factor, the block's depth factor
        assert plan.multipliers[name.rsplit(".", 1)[0]] == {"dl_output_mult": 0.25}  # input × m_N^-1
    blocks = {m for m, attrs in plan.multipliers.items() if "dl_branch_mult" in attrs}
    assert {b for b in blocks if b.endswith(".mlp")} == {"model.layers.0.mlp", "model.layers.1.mlp"}
    assert plan.depth == 2


def test_roles_agree_with_multipliers_measured_from_a_base_width_model():
    # mup's method (per-tensor shape ratios against an actual base-width model) gives the same plan
    model, base = _build("mixtral", 64, 2), _build("mixtral", 16, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = dl.make_plan(model, "depth_mup", base=base, base_depth=1)
        from_roles = dl.make_plan(model, "depth_mup", base_width=16, base_depth=1)
    for name, pp in from_roles.params.items():
        other = measured[name]
        assert (other.role, other.fan_in_mult, other.fan_out_mult) == (pp.role, pp.fan_in_mult, pp.fan_out_mult)
        assert other.init_std == pytest.approx(pp.init_std) and other.lr_scale == pytest.approx(pp.lr_scale)
    assert measured.multipliers == from_roles.multipliers


def test_the_router_hook_scales_only_the_router_input():
    model = _build("mixtral", 32, 1)
    plan = dl.parametrize(model, "mup", base_width=16, base_depth=1)
    moe = model.model.layers[0].mlp
    x = torch.randn(5, 32)
    logits, _, _ = moe.gate(x)
    assert torch.allclose(logits, torch.nn.functional.linear(x * 0.5, moe.gate.weight))
    assert plan.multipliers["model.layers.0.mlp.gate"] == {"dl_output_mult": 0.5}
    # SP: no multiplier at all, and the router's std is σ/√fan_in like any matrix
    sp = dl.parametrize(_build("mixtral", 32, 1), "sp", base_width=16, base_depth=1, sigma_from="hparams")
    assert "model.layers.0.mlp.gate" not in sp.multipliers or \
        sp.multipliers["model.layers.0.mlp.gate"] == {"dl_output_mult": 1.0}
    assert sp["model.layers.0.mlp.gate.weight"].init_std == pytest.approx(1 / math.sqrt(32))


def test_load_balancing_loss_is_the_models_own():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    model = _build("mixtral", 32, 2)
    coef = model.config.router_aux_loss_coef
    dl.parametrize(model, "depth_mup", base_width=16, base_depth=1)
    assert model.config.router_aux_loss_coef == coef
    x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=x, labels=x, output_router_logits=True)
    expected = load_balancing_loss_func(out.router_logits, 4, 2)
    assert torch.allclose(out.aux_loss, expected)
    plain = model(input_ids=x, labels=x)
    assert torch.allclose(out.loss, plain.loss + coef * expected)


def test_an_undeclared_3d_tensor_is_refused_and_declare_experts_fixes_it():
    model = _build("mixtral", 32, 1)
    experts = model.model.layers[0].mlp.experts
    get_structure(model)  # the probe forward reads the layout: found (and kept on the model) first
    del experts.is_transposed  # as if transformers had not recorded it
    with pytest.raises(DeeplimitError, match=r"model\.layers\.0\.mlp\.experts\.gate_up_proj.*3-D tensor of "
                                             r"MixtralExperts.*declare_experts"):
        dl.make_plan(model, "mup", base_width=16)
    declare_experts(experts, "out_in")
    plan = dl.make_plan(model, "mup", base_width=16)
    assert plan["model.layers.0.mlp.experts.down_proj"].fan_in == experts.down_proj.shape[2]
    declare_experts(experts, "in_out")  # the other layout reads the other dim as fan-in
    assert dl.make_plan(model, "mup", base_width=16)["model.layers.0.mlp.experts.down_proj"].fan_in == 32
    with pytest.raises(DeeplimitError, match="experts layout 'conv' is unknown"):
        declare_experts(experts, "conv")


# --- an independent coordinate check --------------------------------------------------------------------------
def _layer_changes(rule, width, depth, steps=3, lr=1e-2):
    """RMS of each decoder layer's output change after ``steps`` Adam steps on a fixed batch (own hooks)."""
    cfg = hf.tiny_config("mixtral", width, depth, heads=2, vocab_size=128, num_local_experts=4,
                         num_experts_per_tok=2, intermediate_size=2 * width, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = dl.parametrize(model, rule, base_width=16, base_depth=2, seed=0)
    opt = dl.make_optimizer(model, plan, lr)
    x = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(1))
    outs = {}

    def grab(k):
        return lambda _m, _i, o: outs.__setitem__(k, (o[0] if isinstance(o, tuple) else o).detach().double())

    hooks = [layer.register_forward_hook(grab(k)) for k, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(input_ids=x)
    start = dict(outs)
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
    with torch.no_grad():
        model(input_ids=x)
    for h in hooks:
        h.remove()
    return [(outs[k] - start[k]).square().mean().sqrt().item() for k in range(depth)]


def _slope(values):
    """log2 change per doubling, end to end over a ×4 range."""
    return math.log2(values[-1] / values[0]) / 2


def test_independent_coordinate_check_mixtral_over_width_and_depth():
    slopes = {}
    for rule in ("depth_mup", "sp"):
        by_width = [_layer_changes(rule, n, 2) for n in (16, 32, 64)]
        by_depth = [_layer_changes(rule, 16, L) for L in (2, 4, 8)]
        slopes[rule] = ([_slope([w[k] for w in by_width]) for k in range(2)], _slope([d[-1] for d in by_depth]))
    (mup_width, mup_depth), (sp_width, sp_depth) = slopes["depth_mup"], slopes["sp"]
    # measured: Depth-μP width -0.04 (last layer), depth -0.03; SP +0.56, +0.72
    assert all(abs(s) <= 0.25 for s in mup_width) and abs(mup_depth) <= 0.25, slopes
    assert max(sp_width) >= 0.4 and sp_depth >= 0.4, slopes
