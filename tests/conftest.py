import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # Two OpenMP threads on the 2-core target VM are erratic; every test runs on one.
    torch.set_num_threads(1)
    yield
