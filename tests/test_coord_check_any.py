"""Coordinate checks of any model: token ids, Hugging Face outputs, declared structures, verdicts and bad input.

The tests that parametrize a Hugging Face model or a Structure-declared model need the scaling core's consumer
side (merge branch ``scaling``).
"""

import json
import math
import re
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from deeplimit.cli import main
from deeplimit.diagnostics.coordinates import (
    coord_check,
    coord_data,
    coord_verdict,
    default_loss,
    logits_of,
    next_token_loss,
    run_coord_check,
)
from deeplimit.errors import DeeplimitError
from deeplimit.scaling.structure import Structure, declare_structure


# ---------------------------------------------------------------------------------------------------------
# a model that is neither built-in nor Hugging Face: described by a Structure
class TinyResNet(nn.Module):
    def __init__(self, width: int, depth: int, d_in: int = 16, d_out: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, width)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.head = nn.Linear(width, d_out)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = h + layer(h)
        return self.head(h)


def tiny_resnet(width: int, depth: int) -> nn.Module:
    model = TinyResNet(width, depth)
    blocks = {f"layers.{i}": 2 for i in range(depth)}
    return declare_structure(model, Structure(width=width, depth=depth, blocks=blocks,
                                              branches={f"layers.{i}.2": f"layers.{i}" for i in range(depth)},
                                              inputs=("embed",), readouts=("head",), family="resnet"))


@pytest.fixture(scope="module")
def features():
    g = torch.Generator().manual_seed(0)
    return torch.randn(96, 16, generator=g), torch.randint(0, 5, (96,), generator=g)


def _mlp(width, depth):
    return dl.MLPResNet(d_in=16, d_out=5, width=width, depth=depth)


# ---------------------------------------------------------------------------------------------------------
def test_losses_read_hf_model_outputs():
    transformers = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    out = transformers.modeling_outputs.CausalLMOutput(logits=logits)
    ref = F.cross_entropy(logits.reshape(-1, 7), y.reshape(-1))
    assert torch.equal(default_loss(out, y), ref) and torch.equal(default_loss({"logits": logits}, y), ref)
    assert torch.equal(default_loss((logits, None), y), ref)
    shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 7), y[:, 1:].reshape(-1))
    assert torch.equal(next_token_loss(out, y), shifted)
    with pytest.raises(DeeplimitError, match="do not match targets"):
        default_loss(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DeeplimitError, match="cannot find logits"):
        logits_of(object())


def test_token_ids_are_never_cast_and_hf_causal_lms_check(tmp_path):
    pytest.importorskip("transformers")
    from deeplimit.scaling import hf

    x, _ = coord_data("stdlib", kind="tokens", n=24, seq_len=12)
    assert x.dtype == torch.long
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = coord_check(hf.factory("llama"), "mup", x, None, widths=[32, 64], depths=[1], base_width=32,
                         base_depth=1, steps=1, seeds=[0], batch_size=8, lr=2**-6)
    assert set(df["site"]) == {"input", "block_first", "block_last", "logits"}
    assert df[df["step"] == 1]["delta_rms"].gt(0).all() and len(df) == 2 * 2 * 4


def test_a_model_described_by_a_structure_gets_sites_and_a_verdict(features, tmp_path):
    x, y = features
    # SP over depth: the stream's change grows with L (spec §8.2), so the verdict is known to be "grows"
    r = run_coord_check(tiny_resnet, "sp", x, y, axis="depth", sizes=[2, 4, 8], width=32, seeds=2, steps=3,
                        batch_size=16, lr=2**-7)
    assert r.verdict.verdict == "grows" and r.verdict.slopes["block_last"] > 0.5, r.verdict
    assert r.verdict.judged == ("input", "block_last", "logits")
    assert set(r.verdict.slopes) == {"input", "block_first", "block_last", "logits"}
    paths = r.save(tmp_path)
    summary = json.loads(paths["summary"].read_text())
    assert summary["verdict"] == r.verdict.verdict and summary["final_step"] == 3
    assert set(summary["log2_slope_of_change_per_site"]) == set(r.verdict.slopes)
    assert paths["figure"].stat().st_size > 10_000 and paths["table"].read_text().startswith("rule,")


def test_sp_over_depth_is_not_flat_and_depth_mup_is(features):
    """The built-in MLP through the one-call API: the verdict separates the rules (spec §8.2)."""
    x, y = features
    kw = dict(axis="depth", sizes=[4, 16, 64], width=64, seeds=2, steps=3, batch_size=16, lr=2**-8)
    dm = run_coord_check(_mlp, "depth_mup", x, y, **kw).verdict
    sp = run_coord_check(_mlp, "sp", x, y, **kw).verdict
    assert dm.verdict == "flat", dm
    assert sp.verdict == "grows" and sp.slopes["block_last"] > 0.5, sp


def test_unmeasurable_slopes_are_inconclusive_never_not_flat(features):
    x, y = features
    kw = dict(axis="width", sizes=[32, 64], depth=2, seeds=1, steps=2, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diverged = run_coord_check(_mlp, "sp", x, y, lr=1e30, **kw).verdict
        still = run_coord_check(_mlp, "mup", x, y, lr=1e-30, **kw).verdict
    assert diverged.verdict == "inconclusive" and "diverged" in diverged.reason, diverged
    assert math.isnan(diverged.max_abs_slope)
    assert still.verdict == "inconclusive" and "no change from init" in still.reason, still


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[64]), "at least two different widths"),
    (dict(sizes=[64, 64]), "at least two different widths"),
    (dict(steps=0), r"steps must be >= 1"),
    (dict(lr=float("inf")), "lr must be a finite positive number"),
    (dict(lr=float("nan")), "lr must be a finite positive number"),
    (dict(seeds=0), "seeds must be positive"),
    (dict(sizes=[0, 64]), "must be positive integers"),
])
def test_bad_requests_are_one_line_errors(features, kwargs, match):
    x, y = features
    args = dict(axis="width", sizes=[32, 64], depth=2, seeds=1, steps=1, batch_size=16) | kwargs
    with pytest.raises(DeeplimitError, match=match):
        run_coord_check(_mlp, "mup", x, y, **args)


