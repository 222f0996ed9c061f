import gc

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _freeze_survivors():
    # What a worker has loaded by the end of a test file (torch, transformers, matplotlib, every test module,
    # lazily imported families) lives until the end, yet each full collection of the cyclic GC walks all of it
    # again. After each file (its own fixtures released first) the garbage is collected once and what survives is
    # frozen: left out of every later collection, still freed as usual when its last reference goes.
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _one_thread():
    # Two OpenMP threads on the 2-core target VM are erratic; every test runs on one.
    torch.set_num_threads(1)
    yield
