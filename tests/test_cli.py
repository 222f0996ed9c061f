"""The command line itself: version, plain-text help with defaults, lazy imports, exit codes, progress."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeplimit.cli import COMMANDS, build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}
OWN = ("train", "sde", "signal", "feature-diversity", "reproduce")


def _sub(command):
    return build_parser(command).subparsers[command]


def test_version(capsys):
    import deeplimit

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"deeplimit {deeplimit.__version__}"


def test_top_level_help_imports_no_heavy_library():
    """``deeplimit --help`` registers no sub-command module, so torch, pandas and optuna stay unloaded
    (measured: about 0.08 s instead of 3.3 s; see the report of this change)."""
    code = ("import sys; from deeplimit.cli import main; rc = main(['--help']); "
            "print(sorted(m for m in ('torch', 'pandas', 'optuna', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", OWN)
def test_every_flag_has_help_and_the_help_is_plain_text(command, capsys):
    parser = _sub(command)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "::" not in text and ":func:" not in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_of_every_command_is_plain_text_with_defaults(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "::" not in text
    if command in OWN:
        assert "(default: " in text


def test_defaults_are_shown():
    text = _sub("train").format_help()
    assert "--steps STEPS" in text and "(default: 400)" in text and "(default: depth_mup)" in text
    text = " ".join(_sub("feature-diversity").format_help().split())
    assert "(default: 0 100 300)" in text
    assert "--seed SEED seed of the initialization and the batch order (≥ 0) (default: 0)" in text


def test_usage_errors_are_one_line_with_exit_code_2(capsys):
    assert main(["train", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unrecognized arguments: --no-such-flag" in err
    assert "deeplimit train --help" in err
    assert main(["no-such-command"]) == 2
    assert main([]) == 2


def test_no_hint_names_a_flag_that_does_not_exist():
    """Error texts once told ``train`` users to pass --corpus, which no command has."""
    flags = {opt for name in COMMANDS for a in _sub(name)._actions for opt in a.option_strings}
    assert "--corpus" not in flags
    for path in Path(SRC, "deeplimit").rglob("*.py"):
        assert "--corpus" not in path.read_text(), path


# Progress (step, loss, rate, ETA) on stderr while `deeplimit train` runs: tests/test_interrupt.py reads it from
# its real process before it sends Ctrl-C.


def test_quiet_train_prints_only_parseable_json(tmp_path):
    r = np.random.default_rng(0)
    x = r.normal(size=(100, 4)).astype("float32")
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    done = subprocess.run([sys.executable, "-m", "deeplimit", "train", "--data", str(tmp_path / "d.npz"), "--width",
                           "8", "--depth", "2", "--steps", "5", "--batch-size", "16", "--quiet", "--out",
                           str(tmp_path / "o")], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    summary = json.loads(done.stdout)
    assert summary["steps"] == 5
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["config"]["width"] == 8


def test_rst_docstrings_become_plain_text_and_example_blocks_stay_verbatim():
    from deeplimit.cli import Parser

    doc = ("``deeplimit x``: see :func:`deeplimit.train.train`.\n\nTypical session::\n\n"
           "    deeplimit x --a 1\n    deeplimit x --b 2\n")
    text = Parser(prog="deeplimit x", description=doc).format_help()
    assert "deeplimit x: see deeplimit.train.train." in text
    assert "Typical session:\n\n    deeplimit x --a 1\n    deeplimit x --b 2" in text
