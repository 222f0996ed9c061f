"""The examples under examples/ run (in their reduced --quick form) as a user would run them.

One example runs in a fresh interpreter (``python examples/simulate_sde.py --quick``): that path is the user's,
down to the imports a script must make itself. The others run their file as ``__main__`` in this process, with
the same argv and working directory: each file executes as written, in a namespace of its own, and a second
interpreter would only add its imports (~2.5 s of torch and deeplimit each, ~8 s of the file's CPU time). Their
sweep workers are still real processes (transfer_sweep.py launches two).
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_an_example_runs_in_a_fresh_interpreter(tmp_path):
    args = [sys.executable, str(ROOT / "examples" / "simulate_sde.py"), "--quick"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip()


@pytest.mark.parametrize("script,extra", [
    ("parametrize_your_model.py", []),
    ("transfer_sweep.py", ["--out"]),
    ("hf_llama_transfer.py", ["--out"]),
])
def test_example_runs(script, extra, tmp_path, monkeypatch, capsys):
    path = ROOT / "examples" / script
    monkeypatch.setattr(sys, "argv", [str(path), "--quick"] + ([*extra, str(tmp_path)] if extra else []))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the sweep workers a script launches import this tree
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:  # a script that ends with sys.exit(0) passed; any other code failed
        assert exc.code in (0, None), exc
    assert capsys.readouterr().out.strip()
