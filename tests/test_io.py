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
