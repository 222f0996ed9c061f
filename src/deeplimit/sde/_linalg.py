"""Batched GEMM and Cholesky for the SDE hot loop, on CPU through NumPy's OpenBLAS and SciPy's LAPACK.

Why: the PyTorch CPU wheels link MKL, whose float64 kernels run a slow path on the AMD EPYC machines we
run on. Measured in one process, one thread (``benchmarks/bench_sde.py`` prints the same comparison):
``np.matmul`` is 1.3–2.7× faster than ``torch.bmm`` for m = 8…256, and a per-matrix LAPACK ``potrf`` is
~2× faster than ``torch.linalg.cholesky_ex`` for m ≥ 32. Tensors are shared with NumPy without copies.

``DEEPLIMIT_SDE_BLAS=torch`` switches back to the torch kernels (e.g. on an Intel machine where MKL wins);
tensors that are not plain CPU float32/float64 tensors always use torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy.linalg.lapack import dpotrf, spotrf
from torch import Tensor

# per-matrix LAPACK calls pay ~2 µs of Python each: below this size the batched torch kernel is faster
_CHOLESKY_MIN_M = 32


def _numpy_ok(*ts: Tensor) -> bool:
    if os.environ.get("DEEPLIMIT_SDE_BLAS", "numpy") == "torch":
        return False
    return all(
        t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and not t.requires_grad for t in ts
    )


def matmul(A: Tensor, B: Tensor, out: Tensor | None = None) -> Tensor:
    """``A @ B`` for batches ``(c, p, q) @ (c, q, r)``; ``out`` (contiguous ``(c, p, r)``) is written in place."""
    if A.dtype == B.dtype and _numpy_ok(A, B) and (out is None or out.is_contiguous()):
        # overflow in a blowing-up path is handled by the solver's stopping rule, as with torch (no warning)
        with np.errstate(all="ignore"):
            if out is None:
                return torch.from_numpy(np.matmul(A.numpy(), B.numpy()))
            np.matmul(A.numpy(), B.numpy(), out=out.numpy())
        return out
    return torch.matmul(A, B, out=out)


def cholesky_ex(V: Tensor) -> tuple[Tensor, Tensor]:
    """Lower Cholesky factors of ``V (..., m, m)`` and LAPACK ``info`` codes (0 = success), like
    ``torch.linalg.cholesky_ex``. Failed matrices hold a partial factor: callers must replace them."""
    m = V.shape[-1]
    if m < _CHOLESKY_MIN_M or not _numpy_ok(V):
        return torch.linalg.cholesky_ex(V)
    L = V.reshape(-1, m, m).clone(memory_format=torch.contiguous_format)
    Ln = L.numpy()
    potrf = dpotrf if V.dtype == torch.float64 else spotrf
    info = np.zeros(Ln.shape[0], dtype=np.int64)
    for i in range(Ln.shape[0]):
        # V is symmetric, so the C-ordered matrix read as Fortran is V itself; the upper factor U (UᵀU = V)
        # written in Fortran order reads back in C order as L = Uᵀ, in place (overwrite_a on an F view)
        _, info[i] = potrf(Ln[i].T, lower=0, clean=1, overwrite_a=1)
    return L.reshape(V.shape), torch.from_numpy(info).reshape(V.shape[:-2])


_CONTROLLER = None


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run NumPy's and SciPy's BLAS on ``n`` threads (torch's own setting), so ``torch.set_num_threads(1)``
    means one core for the whole solver, not one for torch and all of them for OpenBLAS."""
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn and in requirements.txt
        yield
        return
    if _CONTROLLER is None:
        # scanning the loaded libraries costs ~3 ms: once per process (numpy and scipy are loaded by now)
        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=n, user_api="blas"):
        yield
