"""Image-classification data kept in memory as tensors: Fashion-MNIST, sklearn digits, any ``.npz``.

Every loader returns ``(x, y)`` with ``x`` float32 ``(N, features)`` standardised by the *training* split's
mean and std (one scalar each, so the test split sees the same affine map) and ``y`` int64 ``(N,)``.
:func:`batches` walks a split in a per-epoch permutation that depends only on ``(seed, epoch)``: every
point of a learning-rate grid sees the same minibatches (common random numbers), so curves differ only by
the LR.
"""

from __future__ import annotations

import functools
import gzip
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError, check_positive

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
SPLITS = ("train", "test")

Split = Literal["train", "test"]


def _check_split(split: str, choices: tuple[str, ...] = SPLITS) -> None:
    if split not in choices:
        raise DeeplimitError(f"unknown split {split!r}; valid splits: {', '.join(choices)}")


# ----------------------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files from the Debian package dataset-fashion-mnist)


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where the IDX files are: ``data_dir``, else ``$DEEPLIMIT_FASHION_MNIST_DIR``, else the Debian path."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("DEEPLIMIT_FASHION_MNIST_DIR")
    return Path(env) if env else FASHION_MNIST_DIR


def _read_idx(path: Path, magic: int, header_bytes: int) -> np.ndarray:
    """Raw uint8 payload of an IDX gz file after checking its magic number (big-endian int32).

    Cached per process on the file's size and modification time as well as its path, so a file replaced
    in place (other data under the same name) is read again, never served from the cache.
    """
    st = path.stat()
    return _read_idx_cached(path, magic, header_bytes, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: Path, magic: int, header_bytes: int, size: int, mtime_ns: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DeeplimitError(f"{path} is not an IDX file of the expected kind (magic {found}, expected "
                             f"{magic}); re-install it with "
                             "`sudo apt-get install --reinstall dataset-fashion-mnist`")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)


def _read_fashion_mnist_raw(root: Path, split: Split) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = (root / name for name in FASHION_MNIST_FILES[split])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DeeplimitError(f"Fashion-MNIST not found (missing {', '.join(missing)}); install it with "
                             "`sudo apt-get install dataset-fashion-mnist` (or `make setup`), or pass "
                             "--data-dir / set DEEPLIMIT_FASHION_MNIST_DIR to a folder with the four IDX "
                             ".gz files")
    # 16-byte image header: magic, count, rows, cols
    images = _read_idx(image_file, IDX_IMAGES_MAGIC, 16).reshape(-1, 28 * 28)
    labels = _read_idx(label_file, IDX_LABELS_MAGIC, 8)  # 8-byte header: magic, n
    if len(images) != len(labels):
        raise DeeplimitError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels; "
                             "the files are corrupt, re-install dataset-fashion-mnist")
    return images, labels


