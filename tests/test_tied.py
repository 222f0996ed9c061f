"""Tied input/output embeddings: one tensor, two roles (depth-mup spec §2.2, mup's MuSharedReadout)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from nanogpt import GPT, GPTConfig, build, tokens


def test_tied_nanogpt_declared_by_roles_alone_is_one_tensor_with_two_roles():
    """Was: 'in the plan but not the model: lm_head.weight' (named_parameters yields a tied tensor once)."""
    model = GPT(GPTConfig(n_embd=128))
    plan = dl.parametrize(model, "mup", width=128, base_width=32, seed=0,
                          roles={"lm_head.weight": "readout", "transformer.h.*.weight": "hidden"})
    assert "lm_head.weight" not in plan.params
    wte = plan["transformer.wte.weight"]
    assert wte.role == "input" and wte.aliases == ("lm_head.weight",) and wte.role_label == "input (tied readout)"
    assert plan.multipliers["lm_head"] == {"dl_output_mult": pytest.approx(1 / 4)}
    assert "tied: lm_head.weight is transformer.wte.weight" in plan.summary()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_tied_tensor_gets_input_init_and_lr_and_the_readout_factor_in_the_forward(optimizer):
    model = build(n_embd=256, n_layer=2)
    plan = dl.parametrize(model, "mup", base_width=32, base_depth=2, optimizer=optimizer, sigma_emb=0.5,
                          sigma_out=3.0, output_mult=2.0, seed=0)
    w = model.transformer.wte.weight
    assert w is model.lm_head.weight
    # input-role init: σ_emb, width-independent (the readout's σ_out/√n₀ = 3/√32 would be ≈ 0.53)
    assert w.std().item() == pytest.approx(0.5, rel=0.02)
    tied = plan["transformer.wte.weight"]
    m_N = 8
    assert tied.lr_scale == pytest.approx(1.0 if optimizer == "adam" else m_N)  # input row: η (Adam), η·m_N (SGD)
    if optimizer == "adam":
        assert tied.eps_scale == pytest.approx(1 / m_N)
    # the readout's μP factor output_mult·m_N^{-1} acts in lm_head's forward
    x = tokens(model.config)
    h = model.transformer.ln_f(_trunk(model, x))
    assert torch.allclose(model(x), F.linear(h * (2.0 / m_N), w), atol=1e-5)
    # one group entry for the one tensor; its gradient is the sum of both uses (as two untied copies)
    opt = dl.make_optimizer(model, plan, 1e-3)
    assert sum(p is w for g in opt.param_groups for p in g["params"]) == 1
    untied = copy.deepcopy(model)
    untied.lm_head.weight = nn.Parameter(untied.transformer.wte.weight.detach().clone())
    for net in (model, untied):
        F.cross_entropy(net(x).flatten(0, 1), x.flatten()).backward()
    both = untied.transformer.wte.weight.grad + untied.lm_head.weight.grad
    assert torch.allclose(w.grad, both, atol=1e-7) and untied.lm_head.weight.grad.abs().sum() > 0


def _trunk(model, idx):
    pos = torch.arange(idx.shape[1])
    x = model.transformer.wte(idx) + model.transformer.wpe(pos)
    for block in model.transformer.h:
        x = block(x)
    return x


class TiedNet(nn.Module):
    """deeplimit's own layers: an Embedding and a TiedReadout sharing its weight."""

    def __init__(self, width, vocab=40, depth=2):
        super().__init__()
        self.width, self.depth = width, depth
        self.emb = dl.Embedding(vocab, width)
        self.blocks = nn.ModuleList(dl.Residual(nn.Sequential(nn.Linear(width, width), nn.Tanh()), block_depth=1)
                                    for _ in range(depth))
        self.head = dl.TiedReadout(self.emb)

    def forward(self, idx):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_deeplimit_tied_readout_applies_output_mult_over_m_N():
    model = TiedNet(64)
    plan = dl.parametrize(model, "depth_mup", base_width=16, base_depth=2, output_mult=3.0)
    assert plan["emb.weight"].aliases == ("head.weight",) and model.head.output_mult == pytest.approx(3 / 4)
    assert plan.multipliers["head"] == {"output_mult": pytest.approx(3 / 4)}  # its own forward, no hook
    assert not model.head._forward_pre_hooks
    idx = torch.randint(0, 40, (3, 5))
    h = model.blocks[1](model.blocks[0](model.emb(idx)))
    assert torch.allclose(model(idx), F.linear(h * 0.75, model.emb.weight), atol=1e-6)


def test_tie_embeddings_option_of_the_builtin_transformer():
    x = torch.randint(0, 256, (2, 16))
    tied = dl.TransformerLM(width=64, depth=2, n_heads=4, tie_embeddings=True)
    assert tied.readout.weight is tied.tok.weight
    sp = dl.TransformerLM(width=64, depth=2, n_heads=4, tie_embeddings=True)
    dl.parametrize(sp, "sp", base_width=64, base_depth=2, seed=1)
    dl.parametrize(tied, "completep", base_width=64, base_depth=2, seed=1)
    assert torch.equal(tied(x), sp(x))  # base shape: μP is SP bit for bit, tied or not
    wide = dl.TransformerLM(width=128, depth=2, n_heads=4, tie_embeddings=True)
    plan = dl.parametrize(wide, "completep", base_width=64, base_depth=2, optimizer="adamw")
    assert plan["tok.weight"].role == "input" and plan["tok.weight"].aliases == ("readout.weight",)
    assert wide.readout.output_mult == pytest.approx(0.5)
    opt = dl.make_optimizer(wide, plan, 3e-3)
    y = x.roll(-1, 1)
    first = F.cross_entropy(wide(x).flatten(0, 1), y.flatten())
    for _ in range(5):
        loss = F.cross_entropy(wide(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first.item()


def test_a_plan_of_the_untied_model_does_not_fit_the_tied_one():
    untied = dl.TransformerLM(width=64, depth=2, n_heads=4)
    tied = dl.TransformerLM(width=64, depth=2, n_heads=4, tie_embeddings=True)
    plan = dl.make_plan(untied, "completep", base_width=64, base_depth=2)
    with pytest.raises(dl.DeeplimitError, match="tied in the model but separate in the plan: readout.weight = "
                                                "tok.weight"):
        plan.apply(tied)


def test_a_tensor_tied_across_incompatible_roles_is_refused():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), dl.Readout(8, 8))
    net[2].weight = net[0].weight
    with pytest.raises(dl.DeeplimitError, match="conflicting roles \\['hidden', 'readout'\\]"):
        dl.make_plan(net, "mup", roles={"0.weight": "hidden"}, width=8, base_width=8)
