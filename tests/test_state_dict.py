"""Multipliers ride in the state dict: a plain torch.save/load_state_dict round trip reproduces outputs exactly,
and every way of getting different outputs silently is an error instead (issue #10, item 5)."""

import copy

import pytest
import torch

import deeplimit as dl
from nanogpt import build, tokens

KW = dict(base_width=16, base_depth=2, optimizer="adam")


def mlp(width=64, depth=8):
    return dl.MLPResNet(d_in=12, d_out=5, width=width, depth=depth)


def _round_trip(tmp_path, state):
    torch.save(state, tmp_path / "sd.pt")
    return torch.load(tmp_path / "sd.pt", weights_only=True)


CASES = {
    "mlp-resnet": (lambda: mlp(), lambda: torch.randn(3, 12), dict(KW)),
    "tied-transformer": (lambda: dl.TransformerLM(width=64, depth=4, n_heads=4, tie_embeddings=True),
                         lambda: torch.randint(0, 256, (2, 16)), dict(base_width=32, base_depth=2)),
    "nanogpt-structure": (lambda: build(n_embd=64, n_layer=4), lambda: tokens(build().config),
                          dict(base_width=32, base_depth=2, output_mult=2.0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_state_dict_round_trip_reproduces_outputs(case, tmp_path):
    make, data, kw = CASES[case]
    model = make()
    dl.parametrize(model, "completep", seed=1, **kw)
    x = data()
    state = _round_trip(tmp_path, model.state_dict())
    assert any(".deeplimit." in k for k in state)
    fresh = make()
    dl.parametrize(fresh, "completep", seed=2, **kw)  # same rule, other init
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), model(x))


def test_keys_name_every_multiplier_and_hooked_module():
    model = build(n_embd=64, n_layer=4)
    plan = dl.parametrize(model, "completep", base_width=32, base_depth=2, output_mult=2.0)
    state = model.state_dict()
    assert state["lm_head.deeplimit.dl_output_mult"].item() == pytest.approx(1.0)  # 2 / m_N
    assert state["transformer.h.3.mlp.deeplimit.dl_branch_mult"].item() == pytest.approx(plan.branch_mult)
    assert state["transformer.h.0.attn.deeplimit.scale"].item() == pytest.approx(
        plan.attention["transformer.h.0.attn"]["scale"])
    assert state["transformer.h.0.attn.deeplimit.scale"].dtype == torch.float64


def test_loading_into_an_unparametrized_deeplimit_model_says_parametrize_first(tmp_path):
    model = mlp()
    dl.parametrize(model, "depth_mup", **KW)
    state = _round_trip(tmp_path, model.state_dict())
    with pytest.raises(dl.DeeplimitError, match=r"readout \(output_mult: saved 0.25, the model has 1\).*not "
                                                r"parametrized: call dl.parametrize"):
        mlp().load_state_dict(state)


def test_loading_into_an_unparametrized_foreign_model_fails_on_deeplimit_keys():
    model = build(n_embd=64, n_layer=4)
    dl.parametrize(model, "completep", base_width=32, base_depth=2)
    plain = build(n_embd=64, n_layer=4)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*deeplimit\.dl_branch_mult"):
        plain.load_state_dict(model.state_dict())


def test_depth_only_plan_into_unparametrized_model_is_refused_too():
    model = mlp(width=16)
    dl.parametrize(model, "depth_mup", **KW)  # m_N = 1: only the blocks carry multipliers
    with pytest.raises(RuntimeError, match=r"blocks\.0\.deeplimit\.branch_mult"):
        mlp(width=16).load_state_dict(model.state_dict())


def test_different_multipliers_are_an_error_naming_both():
    model = mlp()
    dl.parametrize(model, "depth_mup", **KW)  # m_L = 4: branch 0.5
    other = mlp()
    dl.parametrize(other, "depth_mup", base_width=16, base_depth=4)  # m_L = 2: branch 0.7071
    with pytest.raises(dl.DeeplimitError, match=r"blocks\.0 \(branch_mult: saved 0.5, the model has 0.707107\); "
                                                r"parametrize the model with the rule"):
        other.load_state_dict(model.state_dict())
    foreign = build(n_embd=64, n_layer=4)
    dl.parametrize(foreign, "completep", base_width=32, base_depth=2)
    target = build(n_embd=64, n_layer=4)
    dl.parametrize(target, "completep", base_width=32, base_depth=2, attn_scale="sqrt")
    with pytest.raises(dl.DeeplimitError, match=r"transformer\.h\.0\.attn \(scale: saved 0.125, the model has "
                                                r"0.176777\)"):
        target.load_state_dict(foreign.state_dict())


def test_plain_weights_load_into_a_parametrized_model():
    """A state dict without multipliers (a mup model, plain weights, deeplimit < 0.2) keeps the model's own."""
    model = mlp()
    dl.parametrize(model, "depth_mup", **KW)
    plain = {k: v for k, v in model.state_dict().items() if ".deeplimit." not in k}
    fresh = mlp()
    dl.parametrize(fresh, "depth_mup", seed=5, **KW)
    fresh.load_state_dict(plain)
    x = torch.randn(2, 12)
    assert torch.equal(fresh(x), model(x))


def test_deepcopy_and_compile_carry_the_multipliers_in_their_state_dicts():
    model = build(n_embd=64, n_layer=2)
    dl.parametrize(model, "completep", base_width=32, base_depth=2, output_mult=3.0)
    x = tokens(model.config)
    clone = copy.deepcopy(model)
    assert clone.state_dict().keys() == model.state_dict().keys()
    compiled = torch.compile(model, backend="eager")
    state = {k.removeprefix("_orig_mod."): v for k, v in compiled.state_dict().items()}
    assert state.keys() == model.state_dict().keys()
    fresh = build(n_embd=64, n_layer=2)
    dl.parametrize(fresh, "completep", base_width=32, base_depth=2, output_mult=3.0, seed=9)
    target = torch.compile(fresh, backend="eager")
    target.load_state_dict(compiled.state_dict())
    assert torch.equal(target(x), model(x))
    fresh_copy = copy.deepcopy(fresh)
    dl.parametrize(fresh_copy, "completep", base_width=32, base_depth=2, output_mult=1.0, seed=None)
    with pytest.raises(dl.DeeplimitError, match="dl_output_mult: saved 1.5, the model has 0.5"):
        fresh_copy.load_state_dict(clone.state_dict())


def test_load_checkpoint_of_an_older_checkpoint_without_multiplier_keys(tmp_path):
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", seed=1, **KW)
    path = dl.save_checkpoint(tmp_path / "ckpt.pt", model, plan)
    blob = torch.load(path, weights_only=True)
    blob["model"] = {k: v for k, v in blob["model"].items() if ".deeplimit." not in k}
    torch.save(blob, path)
    fresh = mlp()
    dl.load_checkpoint(path, fresh)
    x = torch.randn(2, 12)
    assert torch.equal(fresh(x), model(x))
