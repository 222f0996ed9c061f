"""Checkpoints both ways for Hugging Face models: the plan rides in config.json, ``from_pretrained`` +
``dl.parametrize(same arguments)`` gives the saved model back exactly (weights kept, multipliers restored), and
plain ``state_dict`` / ``dl.save_checkpoint`` round trips reproduce the outputs."""

import warnings

import pytest
import torch

import deeplimit as dl
from deeplimit.errors import DeeplimitError, DeeplimitWarning

transformers = pytest.importorskip("transformers")
from deeplimit.scaling import hf  # noqa: E402
from deeplimit.scaling.apply import loaded_from_checkpoint  # noqa: E402

KW = dict(base_width=32, base_depth=1)


def _x():
    return torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(3))


def _logits(model):
    with torch.no_grad():
        return model(input_ids=_x()).logits


def _parametrize(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dl.parametrize(model, "completep", **{**KW, **kw})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tied Llama (width 64, 2 layers) parametrized from base 32 x 1, saved with save_pretrained."""
    path = tmp_path_factory.mktemp("hf") / "model"
    model = hf.build("llama", 64, 2, tie_word_embeddings=True)
    plan = _parametrize(model, seed=5)
    model.save_pretrained(path)
    return path, _logits(model), plan


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)


def test_from_pretrained_then_parametrize_gives_the_saved_model_back(saved):
    path, ref, plan = saved
    model, info = _load(path)
    assert not info["unexpected_keys"] and not info["missing_keys"]  # multipliers are in config.json, not weights
    assert model.config.deeplimit_plan["multipliers"] == plan.to_dict()["multipliers"]
    assert loaded_from_checkpoint(model)
    assert not torch.equal(_logits(model), ref)  # without the multipliers it is another function
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    _parametrize(model, seed=0)  # another seed: nothing is drawn anyway
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    assert torch.equal(_logits(model), ref)
    again, _ = _load(path)  # without the arguments: the saved plan itself
    dl.Plan.from_dict(again.config.deeplimit_plan).apply(again)
    assert torch.equal(_logits(again), ref)


def test_other_arguments_are_refused_and_redraw_is_explicit(saved):
    path, ref, _ = saved
    model, _ = _load(path)
    with pytest.raises(DeeplimitError, match="saved with other multipliers.*init='redraw'"):
        _parametrize(model, base_width=16)
    _parametrize(model, base_width=16, init="redraw", seed=1)
    assert not loaded_from_checkpoint(model)  # drawn by deeplimit now: a later parametrize draws again
    assert not torch.equal(_logits(model), ref)
    with pytest.raises(DeeplimitError, match="init must be"):
        _parametrize(model, init="reload")


def test_a_pretrained_checkpoint_without_a_plan_keeps_its_weights_with_a_warning(tmp_path):
    plain = hf.build("llama", 64, 2)
    plain.save_pretrained(tmp_path)
    model, _ = _load(tmp_path)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.warns(DeeplimitWarning, match="came from a checkpoint with no deeplimit plan"):
        dl.parametrize(model, "completep", **KW)
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    fresh = hf.build("llama", 64, 2)
    _parametrize(fresh, init="keep")
    _parametrize(fresh, seed=None)
    assert not loaded_from_checkpoint(fresh)


def test_plain_state_dict_and_save_checkpoint_round_trips_reproduce_outputs(tmp_path):
    model = hf.build("llama", 64, 2, tie_word_embeddings=True)
    plan = _parametrize(model, seed=2)
    ref = _logits(model)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    fresh = hf.build("llama", 64, 2, tie_word_embeddings=True)
    _parametrize(fresh, seed=3)
    fresh.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    assert torch.equal(_logits(fresh), ref)

    dl.save_checkpoint(tmp_path / "ck.pt", model, plan)
    other = hf.build("llama", 64, 2, tie_word_embeddings=True)
    loaded, _ = dl.load_checkpoint(tmp_path / "ck.pt", other)
    assert loaded.multipliers == plan.multipliers
    assert torch.equal(_logits(other), ref)
