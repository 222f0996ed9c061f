"""``deeplimit train`` trains any model: a Hugging Face type (--hf), a factory (--model pkg.module:factory or
file.py:factory, --set for its options); one spelling per option, old spellings noted; bad input in one line."""

import json
import math
import textwrap

import numpy as np
import pytest

import deeplimit as dl
from deeplimit.cli import main
from deeplimit.train import TrainConfig, build, config_from_point, train

pytest.importorskip("transformers")

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn
    from deeplimit.nn import Input, Readout, Residual


    class Net(nn.Module):
        def __init__(self, width, depth, d_in, d_out, bias=True):
            super().__init__()
            self.width, self.depth = width, depth
            self.inp = Input(d_in, width, bias=bias)
            self.blocks = nn.ModuleList(Residual(nn.Sequential(nn.ReLU(), nn.Linear(width, width, bias=bias)), 1)
                                        for _ in range(depth))
            self.out = Readout(width, d_out)

        def forward(self, x):
            h = self.inp(x)
            for b in self.blocks:
                h = b(h)
            return self.out(h)


    def make(width, depth, d_in, d_out, bias=True):
        return Net(width, depth, d_in, d_out, bias)


    class Peek(nn.Module):
        """A token model that sees the whole sequence (mean over time): not causal."""

        def __init__(self, width, depth, vocab_size):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, width)
            self.out = nn.Linear(width, vocab_size)

        def forward(self, x):
            h = self.emb(x)
            return self.out(h + h.mean(1, keepdim=True))


    def peek(width, depth, vocab_size):
        return Peek(width, depth, vocab_size)
