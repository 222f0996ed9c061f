"""The examples under examples/ run (in their reduced --quick form) exactly as a user would run them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.parametrize("script,extra", [
    ("parametrize_your_model.py", []),
    ("simulate_sde.py", []),
    ("transfer_sweep.py", ["--out"]),
    ("hf_llama_transfer.py", ["--out"]),
])
def test_example_runs(script, extra, tmp_path):
    args = [sys.executable, str(ROOT / "examples" / script), "--quick"] + ([*extra, str(tmp_path)] if extra else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip()
