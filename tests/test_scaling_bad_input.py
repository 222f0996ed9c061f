"""Bad input to the scaling core (issue #11): refused where it is made, with a message naming the fix."""

import json
import math
import os
from dataclasses import replace

import pytest
import torch

import deeplimit as dl

KW = dict(base_width=16, base_depth=2, optimizer="adam")


def mlp(width=64, depth=8):
    return dl.MLPResNet(d_in=12, d_out=5, width=width, depth=depth)


# one row per case: keyword arguments to make_plan → expected message
PLAN_CASES = [
    (dict(block_mult=math.nan), "block_mult must be a finite number, got nan"),
    (dict(block_mult=-1.0), "block_mult must be positive, got -1.0"),
    (dict(block_mult=0.0), "block_mult must be positive"),
    (dict(input_mult=math.inf), "input_mult must be a finite number, got inf"),
    (dict(output_mult=-math.inf), "output_mult must be a finite number"),
    (dict(attn_mult=math.nan), "attn_mult must be a finite number"),
    (dict(sigma_hidden=-0.5), "sigma_hidden must be >= 0"),
    (dict(sigma_in=math.nan), "sigma_in must be a finite number"),
    (dict(output_mult="big"), "output_mult must be a number"),
    (dict(readout_zero_init="yes"), "readout_zero_init must be True or False"),
    (dict(block_multiplier=2.0), r"unknown plan option\(s\) \['block_multiplier'\]"),
    (dict(alpha=math.nan), "alpha=nan is outside"),
    (dict(gamma=math.inf), "gamma=inf is outside"),
    (dict(attn_scale="1/d"), "attn_scale '1/d' is unknown"),
    (dict(eps_scope="most"), "eps_scope 'most' is unknown"),
    (dict(base_width=math.nan), "base_width must be a finite number"),
    (dict(base_width=math.inf), "base_width must be a finite number"),
    (dict(base_depth=2.5), "base_depth must be a positive integer"),
    (dict(width=64.0, depth=0), "depth must be a positive integer|contradicts"),
    (dict(roles={"blocks.0.*": "frozen"}), r"role 'frozen' for blocks\.0\..* is unknown; roles are .*'router', "
                                           r"'keep'\)"),
]


@pytest.mark.parametrize("kwargs,match", PLAN_CASES)
def test_make_plan_refuses(kwargs, match):
    with pytest.raises(dl.DeeplimitError, match=match):
        dl.make_plan(mlp(), "depth_mup", **{**KW, **kwargs})


OPT_CASES = [
    (dict(lr=math.nan), "lr must be a finite number"),
    (dict(lr=math.inf), "lr must be a finite number"),
    (dict(lr=0.0), "lr must be positive"),
    (dict(lr=-1e-3), "lr must be positive"),
    (dict(eps=-1.0), "eps must be >= 0, got -1.0"),
    (dict(eps=math.nan), "eps must be a finite number"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(weight_decay=math.inf), "weight_decay must be a finite number"),
]


@pytest.mark.parametrize("kwargs,match", OPT_CASES)
def test_make_optimizer_and_table_refuse(kwargs, match):
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", **KW)
    args = {"lr": 1e-3, **kwargs}
    with pytest.raises(dl.DeeplimitError, match=match):
        dl.make_optimizer(model, plan, **args)
    with pytest.raises(dl.DeeplimitError, match=match):
        plan.table(**args)


@pytest.mark.parametrize("other,match", [
    (dict(width=256), r"shape differs: blocks\.0\.W\.0\.weight model \(64, 64\) vs plan \(256, 256\)"),
    (dict(depth=16), r"in the plan but not the model: \['blocks\.10\.W\.0\.weight'"),
    (dict(depth=4), r"in the model but not the plan|the model's depth is 8, the plan's 4"),
])
def test_make_optimizer_with_another_models_plan_is_an_error(other, match):
    """Was: hidden layers silently got a 16x smaller LR (plan of a wider model, same parameter names)."""
    model = mlp()
    plan = dl.make_plan(mlp(**other), "depth_mup", **KW)
    with pytest.raises(dl.DeeplimitError, match=match):
        dl.make_optimizer(model, plan, 1e-3)


def test_plan_of_the_same_names_but_other_declared_width_is_an_error():
    model = torch.nn.Sequential(dl.Input(4, 8), dl.Readout(8, 2))
    plan = dl.make_plan(model, "mup", width=8, base_width=4, depth=1)
    model.width = 16  # same tensors, but the model now says it is twice as wide
    with pytest.raises(dl.DeeplimitError, match="the model's width is 16, the plan's 8"):
        dl.make_optimizer(model, plan, 1e-3)


@pytest.mark.parametrize("corrupt,match", [
    (lambda d: d["params"][3].update(lr_scale=math.nan), "lr_scale must be a finite number"),
    (lambda d: d["params"][0].update(eps_scale=-1.0), "eps_scale must be positive"),
    (lambda d: d["multipliers"]["blocks.0"].update(branch_mult=math.inf), "multiplier branch_mult of blocks.0"),
    (lambda d: d["hparams"].update(block_mult=math.nan), "block_mult must be a finite number"),
    (lambda d: d.update(width=-64), "width must be positive"),
    (lambda d: d.pop("params"), "not a valid deeplimit plan"),
    (lambda d: d.update(version=99), "plan version 99 is not supported"),
])
def test_a_corrupt_plan_is_refused_where_it_is_loaded(corrupt, match, tmp_path):
    plan = dl.make_plan(mlp(), "depth_mup", **KW)
    d = json.loads(json.dumps(plan.to_dict()))
    corrupt(d)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))  # Python's json writes NaN/Infinity literals
    with pytest.raises(dl.DeeplimitError, match=match):
        dl.Plan.load(path)