def test_factories_that_fail_are_named(features):
    x, y = features

    def broken(width, depth):
        raise RuntimeError("no such layer")

    with pytest.raises(DeeplimitError, match=r"factory broken failed at width=32, depth=2 \(RuntimeError: no such"):
        run_coord_check(broken, "mup", x, y, axis="width", sizes=[32, 64], depth=2, batch_size=16)
    with pytest.raises(DeeplimitError, match="returned str, not an nn.Module"):
        run_coord_check(lambda w, d: "model", "mup", x, y, axis="width", sizes=[32, 64], depth=2, batch_size=16)
    with pytest.raises(DeeplimitError, match="cannot find the sites of Linear"):
        run_coord_check(lambda w, d: nn.Linear(16, 5), "sp", x, y, axis="width", sizes=[32, 64], depth=2,
                        batch_size=16)


def test_verdict_needs_two_sizes_and_a_step(features):
    x, y = features
    df = coord_check(_mlp, "mup", x, y, widths=[32], depths=[2], base_width=32, base_depth=2, steps=0, seeds=[0],
                     batch_size=16)
    with pytest.raises(DeeplimitError, match="needs at least two widths"):
        coord_verdict(df, "width")
    with pytest.raises(DeeplimitError, match="needs at least two depths"):
        coord_verdict(df, "depth")


# ---------------------------------------------------------------------------------------------------------
# CLI: --hf and --model for coord-check and plan; every bad input is one line and exit code 2
FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def make(width, depth):
        import deeplimit as dl
        return dl.MLPResNet(d_in=784, d_out=10, width=width, depth=depth)

    def broken(width, depth):
        raise RuntimeError("out of coffee")
""")


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORY)
    return path


def _cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_coord_check_hf_model(tmp_path, capsys):
    pytest.importorskip("transformers")
    rc, out, err = _cli(["coord-check", "--hf", "gpt2", "--axis", "width", "--widths", "32", "64", "--depth", "1",
                         "--steps", "2", "--seeds", "1", "--batch-size", "4", "--seq-len", "8", "--data", "stdlib",
                         "--rule", "mup", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "coordinate check over width for rule mup on stdlib" in out and "verdict:" in out
    assert json.loads((tmp_path / "coord_check_summary.json").read_text())["sizes"] == [32, 64]


def test_cli_coord_check_and_plan_take_a_factory(tmp_path, capsys, factory_file):
    rc, out, err = _cli(["coord-check", "--model", f"{factory_file}:make", "--axis", "depth", "--depths", "2", "4",
                         "--steps", "1", "--seeds", "1", "--out", str(tmp_path / "cc")], capsys)
    assert rc == 0, err
    assert "on fashion-mnist" in out and (tmp_path / "cc" / "coord_check.csv").exists()
    rc, out, err = _cli(["plan", "--model", f"{factory_file}:make", "--width", "64", "--depth", "4",
                         "--base-width", "32", "--base-depth", "2"], capsys)
    assert rc == 0 and "width 64 / base 32" in out, err


def test_cli_plan_hf_model_needs_no_roles(capsys):
    pytest.importorskip("transformers")
    rc, out, err = _cli(["plan", "--hf", "llama", "--width", "64", "--depth", "2", "--base-width", "32",
                         "--base-depth", "1", "--rule", "completep"], capsys)
    assert rc == 0, err
    assert "hf:llama" in out and "model.layers.1.mlp.down_proj.weight" in out and "GQA" in out


@pytest.mark.parametrize("args,match", [
    (["coord-check", "--hf", "lama"], "unknown Hugging Face model type 'lama'"),
    (["coord-check", "--model", "no_such_pkg.models:make"], "cannot import 'no_such_pkg.models'"),
    (["coord-check", "--model", "{f}:nope"], "has no attribute 'nope'"),
    (["coord-check", "--model", "{f}:broken"], "factory broken failed at width=64, depth=2 .*out of coffee"),
    (["coord-check", "--model", "{f}:make", "--depths", "4"], "at least two different depths"),
    (["coord-check", "--model", "{f}:make", "--steps", "0"], "steps must be >= 1"),
    (["coord-check", "--model", "{f}:make", "--lr", "inf"], "lr must be a finite positive number"),
    (["coord-check", "--model", "{f}:make", "--lr", "nan"], "lr must be a finite positive number"),
    (["coord-check", "--seeds", "0", "0"], "--seeds takes distinct"),
    (["coord-check", "--model", "nanogpt"], "coord-check takes pkg.module:factory"),
    (["coord-check", "--hf", "gpt2", "--model", "a.b:c"], "either --hf MODEL_TYPE or --model"),
    (["plan", "--hf", "lama"], "unknown Hugging Face model type 'lama'"),
    (["plan", "--model", "{f}:broken"], "factory broken failed"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(args, match, capsys, factory_file, tmp_path):
    args = [a.replace("{f}", str(factory_file)) for a in args] + (["--out", str(tmp_path)] if args[0] ==
                                                                   "coord-check" else [])
    rc, out, err = _cli(args, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deeplimit {args[0]}: error:"), err
    assert re.search(match, lines[0]), lines[0]
