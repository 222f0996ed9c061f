"""Batched Euler–Maruyama for the covariance SDEs with matrix-free noise and stopping (spec §5.2–§5.4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError, warn
from deeplimit.sde._linalg import blas_threads
from deeplimit.sde.coefficients import Scenario
from deeplimit.sde.noise import matrix_free_noise, psd_sqrt
from deeplimit.sde.step import em_step

# Stop reasons stored per path (spec §3.8).
RUNNING, EXIT_LOW, EXIT_HIGH, EXIT_NONFINITE = 0, 1, 2, 3
REASONS = {RUNNING: "none", EXIT_LOW: "low", EXIT_HIGH: "high", EXIT_NONFINITE: "nonfinite"}


class StoppedPaths:
    """Per-path stopping bookkeeping shared by :class:`Solution` and finite-network samples.

    Subclasses carry ``terminal (B, m, m)`` and ``reason (B,)`` (codes of :data:`REASONS`).
    """

    terminal: Tensor
    reason: Tensor

    @property
    def stopped(self) -> Tensor:
        """``(B,)`` bool: the path left the band before the end."""
        return self.reason != RUNNING

    @property
    def exit_fraction(self) -> float:
        return float(self.stopped.double().mean())

    def survivors(self) -> Tensor:
        """Terminal states of the paths that never left the band, ``(B_alive, m, m)``."""
        return self.terminal[~self.stopped]


@dataclass
class Solution(StoppedPaths):
    """Result of :func:`solve` (``B`` paths, ``S`` saved times).

    * ``times (S,)`` and ``V (S, B, m, m)`` saved states (``None`` when nothing but the end was asked);
    * ``terminal (B, m, m)``: state at ``T`` or, for stopped paths, the last in-band state (time ``t_stop``);
    * ``t_stop (B,)``: ``t*`` of §3.8, ``T`` for paths that never left the band;
    * ``reason (B,)``: 0 none, 1 low (eigmin < lo), 2 high (eigmax > hi), 3 non-finite (see ``REASONS``);
    * ``clipped (B,)``: number of eigenvalues clipped to 0 by the robust square root (§5.3), summed over
      steps.
    Saved states of a stopped path stay frozen at its last in-band value.
    """

    times: Tensor
    V: Tensor | None
    terminal: Tensor
    t_stop: Tensor
    reason: Tensor
    clipped: Tensor
    dt: float
    steps: int




def path_chunk(m: int) -> int:
    """Paths advanced together in one step: about 64K matrix entries (512 KiB in float64).

    Every temporary of a step (``L``, ``G``, the drift, the noise products) then stays in a core's L2 cache;
    one big batch streams each of them through memory and is ~5× slower for the elementwise drift at
    m = 128 (measured). Small m still gets large batches, so per-op dispatch stays amortised.
    """
    return max(1, 65536 // (m * m))


class _Normals:
    """Standard normal draws for the noise, consumed in path order from one seeded stream.

    float64 draws come from NumPy's ziggurat (SFC64 bit generator, seeded from the torch generator), which
    is exact in float64 and ~2.7× faster on CPU than ``torch.randn(dtype=float64)``; float32 draws use
    ``torch.randn`` (vectorised Box–Muller, faster still).
    """

    def __init__(self, gen: torch.Generator, dtype: torch.dtype) -> None:
        self.gen, self.dtype = gen, dtype
        self.rng = None
        if dtype == torch.float64:
            self.rng = np.random.Generator(np.random.SFC64(int(torch.randint(0, 2**62, (1,), generator=gen))))

    def draw(self, shape: tuple[int, ...]) -> Tensor:
        if self.rng is not None:
            return torch.from_numpy(self.rng.standard_normal(shape))
        return torch.randn(shape, generator=self.gen, dtype=self.dtype)


def check_V0(V0: Tensor, *, name: str = "V0") -> None:
    """Raise :class:`DeeplimitError` unless ``V0 (..., m, m)`` is a finite symmetric PSD matrix with m ≥ 2.

    The message offers the nearest PSD matrix (eigenvalues clipped at 0) when ``V0`` is symmetric but
    indefinite.
    """
    if V0.ndim < 2 or V0.shape[-1] != V0.shape[-2]:
        raise DeeplimitError(
            f"{name} must be a square (m, m) or (paths, m, m) matrix, got shape {tuple(V0.shape)}"
        )
    m = V0.shape[-1]
    if m < 2:
        raise DeeplimitError(
            f"{name} has m = {m} tokens; covariance SDEs need m ≥ 2 (pass at least two tokens)"
        )
    if not bool(torch.isfinite(V0).all()):
        raise DeeplimitError(f"{name} has non-finite entries; pass a finite covariance matrix")
    V0d = V0.double()
    scale = float(V0d.abs().max()) or 1.0
    if float((V0d - V0d.mT).abs().max()) > 1e-10 * scale:
        raise DeeplimitError(f"{name} is not symmetric; pass (V0 + V0.T)/2 or build it as X Xᵀ/n")
    w, Q = torch.linalg.eigh(V0d)
    if float(w.min()) < -1e-10 * scale:
        near = (Q * w.clamp_min(0.0).unsqueeze(-2)) @ Q.mT
        raise DeeplimitError(
            f"{name} is not positive semi-definite (smallest eigenvalue {float(w.min()):.3g}); "
            f"the nearest PSD matrix (eigenvalues clipped at 0) is {near.tolist()}; "
            "use deeplimit.sde.nearest_psd(V0)"
        )


def nearest_psd(V: Tensor) -> Tensor:
    """Nearest PSD matrix in Frobenius norm: symmetrise, then clip eigenvalues at 0. ``(..., m, m)``."""
    S = 0.5 * (V + V.mT)
    w, Q = torch.linalg.eigh(S)
    return (Q * w.clamp_min(0.0).unsqueeze(-2)) @ Q.mT


def band_exit(V: Tensor, band: tuple[float, float] | None) -> Tensor:
    """Exit code per matrix of ``V (B, m, m)`` for the band of §3.8: 0 in band, 1 low, 2 high, 3 non-finite.

    ``band=None`` only checks finiteness, through the sum of each matrix (one pass instead of two: NaN and
    ±inf propagate through it; a sum that overflows means entries near the dtype's maximum, a path that
    has blown up anyway). Otherwise two Cholesky tests replace an eigendecomposition:
    ``eigmin(V) < lo`` iff ``V − lo·I`` is not positive definite, and ``eigmax(V) > hi`` iff ``hi·I − V`` is
    not (two ``m³/3`` factorisations instead of a symmetric eigensolver, ~10× cheaper at m = 128).
    """
    finite = torch.isfinite(V.sum(dim=(-2, -1)))
    code = torch.where(finite, 0, EXIT_NONFINITE)
    if band is None:
        return code
    lo, hi = band
    Vs = torch.where(finite[:, None, None], V, torch.zeros_like(V))
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    low = torch.linalg.cholesky_ex(Vs - lo * eye).info != 0
    high = torch.linalg.cholesky_ex(hi * eye - Vs).info != 0
    code = torch.where(finite & low, EXIT_LOW, code)
    code = torch.where(finite & high, EXIT_HIGH, code)
    return code


def k_lin_h_m(scenario: Scenario, h: float, m: int) -> float:
    """``κ_lin · h · m``: a quarter of the squared relative spectral size of one Euler noise increment."""
    return scenario.kappa_lin * h * m


def step_count(T: float, dt: float) -> tuple[int, float]:
    """Number of steps ``ceil(T/dt)`` and the step ``h = T/steps`` actually used (``h ≤ dt``)."""
    steps = max(1, math.ceil(T / dt - 1e-9))
    return steps, T / steps


def solve(
    scenario: Scenario,
    V0: Tensor,
    T: float,
    dt: float | None = None,
    paths: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    save_every: int | None = None,
    ts: Sequence[float] | None = None,
    band: tuple[float, float] | None = None,
    scheme: str = "euler",
    generator: torch.Generator | None = None,
    noise_dtype: torch.dtype | None = None,
) -> Solution:
    """Simulate ``dV = b dt + (κ_lin Σ_lin + κ_att 𝒜)^{1/2} dB`` by batched Euler–Maruyama (spec §5.2).

    Args:
        scenario: coefficient-table row (§3.6).
        V0: ``(m, m)`` start shared by all paths or ``(paths, m, m)``; must be symmetric PSD, m ≥ 2.
        T: terminal time (``d/n``). dt: step bound, default ``min(0.01, 0.008/κ_lin)`` (§5.4); the step
        used is
            ``T/ceil(T/dt)``.
        paths, seed, dtype: batch size, seed of a private ``torch.Generator`` (or pass ``generator``),
        float32/64.
        save_every: also save every k-th step; ts: or save at the grid times nearest to these times.
        band: stopping band ``(lo, hi)`` on eigenvalues (§3.8, e.g. ``(1e-4, 1e4)``); ``None`` (default for
            comparisons) stops only on non-finite values, so Euler overshoot below 0 is handled by the robust
            square root (§5.3) and counted in ``clipped`` instead of removing the path.
        noise_dtype: dtype in which the standard normals ``G`` are drawn (default ``dtype``). float64 draws
            use NumPy's exact ziggurat seeded from ``seed``/``generator``; ``torch.float32`` draws are about 2×
            faster again and are then cast: the law changes by float32 rounding (~1e-7 relative) and a tail
            cut at ≈ 5.8σ (torch's Box–Muller on 24-bit uniforms; ~1e-8 of the draws), both far below
            Euler's O(h) bias. Opt-in.
        scheme: ``"euler"`` or ``"tamed"`` (drift ``b/(1 + h‖b‖_F)``, §5.4 option for exploding cubic drifts).

    Both noise matrices ``G1, G2`` are drawn every step (even when ``κ_att = 0``) so random streams line up
    across scenarios. Stopped paths are frozen at their last in-band state; statistics should use
    :meth:`Solution.survivors` and report :attr:`Solution.exit_fraction`.
    """
    if not T > 0:
        raise DeeplimitError(f"T must be positive, got {T!r}; T = d/n (depth over width)")
    if dtype not in (torch.float32, torch.float64):
        raise DeeplimitError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if scheme not in ("euler", "tamed"):
        raise DeeplimitError(f"unknown scheme {scheme!r}; use 'euler' or 'tamed'")
    if paths < 1:
        raise DeeplimitError(f"paths must be ≥ 1, got {paths!r}")
    h0 = scenario.default_dt() if dt is None else dt
    if not h0 > 0:
        raise DeeplimitError(f"dt must be positive, got {dt!r}")
    if h0 > T * (1 + 1e-12):
        raise DeeplimitError(f"dt = {h0} exceeds T = {T}; pass dt ≤ T (the paper uses dt = 0.01)")
    V0 = torch.as_tensor(V0)
    check_V0(V0)
    if band is not None and not band[0] < band[1]:
        raise DeeplimitError(f"band must be (lo, hi) with lo < hi, got {band!r}")
    m = V0.shape[-1]
    if V0.ndim == 2:
        V = V0.to(dtype).expand(paths, m, m).clone()
    elif V0.shape[0] == paths:
        V = V0.to(dtype).clone()
    else:
        raise DeeplimitError(f"V0 has batch {V0.shape[0]} but paths = {paths}; pass (m, m) or (paths, m, m)")
    V = 0.5 * (V + V.mT)
    steps, h = step_count(T, h0)
    if 16 * k_lin_h_m(scenario, h, m) > 1:
        # the Euler noise L G Lᵀ has relative spectral size ≈ 2 sqrt(κ_lin h m); once it nears 1 most steps
        # leave the PSD cone and the eigen fallback clips (observed: m = 128, h = 0.01 clips every path in
        # 10 steps)
        hmax = 1 / (16 * scenario.kappa_lin * m)
        warn(
            f"dt = {h:.3g} is large for m = {m} tokens (κ_lin·h·m = {k_lin_h_m(scenario, h, m):.3g} > 1/16): "
            f"Euler steps will leave the PSD cone and be clipped; pass dt ≤ {hmax:.2g}"
        )
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    save_at: set[int] = set()
    if save_every:
        save_at.update(range(0, steps + 1, save_every))
    if ts is not None:
        save_at.update(min(steps, max(0, round(t / h))) for t in ts)
    times, saved = [], []
    if 0 in save_at:
        times.append(0.0)
        saved.append(V.clone())

    k_lin, k_att = scenario.kappa_lin, scenario.kappa_att
    reason = torch.zeros(paths, dtype=torch.long)
    stop_step = torch.full((paths,), steps, dtype=torch.long)
    clipped = torch.zeros(paths, dtype=torch.long)
    sqrt_h = math.sqrt(h)
    normals = _Normals(gen, dtype if noise_dtype is None else noise_dtype)
    chunk = path_chunk(m)
    Vn = torch.empty_like(V)
    code = torch.zeros(paths, dtype=torch.long)
    any_stopped = False
    with blas_threads(torch.get_num_threads()):
        for k in range(1, steps + 1):
            alive = reason == RUNNING
            for s in range(0, paths, chunk):
                sl = slice(s, min(s + chunk, paths))
                Vc = V[sl]
                L, clip = psd_sqrt(Vc)
                clipped[sl] += torch.where(alive[sl], clip, 0) if any_stopped else clip
                # G = [G1 | G2] in one draw, in path order, so the stream does not depend on the chunking;
                # both are drawn every step, whatever κ_att (streams line up across scenarios, §5.2)
                G = normals.draw((Vc.shape[0], m, 2 * m)).to(dtype)
                out = Vn[sl]
                if scheme == "euler":
                    em_step(scenario, Vc, L, G, h, out=out)
                else:
                    b = scenario.drift(Vc)
                    b = b / (1 + h * torch.linalg.matrix_norm(b))[:, None, None]
                    # drift and noise are exactly symmetric entry by entry, so V stays exactly symmetric
                    torch.add(Vc, b, alpha=h, out=out)
                    out.add_(matrix_free_noise(Vc, L, G[..., :m], G[..., m:], k_lin, k_att), alpha=sqrt_h)
                code[sl] = band_exit(out, band)
            newly = alive & (code != RUNNING)
            if bool(newly.any()):
                reason = torch.where(newly, code, reason)
                stop_step = torch.where(newly, k - 1, stop_step)
                any_stopped = True
            if any_stopped:
                # stopped paths stay frozen at their last in-band state
                keep = reason != RUNNING
                Vn[keep] = V[keep]
            V, Vn = Vn, V
            if k in save_at:
                times.append(k * h)
                saved.append(V.clone())
    return Solution(
        times=torch.tensor(times, dtype=torch.float64),
        V=torch.stack(saved) if saved else None,
        terminal=V,
        t_stop=stop_step.double() * h,
        reason=reason,
        clipped=clipped,
        dt=h,
        steps=steps,
    )