def test_a_plan_mutated_to_nan_is_refused_where_it_is_applied():
    model = mlp()
    plan = dl.make_plan(model, "depth_mup", **KW)
    plan.multipliers["blocks.0"]["branch_mult"] = math.nan
    with pytest.raises(dl.DeeplimitError, match="multiplier branch_mult of blocks.0 must be a finite number"):
        plan.apply(model)
    assert model.blocks[0].branch_mult == 1.0  # nothing was applied half-way
    plan = dl.make_plan(model, "depth_mup", **KW)
    object.__setattr__(plan.params["readout.weight"], "lr_scale", math.inf)
    with pytest.raises(dl.DeeplimitError, match="readout.weight: lr_scale must be a finite number"):
        plan.apply(model)


@pytest.mark.parametrize("content", [b"", b'{"version": 1, "rule": {"na', b"\x80\x04\x95binary\x00\xff"])
def test_truncated_empty_or_binary_plan_json_is_a_clear_error(content, tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(dl.DeeplimitError, match="plan file .* is not valid JSON.*truncated, empty or not a JSON"):
        dl.Plan.load(path)
    with pytest.raises(dl.DeeplimitError, match="does not exist"):
        dl.Plan.load(tmp_path / "missing.json")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/deeplimit-pwned-scaling",))


def test_load_checkpoint_never_runs_code_from_the_file(tmp_path):
    marker = "/tmp/deeplimit-pwned-scaling"
    if os.path.exists(marker):
        os.remove(marker)
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", **KW)
    path = dl.save_checkpoint(tmp_path / "ckpt.pt", model, plan)
    torch.save({"model": model.state_dict(), "extra": {"x": _RunsCode()}}, path)  # a crafted checkpoint
    with pytest.raises(dl.DeeplimitError, match="weights_only=True refuses code"):
        dl.load_checkpoint(path, mlp())
    assert not os.path.exists(marker)


def test_save_checkpoint_is_atomic_and_writes_the_plan_json(tmp_path):
    model = mlp()
    plan = dl.parametrize(model, "depth_mup", **KW)
    path = dl.save_checkpoint(tmp_path / "ckpt.pt", model, plan, step=1)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled: the save fails before the rename
        dl.save_checkpoint(path, model, plan, step=2, bad=lambda: 0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.pt.plan.json"]  # no temp files left
    assert dl.Plan.load(tmp_path / "ckpt.pt.plan.json").to_dict() == plan.to_dict()
    with pytest.raises(dl.DeeplimitError, match="plan file .* not valid JSON"):
        (tmp_path / "ckpt.pt.plan.json").write_text('{"trunc')
        dl.load_checkpoint(path, mlp())


def test_with_optimizer_reuses_the_table():
    model = mlp()
    adam = dl.make_plan(model, "depth_mup", **KW)
    sgd = dl.make_plan(model, "depth_mup", **{**KW, "optimizer": "sgd"})
    again = adam.with_optimizer("sgd")
    assert {n: (p.lr_scale, p.eps_scale, p.wd_scale) for n, p in again.params.items()} == \
        {n: (p.lr_scale, p.eps_scale, p.wd_scale) for n, p in sgd.params.items()}
    with pytest.raises(dl.DeeplimitError, match="optimizer 'lion' is unknown"):
        adam.with_optimizer("lion")
    assert replace(adam, notes=[]).validate() is None


def test_declare_experts_refuses_an_unknown_layout():
    from deeplimit.scaling.moe import declare_experts

    with pytest.raises(dl.DeeplimitError, match=r"experts layout 'E,in,out' is unknown; use 'out_in' .* or 'in_out'"):
        declare_experts(torch.nn.Module(), "E,in,out")


def test_a_weight_shared_by_residual_blocks_is_named_with_its_fix() -> None:
    """One nn.Linear reused by every block has no single depth factor: a one-line error naming it and the fix,
    not the plan's later "does not match the model" (issue 22 item 9)."""
    import torch.nn as nn

    import deeplimit as dl

    class Shared(nn.Module):
        width = 16

        def __init__(self) -> None:
            super().__init__()
            self.inp, lin, self.out = dl.Input(8, 16), nn.Linear(16, 16), dl.Readout(16, 2)
            self.blocks = nn.ModuleList(dl.Residual(nn.Sequential(lin, nn.ReLU()), block_depth=1) for _ in range(3))

        def forward(self, x):
            x = self.inp(x)
            for b in self.blocks:
                x = b(x)
            return self.out(x)

    with pytest.raises(dl.DeeplimitError, match=r"shared by 3 residual blocks.*own module") as err:
        dl.parametrize(Shared(), "depth_mup", base_width=16, base_depth=1)
    assert "does not match" not in str(err.value)
