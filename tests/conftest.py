import gc

# Until the test modules are collected, the cyclic GC is off: importing torch, transformers, matplotlib and the
# test modules creates ~800k objects that all live to the end, and the collections it triggered on the way found
# nothing to free (~1 s of each worker's CPU). It is back on, and what was loaded frozen, once collection ends.
gc.disable()

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    try:
        return (yield)
    finally:
        gc.enable()
        gc.collect()
        gc.freeze()


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