def _standardise(x: np.ndarray, mean: float, std: float) -> Tensor:
    return torch.from_numpy((x.astype(np.float32) - np.float32(mean)) / np.float32(std))


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, split: Split = "train"
                       ) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST: ``x`` float32 ``(N, 784)``, ``y`` int64 ``(N,)``; N = 60000 (train), 10000 (test).

    Pixels are standardised with the training set's mean and std for both splits.
    """
    _check_split(split)
    root = fashion_mnist_dir(data_dir)
    train_images, _ = _read_fashion_mnist_raw(root, "train")
    mean, std = _moments(train_images)
    images, labels = _read_fashion_mnist_raw(root, split)
    return _standardise(images, mean, std), torch.from_numpy(labels.astype(np.int64))


_CHUNK = 1 << 20  # pixels per bincount in _moments


def _moments(x: np.ndarray) -> tuple[float, float]:
    if x.dtype == np.uint8:
        # From the 256-bin histogram: the same mean and std (Fashion-MNIST's are bit-identical) in a twentieth of
        # the time of a float64 copy of 47M pixels, which every sweep worker would otherwise pay on its first run.
        # Counted in chunks: bincount casts its input to int64, and one 376 MB cast of all 47M pixels costs a
        # fresh process ~2 s of page faults; chunks of 1M reuse one small buffer (same counts, ten times faster).
        flat = x.ravel()
        counts = np.zeros(256, dtype=np.int64)
        for start in range(0, flat.size, _CHUNK):
            counts += np.bincount(flat[start:start + _CHUNK], minlength=256)
        counts = counts.astype(np.float64)
        values = np.arange(counts.size, dtype=np.float64)
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        std = float(np.sqrt((counts * (values - mean) ** 2).sum() / n))
    else:
        x64 = x.astype(np.float64)
        mean, std = float(x64.mean()), float(x64.std())
    return mean, (std if std > 0 else 1.0)


# ----------------------------------------------------------------------------------------------------------
# Generic .npz sets and sklearn digits


def _validate_xy(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    if y.ndim != 1:
        raise DeeplimitError(f"{source}: labels y must be one-dimensional (N,), got shape {y.shape}; "
                             "store class indices, not one-hot vectors (use y.argmax(1))")
    if x.ndim < 2:
        raise DeeplimitError(f"{source}: inputs x must have shape (N, ...) with N examples, got {x.shape}")
    if len(x) != len(y):
        raise DeeplimitError(f"{source}: x has {len(x)} examples but y has {len(y)}; save matching arrays")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DeeplimitError(f"{source}: labels y must be integer class indices, got dtype {y.dtype}; "
                                 "save them with y.astype(np.int64)")
    if len(y) and y.min() < 0:
        raise DeeplimitError(f"{source}: labels must be non-negative class indices, found {int(y.min())}")
    if not np.issubdtype(x.dtype, np.number):
        raise DeeplimitError(f"{source}: inputs x must be numeric, got dtype {x.dtype}")
    if len(x) == 0 or x[0].size == 0:
        raise DeeplimitError(f"{source}: no data (x has shape {x.shape}); save at least one example with "
                             "one feature")
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DeeplimitError(f"{source}: x holds {bad} NaN or infinite value(s); clean or impute them "
                                 "before training (e.g. np.nan_to_num)")
    return x.reshape(len(x), -1), y.astype(np.int64)


def _train_test_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise DeeplimitError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _split_and_standardise(x: np.ndarray, y: np.ndarray, split: str, test_fraction: float, seed: int
                           ) -> tuple[Tensor, Tensor]:
    _check_split(split, (*SPLITS, "all"))
    train_idx, test_idx = _train_test_indices(len(x), test_fraction, seed)
    mean, std = _moments(x[train_idx])
    idx = {"train": train_idx, "test": test_idx, "all": np.arange(len(x))}[split]
    return _standardise(x[idx], mean, std), torch.from_numpy(y[idx])


def load_npz(path: str | os.PathLike, split: Literal["train", "test", "all"] = "all", *,
             test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A generic image-classification set from an ``.npz`` with arrays ``x`` ``(N, ...)`` and ``y`` ``(N,)``.

    Returns ``x`` float32 ``(N', prod(...))`` standardised with the training part's mean and std and ``y``
    int64. ``split="train"``/``"test"`` take a seeded ``1 − test_fraction`` / ``test_fraction`` partition;
    ``"all"`` returns every example (standardised with the same training statistics).
    """
    path = Path(path)
    if not path.is_file():
        raise DeeplimitError(f"no such dataset file {path}; save one with np.savez(path, x=images, y=labels)")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):  # a .npy file: one array, which np.load returns as is
            raise DeeplimitError(f"{path} holds a single array, not an .npz archive with x and y; save it "
                                 "with np.savez(path, x=images, y=labels)")
        with data:
            missing = [key for key in ("x", "y") if key not in data.files]
            if missing:
                raise DeeplimitError(f"{path} lacks array(s) {missing} (found {data.files}); save it with "
                                     "np.savez(path, x=images, y=labels)")
            x, y = data["x"], data["y"]
    except DeeplimitError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        why = str(err).splitlines()[0] if str(err) else "empty or truncated"
        raise DeeplimitError(f"cannot read {path} as .npz ({err.__class__.__name__}: {why}); it is empty, "
                             "truncated or not an .npz file — save it with np.savez(path, x=..., y=...)") from None
    x, y = _validate_xy(x, y, str(path))
    return _split_and_standardise(x, y, split, test_fraction, seed)


def load_digits(split: Literal["train", "test", "all"] = "train", *, test_fraction: float = 0.2,
                seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8×8 digits (1797 examples, 10 classes): ``x`` float32 ``(N, 64)``, ``y`` int64."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise DeeplimitError("the 'digits' dataset needs scikit-learn: pip install scikit-learn, or use "
                             "'fashion-mnist' or a .npz file") from err
    bunch = sk_load_digits()
    x, y = _validate_xy(np.asarray(bunch.data), np.asarray(bunch.target), "digits")
    return _split_and_standardise(x, y, split, test_fraction, seed)


IMAGE_DATASETS = ("fashion-mnist", "digits")


def load_image_dataset(name_or_path: str | os.PathLike, split: Split = "train", *,
                       data_dir: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Dispatch: ``"fashion-mnist"``, ``"digits"`` or a path to an ``.npz`` file → ``(x, y)`` tensors."""
    _check_split(split)
    name = str(name_or_path)
    if name in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return load_fashion_mnist(data_dir, split)
    if name == "digits":
        return load_digits(split)
    if name.endswith(".npz") or Path(name).is_file():
        return load_npz(name, split)
    raise DeeplimitError(f"unknown image dataset {name!r}; use one of {', '.join(IMAGE_DATASETS)} or a path "
                         "to an .npz file with arrays x and y")


# ----------------------------------------------------------------------------------------------------------
# Minibatches with common random numbers


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The example order of one epoch: a function of ``(seed, epoch, n)`` only (no global RNG state)."""
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))


def batches(x: Tensor, y: Tensor, batch_size: int, seed: int, epoch: int = 0, *, drop_last: bool = True
            ) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x[idx], y[idx])`` minibatches of one epoch in the order :func:`epoch_permutation` gives.

    The same ``(seed, epoch)`` gives the same batches whatever else the run does, so runs of an LR grid share
    their data order. ``drop_last`` drops the final short batch (every step sees ``batch_size`` examples).
    """
    check_positive("batch_size", batch_size, integer=True)
    if len(x) != len(y):
        raise DeeplimitError(f"x has {len(x)} examples but y has {len(y)}; pass matching tensors")
    if drop_last and batch_size > len(x):
        raise DeeplimitError(f"batch_size={batch_size} exceeds the {len(x)} examples; lower it or pass "
                             "drop_last=False")
    order = epoch_permutation(len(x), seed, epoch)
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