''')


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 10)).astype("float32")
    path = tmp_path_factory.mktemp("models") / "tiny.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype("int64"))
    return str(path)


@pytest.fixture()
def factory_file(tmp_path):
    path = tmp_path / "mymodels.py"
    path.write_text(FACTORY)
    return path


TEXT = ["--data", "stdlib", "--steps", "3", "--batch-size", "2", "--set", "seq_len=16", "eval_batches=1", "-q"]


def _summary(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return json.loads((out / "summary.json").read_text()), captured.err


def test_hf_llama_from_its_config_trains_on_text(tmp_path, capsys):
    s, _ = _summary(tmp_path, capsys, ["train", "--hf", "llama", "--set", "hidden_size=32", "num_hidden_layers=2",
                                       "intermediate_size=48", "--base-width", "32", "--base-depth", "2", *TEXT])
    cfg = s["config"]
    assert (cfg["model"], cfg["width"], cfg["depth"]) == ("hf:llama", 32, 2)
    assert cfg["model_kwargs"] == {"intermediate_size": 48} and cfg["optimizer"] == "adamw"  # text defaults
    assert s["status"] == "ok" and s["steps"] == 3
    assert abs(s["step0_loss"] - math.log(256)) < 1.0  # a byte LM at init: about ln V


def test_hf_model_is_built_with_the_config_fields_and_the_plan_sees_its_size():
    cfg = config_from_point({"model": "hf:llama", "hidden_size": 32, "num_hidden_layers": 3,
                             "intermediate_size": 40, "n_heads": 2, "base_width": 32, "base_depth": 3})
    model, plan = build(cfg, {"vocab_size": 256, "max_seq_len": 16})
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads) == (32, 3, 40, 2)
    assert c.vocab_size == 256 and plan.optimizer == "adam"
    with pytest.raises(dl.DeeplimitError, match="hidden_size=32 and width=64 disagree"):
        config_from_point({"model": "hf:llama", "hidden_size": 32, "width": 64})


def test_a_factory_file_with_options_from_set(npz, factory_file, tmp_path, capsys):
    s, _ = _summary(tmp_path, capsys, ["train", "--model", f"{factory_file}:make", "--data", npz, "--width", "16",
                                       "--depth", "2", "--steps", "20", "--batch-size", "32", "--lr", "0.01",
                                       "--set", "bias=false", "min_window=5", "-q"])
    assert s["status"] == "ok" and s["window_loss"] < s["step0_loss"]
    assert s["config"]["model_kwargs"] == {"bias": False}
    cfg = TrainConfig(model=f"{factory_file}:make", width=16, depth=2, data=npz, model_kwargs={"bias": False})
    model, plan = build(cfg, {"d_in": 10, "d_out": 2})
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    assert {p.role for p in plan.params.values()} == {"input", "hidden", "readout"}


def test_a_module_in_the_current_folder_as_pkg_module_factory(npz, factory_file, monkeypatch):
    monkeypatch.chdir(factory_file.parent)
    res = train(TrainConfig(model="mymodels:make", width=8, depth=2, data=npz, steps=5, batch_size=32,
                            min_window=2))
    assert res.status in ("ok", "diverged") and res.steps_done == 5


def test_an_edited_factory_file_is_another_run(npz, factory_file):
    cfg = TrainConfig(model=f"{factory_file}:make", data=npz)
    before = cfg.fingerprint()
    factory_file.write_text(FACTORY.replace("nn.ReLU()", "nn.Tanh()"))
    assert TrainConfig(model=f"{factory_file}:make", data=npz).fingerprint() != before


@pytest.mark.parametrize(("argv", "message"), [
    (["--hf", "nosuchtype"], "unknown Hugging Face model type 'nosuchtype'"),
    (["--hf", "llama", "--set", "hiden_size=32"], "unknown llama config field(s) ['hiden_size']"),
    (["--hf", "vit"], "has no causal-LM head"),
    (["--hf", "llama", "--model", "transformer"], "either --hf TYPE or --model NAME"),
    (["--model", "nosuch.py:make"], "file nosuch.py does not exist"),
    (["--model", "no_such_pkg_xyz.mod:make"], "cannot import 'no_such_pkg_xyz.mod'"),
    (["--model", "FILE:nothing"], "has no attribute 'nothing'"),
    (["--model", "FILE:make", "--set", "widht=3"], "takes no option(s) ['widht']"),
    (["--model", "FILE:peek", "--data", "stdlib", "--set", "seq_len=8"], "is not causal"),
    (["--model", "no-colon"], "training option model must be one of"),
])
def test_bad_model_input_is_one_line(argv, message, factory_file, capsys):
    argv = [a.replace("FILE", str(factory_file)) for a in argv]
    assert main(["train", *argv, "--steps", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_help_lists_every_optimizer_and_the_rule_exponents(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in ("sgd", "adam", "adamw", "muon", "--alpha", "--gamma", "--hf", "--n-heads", "--no-train-io",
                 "pkg.module:factory"):
        assert word in text, word


def test_alpha_and_gamma_make_a_custom_rule(npz, tmp_path, capsys):
    s, _ = _summary(tmp_path, capsys, ["train", "--data", npz, "--width", "8", "--depth", "2", "--steps", "2",
                                       "--batch-size", "32", "--alpha", "0.75", "--gamma", "0.5", "-q"])
    assert (s["config"]["alpha"], s["config"]["gamma"]) == (0.75, 0.5)
    cfg = TrainConfig.from_dict(s["config"])
    assert (cfg.resolved_rule.name, cfg.resolved_rule.alpha, cfg.resolved_rule.gamma) == ("custom", 0.75, 0.5)


@pytest.mark.parametrize(("old", "new"), [
    (["--heads", "2"], ["--n-heads", "2"]),
    (["--set", "heads=2"], ["--set", "n_heads=2"]),
    (["--freeze-io"], ["--no-train-io"]),
    (["--set", "freeze_io=true"], ["--set", "train_io=false"]),
])
def test_an_old_spelling_still_works_with_a_one_line_note(old, new, tmp_path, capsys):
    base = ["train", "--model", "transformer", "--width", "8", "--depth", "1", *TEXT]
    s_old, err_old = _summary(tmp_path / "old", capsys, [*base, *old])
    s_new, err_new = _summary(tmp_path / "new", capsys, [*base, *new])
    assert s_old["config"] == s_new["config"] and s_old["step0_loss"] == s_new["step0_loss"]
    notes = [line for line in err_old.splitlines() if "deprecated" in line]
    assert len(notes) == 1 and new[-1].split("=")[0] in notes[0]
    assert "deprecated" not in err_new
