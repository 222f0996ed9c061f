"""Ctrl-C of ``deeplimit train --run-dir``: progress on stderr while it runs, a clean stop with a resume hint, then a
resume to the same result."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deeplimit.cli import main
from deeplimit.io import safe_torch_load

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _sigint_as_a_terminal_sends_it() -> None:
    """A suite started in the background (``make test &``) ignores SIGINT, and children inherit the ignore: the
    child must see Ctrl-C as a user at a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly_and_the_resumed_run_is_bit_identical(tmp_path, capsys):
    r = np.random.default_rng(0)
    x = r.normal(size=(600, 12)).astype("float32")
    data = tmp_path / "tiny.npz"
    np.savez(data, x=x, y=(x[:, 0] + x[:, 1] > 0).astype("int64"))
    args = ["train", "--data", str(data), "--width", "16", "--depth", "2", "--steps", "1500", "--batch-size", "32",
            "--set", "checkpoint_every=25"]
    run_dir = tmp_path / "R"
    child = subprocess.Popen([sys.executable, "-m", "deeplimit", *args, "--run-dir", str(run_dir)],
                             env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=_sigint_as_a_terminal_sends_it)
    ckpt = run_dir / "ckpt.pt"
    # Progress (step, loss, rate, ETA) reaches stderr while the run is still going: read it before the interrupt.
    # (This run is also the suite's check of the progress line; a process of its own only repeated the imports.)
    fd = child.stderr.fileno()
    os.set_blocking(fd, False)
    seen, deadline = b"", time.time() + 120
    while not (ckpt.exists() and b"loss" in seen) and child.poll() is None and time.time() < deadline:
        try:
            seen += os.read(fd, 1 << 16)
        except BlockingIOError:
            pass
        time.sleep(0.02)
    assert child.poll() is None, f"the run ended before it could be interrupted: {seen[-300:]!r}"
    line = [chunk for chunk in seen.decode(errors="replace").replace("\r", "\n").splitlines() if "loss" in chunk][-1]
    # count, rate, loss, elapsed<remaining (ETA)
    assert "/1500" in line and "step/s" in line and "loss" in line and "<" in line, line
    os.set_blocking(fd, True)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and out == ""
    assert "interrupted at step" in err and "checkpoint saved in" in err and "again to resume" in err
    stopped = safe_torch_load(ckpt)["extra"]
    assert 0 < stopped["step"] < 1500 and not stopped["result"]

    # resume in-process (the same command), then an uninterrupted reference run of the same options except the
    # checkpoint frequency, which is not part of a run's result (tests/test_train.py): its 60 saves cost the
    # reference ~2 s, and a reference that checkpoints rarely also shows the frequent saves change nothing
    assert main([*args, "--run-dir", str(run_dir), "-q"]) == 0
    resumed = safe_torch_load(ckpt)["extra"]
    assert main([*args[:-2], "--run-dir", str(tmp_path / "ref"), "-q"]) == 0
    ref = safe_torch_load(tmp_path / "ref" / "ckpt.pt")["extra"]
    assert len(resumed["losses"]) == 1500
    assert torch.equal(resumed["losses"], ref["losses"])  # bit-identical, step by step
    assert resumed["rows"] == ref["rows"]
    assert '"resumed_from": ' + str(stopped["step"]) in capsys.readouterr().out
