"""Parameters the plan cannot classify with certainty are never re-drawn silently (issue 21.4).

Mamba and Mamba-2 (transformers, tiny configs) are refused with the names of their special parameters and the
declaration that fixes it; with that declaration (role ``keep``) ``A_log``, ``D`` and the dt biases keep their
family init bit for bit. Depthwise convolutions are classified with certainty (vector-like: fan-in kernel_size);
grouped ones, bare matrices in blocks and unknown 3-D tensors are refused.
"""

import math
import re

import pytest
import torch
from torch import nn

import deeplimit as dl
from deeplimit.errors import DeeplimitError
from deeplimit.scaling import Structure, declare_structure
from deeplimit.scaling.moe import declare_experts


class _Mixer(nn.Module):
    """A block branch with the kinds of parameters a plan must not guess."""

    def __init__(self, n: int, groups: int | None = None, bare: bool = False, stack: bool = False):
        super().__init__()
        self.inp = nn.Linear(n, 2 * n)
        self.conv = nn.Conv1d(2 * n, 2 * n, 3, padding=1, groups=groups or 2 * n)
        self.out = nn.Linear(2 * n, n)
        if bare:
            self.A_log = nn.Parameter(torch.log(torch.arange(1.0, 5.0)).repeat(2 * n, 1))
        if stack:
            self.w = nn.Parameter(torch.randn(3, n, n))

    def forward(self, x):
        h = self.conv(self.inp(x).transpose(1, 2)).transpose(1, 2)
        if hasattr(self, "A_log"):
            h = h * self.A_log.exp().mean(-1)
        if hasattr(self, "w"):
            h = h + torch.einsum("btn,enm->btm", x, self.w).repeat(1, 1, 2)
        return self.out(h)


class _Net(nn.Module):
    def __init__(self, n: int = 16, depth: int = 2, **mixer):
        super().__init__()
        self.emb = nn.Linear(4, n)
        self.blocks = nn.ModuleList(_Mixer(n, **mixer) for _ in range(depth))
        self.head = nn.Linear(n, 3)
        names = [f"blocks.{i}" for i in range(depth)]
        declare_structure(self, Structure(width=n, depth=depth, blocks={b: 2 for b in names},
                                          branches={f"{b}.out": b for b in names}, inputs=("emb",),
                                          readouts=("head",)))

    def forward(self, x):
        h = self.emb(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def test_depthwise_convolution_is_vector_like_and_keeps_its_init():
    net = _Net()
    conv = net.blocks[0].conv.weight.detach().clone()
    plan = dl.parametrize(net, "depth_mup", base_width=8, base_depth=1)
    pp = plan["blocks.0.conv.weight"]
    # fan-in = kernel_size (finite): one scaling dim, a vector's row of the table, not hidden's η/m_N
    assert (pp.role, pp.init, pp.fan_out_mult) == ("vector", "keep", 2.0)
    assert pp.lr_scale == pytest.approx(2.0 ** -0.5)  # Adam: no width factor; the block's m_L^-1/2
    assert torch.equal(net.blocks[0].conv.weight, conv)
    assert plan["blocks.0.inp.weight"].role == "hidden"


def test_grouped_convolution_bare_matrix_and_unknown_3d_tensor_are_refused_with_the_fix():
    with pytest.raises(DeeplimitError, match=r"blocks\.0\.conv\.weight.*grouped convolution \(4 groups of 32 "
                                             r"channels\).*roles=\{'blocks\.\*\.conv\.weight': 'keep'\}"):
        dl.make_plan(_Net(groups=4), "mup", base_width=8)
    net = _Net(bare=True)
    with pytest.raises(DeeplimitError, match=r"blocks\.0\.A_log, blocks\.1\.A_log \(defined by _Mixer itself"):
        dl.make_plan(net, "mup", base_width=8)
    a_log = net.blocks[1].A_log.detach().clone()
    plan = dl.parametrize(net, "depth_mup", base_width=8, base_depth=1, roles={"blocks.*.A_log": "keep"})
    assert torch.equal(net.blocks[1].A_log, a_log)
    pp = plan["blocks.1.A_log"]
    assert (pp.role, pp.init, pp.fan_in_mult, pp.fan_out_mult) == ("keep", "keep", 1.0, 1.0)
    assert pp.lr_scale == pytest.approx(2.0 ** -0.5) and pp.eps_scale == pytest.approx(2.0 ** -0.5)
    stacked = _Net(stack=True)
    with pytest.raises(DeeplimitError, match=r"blocks\.0\.w.*3-D tensor of _Mixer.*declare_experts"):
        dl.make_plan(stacked, "mup", base_width=8)
    for block in stacked.blocks:
        declare_experts(block, "in_out")  # x @ w[e]: (E, in, out)
    plan = dl.make_plan(stacked, "mup", base_width=8)
    assert (plan["blocks.0.w"].fan_in, plan["blocks.0.w"].init_std) == (16, pytest.approx(1 / math.sqrt(16)))


def test_keep_role_is_accepted_in_roles_and_unknown_roles_name_it():
    with pytest.raises(DeeplimitError, match=r"role 'kept' for .* is unknown; roles are \('input', 'hidden', "
                                             r"'readout', 'vector', 'router', 'keep'\)"):
        dl.make_plan(_Net(), "mup", roles={"blocks.0.inp.weight": "kept"})


# --- Mamba and Mamba-2 as transformers ships them ----------------------------------------------------------------
MAMBA = {"mamba": {}, "mamba2": dict(num_heads=4, head_dim=16, n_groups=1, state_size=16)}
SPECIAL = {"mamba": ("A_log", "D", "dt_proj.bias", "conv1d.bias"), "mamba2": ("A_log", "D", "dt_bias", "conv1d.bias")}


@pytest.mark.parametrize("family", sorted(MAMBA))
def test_mamba_is_refused_with_its_special_parameters_then_keeps_them_exactly(family):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    from deeplimit.scaling import hf

    torch.manual_seed(0)
    model = hf.build(family, 32, 2, **MAMBA[family])
    with pytest.raises(DeeplimitError, match="cannot classify 8 parameter") as err:
        dl.parametrize(model, "depth_mup", base_width=16, base_depth=1)
    message = str(err.value)
    for suffix in SPECIAL[family]:
        assert f"backbone.layers.*.mixer.{suffix}': 'keep'" in message
    # the declaration the error prints, taken from it as a user would
    roles = eval(re.search(r"roles=(\{.*?\})", message).group(1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan = dl.parametrize(model, "depth_mup", base_width=16, base_depth=1, roles=roles)
    after = dict(model.named_parameters())
    for i in range(2):
        for suffix in SPECIAL[family]:
            name = f"backbone.layers.{i}.mixer.{suffix}"
            assert torch.equal(after[name], before[name]), name
            assert plan[name].role == "keep"
    mixer = model.backbone.layers[0].mixer
    if family == "mamba":  # S4D-real: A_log = log(1..N); dt bias = softplus^-1(dt), dt in [1e-3, 0.1]
        assert torch.allclose(mixer.A_log[0], torch.log(torch.arange(1.0, 17.0)))
        assert mixer.dt_proj.bias.detach().max() < -2.0
    assert plan["backbone.layers.0.mixer.conv1d.weight"].role == "vector"  # depthwise: certain
    assert plan["backbone.layers.0.mixer.in_proj.weight"].role == "hidden"
    x = torch.randint(0, 256, (2, 8))
    assert torch.isfinite(model(input_ids=x, labels=x).loss)
