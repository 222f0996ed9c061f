"""Strict inputs, sizes before work, results keyed on data content, and coord-check verdicts and data.

Tables per category, each case a one-line DeeplimitError (or exit code 2 on the command line) that an earlier
version silently accepted, hung on, overflowed or crashed with a traceback:

* strict inputs: flags are real bools in the API and parsed from true/false/yes/no/1/0 on the command line;
  numbers are finite and in range; coord-check never replaces a 0 by its default;
* sizes before work: a size that cannot be built or run is refused in well under a second;
* stale results: a finished run re-invoked on other data under the same name is a different run;
* coord-check: flat / grows / shrinks with the slope per doubling, data chosen from the model's input, and
  ``module:factory`` from the current folder without putting that folder on the import path for anything else.
"""

import gzip
import importlib
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import deeplimit as dl
from deeplimit.cli import main
from deeplimit.errors import DeeplimitError
from deeplimit.nn import MLPResNet, MLPResNetConfig, TransformerConfig, TransformerLM
from deeplimit.train import TrainConfig, train

INF, NAN = float("inf"), float("nan")


def _one_line_exit_2(argv, capsys, match):
    t0 = time.perf_counter()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err and match in lines[0], err
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------
# 1. Strict inputs: the Python API
API_CASES = [
    ("MLP mean_subtract='no'", lambda: MLPResNet(mean_subtract="no"), "mean_subtract must be True or False"),
    ("MLP bias=2", lambda: MLPResNet(bias=2), "bias must be True or False (a bool), got 2"),
    ("MLP pre_ln='yes'", lambda: MLPResNetConfig(pre_ln="yes"), "pre_ln must be True or False"),
    ("LM zero_query_init='perhaps'", lambda: TransformerLM(zero_query_init="perhaps"),
     "zero_query_init must be True or False"),
    ("LM residual_trainable='no'", lambda: TransformerConfig(residual="shaped", residual_trainable="no"),
     "residual_trainable must be True or False"),
    ("LM bias='false'", lambda: TransformerConfig(bias="false"), "bias must be True or False"),
    ("LM tau0=inf", lambda: TransformerConfig(tau0=INF), "tau0 must be positive and finite, got inf"),
    ("LM tau0=-1", lambda: TransformerConfig(tau0=-1.0), "tau0 must be positive and finite"),
    ("LM c_plus=nan", lambda: TransformerConfig(c_plus=NAN), "c_plus must be a finite number, got nan"),
    ("LM c_minus=inf", lambda: TransformerConfig(c_minus=INF), "c_minus must be a finite number, got inf"),
    ("LM attn_mult=inf", lambda: TransformerConfig(attn_mult=INF), "attn_mult must be positive and finite"),
    ("LM residual_gamma=nan", lambda: TransformerConfig(residual_gamma=NAN),
     "residual_gamma must lie in [0, 1] and be finite"),
    ("LM norm typo", lambda: TransformerConfig(norm="preln"), "norm must be one of"),
    ("attention tau0=inf", lambda: dl.nn.MultiHeadAttention(16, 2, tau0=INF), "tau0 must be positive and finite"),
    ("attention causal='no'", lambda: dl.nn.MultiHeadAttention(16, 2, causal="no"), "causal must be True or False"),
    ("shaped ReLU c_minus=inf", lambda: dl.nn.ShapedReLU(16, c_minus=INF), "c_minus must be a finite number"),
    ("train model option 'no'", lambda: TrainConfig(model_kwargs={"mean_subtract": "no"}),
     "mean_subtract must be True or False"),
    ("train plan option 'no'", lambda: TrainConfig(plan_kwargs={"readout_zero_init": "no"}),
     "readout_zero_init must be True or False"),
    ("train tau0=inf", lambda: TrainConfig(model="shaped-transformer", data="stdlib", model_kwargs={"tau0": INF}),
     "tau0 must be positive and finite, got inf"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_options_are_strict(make, match):
    with pytest.raises(DeeplimitError, match=None) as info:
        make()
    assert match in str(info.value) and "\n" not in str(info.value)


def test_real_bools_and_numpy_bools_still_work():
    assert MLPResNetConfig(mean_subtract=False, bias=np.bool_(True)).bias is True
    assert TransformerConfig(zero_query_init=True).zero_query_init is True


# ---------------------------------------------------------------------------------------------------------
# 1. Strict inputs: the command line
@pytest.mark.parametrize("word, value", [("true", True), ("False", False), ("yes", True), ("NO", False),
                                         ("1", True), ("0", False)])
def test_cli_yes_no_words(word, value):
    from deeplimit.cli._args import parse_sets
    from deeplimit.transfer.objectives import point_fields

    sets = parse_sets([f"mean_subtract={word}", "zero_query_init=" + word, "block_mult=0.5"], point_fields())
    assert sets == {"mean_subtract": value, "zero_query_init": value, "block_mult": 0.5}
    assert all(type(sets[k]) is bool for k in ("mean_subtract", "zero_query_init"))


@pytest.mark.parametrize("item", ["mean_subtract=perhaps", "residual_trainable=2", "bias=", "train_io=nope",
                                  "decay_vectors=-1"])
def test_cli_other_words_are_refused_naming_the_key_and_the_words(item):
    from deeplimit.cli._args import parse_sets
    from deeplimit.transfer.objectives import point_fields

    key = item.split("=")[0]
    with pytest.raises(DeeplimitError, match=f"--set {key}"):
        parse_sets([item], point_fields())


def test_cli_train_flag_word_is_refused(capsys):
    _one_line_exit_2(["train", "--set", "mean_subtract=perhaps", "-q"], capsys,
                     "--set mean_subtract is a yes/no option")


def test_cli_train_nonfinite_model_option_is_refused(capsys):
    _one_line_exit_2(["train", "--model", "shaped-transformer", "--set", "c_plus=nan", "-q"], capsys,
                     "c_plus must be a finite number, got nan")


CC = ["coord-check", "--axis", "depth", "--depths", "2", "4", "--steps", "1", "--seeds", "0"]


@pytest.mark.parametrize("extra, match", [
    (["--width", "0"], "--width must be an integer in 1.."),
    (["--axis", "width", "--widths", "8", "16", "--depth", "0"], "--depth must be an integer in 1.."),
    (["--batch-size", "0"], "--batch-size must be an integer in 1.."),
    (["--batch-size", "-1"], "--batch-size must be an integer in 1.."),
    (["--depths", "0", "4"], "--depths must be an integer in 1.."),
    (["--seq-len", "0"], "--seq-len must be an integer in 1.."),
], ids=["width 0", "depth 0", "batch 0", "batch -1", "depths 0", "seq-len 0"])
def test_coord_check_never_replaces_zero_by_a_default(extra, match, capsys, tmp_path):
    out = tmp_path / "o"
    _one_line_exit_2(CC + extra + ["--out", str(out)], capsys, match)
    assert not out.exists()


def test_coord_check_api_refuses_a_zero_batch():
    from deeplimit.diagnostics.coordinates import coord_check

    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    for bad in (0, -1):
        with pytest.raises(DeeplimitError, match="batch_size must be a positive integer"):
            coord_check(lambda w, d: MLPResNet(d_in=8, d_out=2, width=w, depth=d), "mup", x, y, widths=[8],
                        depths=[1], base_width=8, base_depth=1, batch_size=bad, steps=1, seeds=[0])


# ---------------------------------------------------------------------------------------------------------
# 2. Sizes before work: refused at once, never hung on or overflowed
SIZE_CASES = [
    ("MLP depth 1e12", lambda: MLPResNet(depth=10**12), "depth = 1,000,000,000,000 is above the limit"),
    ("MLP width 1e12", lambda: MLPResNet(width=10**12), "width = 1,000,000,000,000 is above the limit"),
    ("MLP beyond memory", lambda: MLPResNet(width=2**20, depth=100), "parameters and needs ≈"),
    ("LM depth 1e12", lambda: TransformerLM(depth=10**12), "depth = 1,000,000,000,000 is above the limit"),
    ("LM beyond memory", lambda: TransformerLM(width=2**18, depth=64, n_heads=4), "parameters and needs ≈"),
    ("train depth 1e12", lambda: TrainConfig(depth=10**12), "depth = 1,000,000,000,000 is above the limit"),
    ("train seed 1e30", lambda: TrainConfig(seed=10**30), "seed must be at most 4,294,967,295"),
    ("train steps 1e12", lambda: TrainConfig(steps=10**12), "steps must be at most"),
    ("train eval_batches 1e9", lambda: TrainConfig(model="transformer", data="stdlib", batch_size=16,
                                                   eval_batches=10**9), "eval_batches must be at most"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in SIZE_CASES], ids=[c[0] for c in SIZE_CASES])
def test_sizes_are_refused_before_any_work(make, match):
    t0 = time.perf_counter()
    with pytest.raises(DeeplimitError) as info:
        make()
    assert match in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 2.0


def test_a_huge_model_can_still_be_built_on_the_meta_device():
    with torch.device("meta"):
        model = MLPResNet(width=2**16, depth=8)
    assert sum(p.numel() for p in model.parameters()) == model.cfg.n_params()


@pytest.mark.parametrize("cfg", [MLPResNetConfig(width=12, depth=3, bias=True, pre_ln=True, block_depth=2),
                                 TransformerConfig(width=16, depth=2),
                                 TransformerConfig(width=16, depth=2, norm="none", attention="shaped",
                                                   shaping="learn", residual="shaped", residual_trainable=True),
                                 TransformerConfig(width=16, depth=2, tie_embeddings=True, bias=False)],
                         ids=["mlp", "pre-ln", "shaped", "tied"])
def test_closed_form_parameter_counts_match_the_built_models(cfg):
    model = MLPResNet(cfg) if isinstance(cfg, MLPResNetConfig) else TransformerLM(cfg)
    assert cfg.n_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("argv, match", [
    (["train", "--depth", str(10**12), "-q"], "depth = 1,000,000,000,000 is above the limit"),
    (["train", "--seed", str(10**30), "-q"], "seed must be at most"),
    (["train", "--threads", str(10**12), "-q"], "expected at most 1024 threads"),
    (["train", "--model", "transformer", "--set", "eval_batches=1000000000", "-q"], "eval_batches must be at most"),
    (["plan", "--width", str(10**12)], "width = 1,000,000,000,000 is above the limit"),
    (["plan", "--depth", str(10**12)], "depth = 1,000,000,000,000 is above the limit"),
    (["sde", "--seed", str(10**30), "-q"], "seed must be at most"),
], ids=["train depth", "train seed", "train threads", "train eval_batches", "plan width", "plan depth", "sde seed"])
def test_cli_sizes_are_one_line_errors_at_once(argv, match, capsys):
    assert _one_line_exit_2(argv, capsys, match) < 10


def test_plan_of_a_factory_checks_its_size_on_the_meta_device(tmp_path, capsys):
    f = tmp_path / "big_factory.py"
    f.write_text("import deeplimit as dl\n\ndef make(width, depth):\n"
                 "    return dl.MLPResNet(d_in=784, d_out=10, width=width, depth=depth)\n")
    _one_line_exit_2(["plan", "--model", f"{f}:make", "--width", str(2**19), "--depth", "64"], capsys,
                     "parameters and needs ≈")
    _one_line_exit_2(["plan", "--model", f"{f}:make", "--width", str(10**12)], capsys, "above the limit")


# ---------------------------------------------------------------------------------------------------------
# 3. Results keyed on the data's content
def _write_idx(folder, prefix, images, labels):
    n = len(images)
    head = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    head = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(head + labels.tobytes()))


def _fashion_dir(folder, labels):
    folder.mkdir()
    rng = np.random.default_rng(0)
    _write_idx(folder, "train", rng.integers(0, 256, size=(96, 28, 28), dtype=np.uint8), labels)
    _write_idx(folder, "t10k", rng.integers(0, 256, size=(16, 28, 28), dtype=np.uint8), labels[:16])
    return folder


def test_a_finished_run_on_other_data_under_the_same_name_is_a_different_run(tmp_path, monkeypatch):
    labels = (np.arange(96) % 4).astype(np.uint8)
    first = _fashion_dir(tmp_path / "a", labels)
    permuted = _fashion_dir(tmp_path / "b", np.random.default_rng(1).permutation(labels))
    cfg = dict(width=8, depth=1, steps=6, batch_size=16, min_window=2, eval_batches=1)
    monkeypatch.setenv("DEEPLIMIT_FASHION_MNIST_DIR", str(first))
    done = train(TrainConfig(**cfg), tmp_path / "run")
    again = train(TrainConfig(**cfg), tmp_path / "run")  # same data: the stored result, not a re-run
    assert again.resumed_from == done.steps_done and again.window_loss == done.window_loss
    monkeypatch.setenv("DEEPLIMIT_FASHION_MNIST_DIR", str(permuted))
    with pytest.raises(DeeplimitError, match="different run .*content of the data"):
        train(TrainConfig(**cfg), tmp_path / "run")
    fresh = train(TrainConfig(**cfg))  # in-process caches are keyed on content too: the new labels are read
    assert fresh.step0_loss != done.step0_loss


# ---------------------------------------------------------------------------------------------------------
# 4. coord-check: flat / grows / shrinks with the slope per doubling
def _table(slopes: dict[str, float], axis="width", sizes=(32, 64, 128)):
    rows = [{"rule": "mup", "seed": 0, "step": t, axis: n, "site": site,
             "delta_rms": 0.0 if t == 0 else 0.1 * (n / sizes[0]) ** s}
            for site, s in slopes.items() for n in sizes for t in (0, 1)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("slopes, verdict, slope", [
    ({"input": 0.0, "block_first": 0.1, "block_last": -0.05, "logits": 0.02}, "flat", 0.1),
    ({"input": 0.0, "block_first": 0.5, "block_last": 0.99, "logits": 0.6}, "grows", 0.99),
    ({"input": 0.0, "block_first": -0.1, "block_last": -0.3, "logits": -0.2}, "shrinks", -0.3),
], ids=["flat", "grows (SP +0.99)", "shrinks (muP Llama -0.30)"])
def test_verdict_says_flat_grows_or_shrinks_with_the_slope(slopes, verdict, slope):
    from deeplimit.diagnostics.coordinates import coord_verdict

    v = coord_verdict(_table(slopes), "width")
    assert v.verdict == verdict and v.slope == pytest.approx(slope, abs=1e-9)
    assert f"{slope:+.2f} per doubling of width" in v.line() and verdict in v.line()
    assert v.to_dict()["verdict"] == verdict


def test_width_coord_check_in_one_call_mup_flat_sp_grows():
    from deeplimit.diagnostics import coord_check_verdict

    kw = dict(axis="width", widths=[64, 128, 256, 512], seeds=1, steps=3, batch_size=32)
    mup = coord_check_verdict("mup", **kw)
    sp = coord_check_verdict("sp", **kw)
    assert set(mup.verdict.slopes) == {"input", "block_first", "block_last", "logits"}
    assert mup.verdict.verdict == "flat", mup.verdict
    assert sp.verdict.verdict == "grows" and sp.verdict.slope > 0.25, sp.verdict
    assert sorted(mup.table["width"].unique()) == [64, 128, 256, 512]


class TokenNet(nn.Module):
    """A token model that is neither built in nor Hugging Face: embedding in, residual blocks, readout."""

    def __init__(self, width: int, depth: int, vocab: int = 50) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self.input = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(dl.nn.Residual(nn.Sequential(nn.Linear(width, width), nn.ReLU()), 1)
                                    for _ in range(depth))
        self.readout = dl.nn.Readout(width, vocab)

    def forward(self, idx):
        h = self.input(idx)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)


def test_token_models_get_text_and_mismatched_data_is_named():
    from deeplimit.diagnostics.coordinates import data_for

    x, y, source = data_for(TokenNet(8, 1), None, n=4, seq_len=6)
    assert source == "shakespeare" and x.dtype == torch.long and x.shape == (4, 6) and int(x.max()) < 50
    _, _, source = data_for(MLPResNet(width=8, depth=1), None, n=4)
    assert source == "fashion-mnist"
    with pytest.raises(DeeplimitError, match="TokenNet eats token ids, but --data 'fashion-mnist' is an image set"):
        data_for(TokenNet(8, 1), "fashion-mnist", n=4)


TOKEN_MODULE = """
import deeplimit as dl
from torch import nn
from {helper} import WIDTH_UNUSED  # a helper next to the module: importable while the module loads


class TokenNet(nn.Module):
    def __init__(self, width, depth, vocab=50):
        super().__init__()
        self.width, self.depth = width, depth
        self.input = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(dl.nn.Residual(nn.Sequential(nn.Linear(width, width), nn.ReLU()), 1)
                                    for _ in range(depth))
        self.readout = dl.nn.Readout(width, vocab)

    def forward(self, idx):
        h = self.input(idx)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)


def make(width, depth):
    return TokenNet(width, depth)
"""


@pytest.fixture
def folder_module(tmp_path, monkeypatch):
    """A module and its helper in the current folder, with the current folder NOT on the import path (as under
    the ``deeplimit`` console script)."""
    tag = f"m{os.getpid()}_{time.monotonic_ns()}"
    (tmp_path / f"gpt_{tag}.py").write_text(TOKEN_MODULE.format(helper=f"helper_{tag}"))
    (tmp_path / f"helper_{tag}.py").write_text("WIDTH_UNUSED = 0\n")
    (tmp_path / f"planted_{tag}.py").write_text("raise SystemExit('planted module ran')\n")
    (tmp_path / "textwrap.py").write_text("raise SystemExit('planted textwrap ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    importlib.invalidate_caches()
    yield tag
    for name in [m for m in sys.modules if tag in m]:
        del sys.modules[name]


def test_module_factory_from_the_current_folder_and_nothing_else(folder_module):
    from deeplimit.cli.common import load_factory

    make = load_factory(f"gpt_{folder_module}:make")
    assert make(8, 2).width == 8
    assert str(os.getcwd()) not in sys.path  # off the path again: a later import cannot pick up a planted file
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"planted_{folder_module}")
    import textwrap  # noqa: F401 - the installed module wins over ./textwrap.py

    assert load_factory("textwrap:dedent")("  a") == "a"


def test_cli_coord_check_of_a_token_model_in_the_current_folder(folder_module, capsys, tmp_path):
    rc = main(["coord-check", "--model", f"gpt_{folder_module}:make", "--axis", "width", "--widths", "8", "16",
               "--depth", "1", "--steps", "1", "--seeds", "0", "--batch-size", "4", "--seq-len", "8",
               "--rule", "sp", "--out", str(tmp_path / "cc")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "on shakespeare" in out and re_verdict(out)


def re_verdict(text: str) -> bool:
    import re

    pattern = r"verdict: (flat, max \|slope\||grows|shrinks) [+-]\d\.\d\d per doubling of width"
    return re.search(pattern, text) is not None


def test_base_shape_constants_reach_the_plan(capsys):
    import json

    rc = main(["plan", "--width", "64", "--depth", "2", "--base-width", "32", "--base-depth", "2", "--rule", "mup",
               "--sigma-out", "0.5", "--input-mult", "2", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    hp = json.loads(out)["hparams"]
    assert hp["sigma_out"] == 0.5 and hp["input_mult"] == 2.0 and hp["sigma_in"] == 1.0
    _one_line_exit_2(["plan", "--sigma-in", "nan"], capsys, "sigma_in")
