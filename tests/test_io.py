"""Atomic writes and safe loads (deeplimit.io): torn files never appear, crafted checkpoints run no code."""

import os

import pytest
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_torch_save, atomic_write, atomic_write_json, ensure_dir, read_json, safe_torch_load


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_json_round_trip_and_bad_json(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "x.json", {"a": 1})
    assert read_json(p) == {"a": 1}
    for name, blob in [("binary.json", b"\x00\xff"), ("empty.json", b""), ("torn.json", b'{"a": ')]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DeeplimitError, match="not valid JSON"):
            read_json(tmp_path / name)


def test_torch_load_refuses_code_and_names_torn_files(tmp_path):
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert safe_torch_load(tmp_path / "c.pt")["w"].sum() == 2
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DeeplimitError, match="weights_only"):
        safe_torch_load(tmp_path / "evil.pt")
    (tmp_path / "t.pt").write_bytes(b"PK\x03\x04trunc")
    with pytest.raises(DeeplimitError, match="cannot be read"):
        safe_torch_load(tmp_path / "t.pt")


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_write(tmp_path / "keep.txt") as fh:
        fh.write("half")
        _ = 1 / 0
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert not [q for q in os.listdir(tmp_path) if q.endswith(".tmp")]


def test_ensure_dir_errors(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DeeplimitError, match="is a file"):
        ensure_dir(tmp_path / "f")
    with pytest.raises(DeeplimitError, match="cannot"):
        ensure_dir(tmp_path / "f" / "sub")


def test_permissions_follow_the_umask_unless_private(tmp_path):
    from deeplimit.io import atomic_write_text

    old = os.umask(0o022)
    try:
        assert os.stat(atomic_write_text(tmp_path / "shared.txt", "x")).st_mode & 0o777 == 0o644
        assert os.stat(atomic_write_text(tmp_path / "secret.txt", "x", private=True)).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


WRITER = """
import sys
from deeplimit.io import atomic_write
with atomic_write(sys.argv[1], "w") as fh:
    fh.write(sys.argv[2])
    fh.flush()
    print("writing", flush=True)
    sys.stdin.readline()  # hold the temporary file until told to finish
"""


def test_a_killed_writers_temporary_file_is_cleaned_and_a_live_ones_kept(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "ckpt.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def writer(text):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), text], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "writing"
        return proc

    killed = writer("torn")
    killed.send_signal(signal.SIGKILL)  # killed between writing its temporary file and renaming it
    killed.wait()
    live = writer("live")
    try:
        temps = sorted(tmp_path.glob(".ckpt.pt.*.tmp"))
        assert len(temps) == 2
        for tmp in temps:
            os.utime(tmp, (1, 1))  # old enough not to be a file its writer has not locked yet
        atomic_write_json(target, {"next": "start"})  # the next write of the same file cleans up
        assert len(list(tmp_path.glob(".ckpt.pt.*.tmp"))) == 1  # the live writer's file is kept ...
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.wait(timeout=30) == 0
        assert target.read_text() == "live"  # ... and its rename still succeeds
        assert not list(tmp_path.glob(".ckpt.pt.*.tmp"))
    finally:
        if live.poll() is None:
            live.kill()
