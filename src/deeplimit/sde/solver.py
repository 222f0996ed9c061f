"""Batched Euler–Maruyama for the covariance SDEs with matrix-free noise and stopping (spec §5.2–§5.4).

:func:`solve` reads like diffrax's ``diffeqsolve``::

    solve(Scenario("attention", gamma=0.35), Euler(), 0.0, 0.75, 0.01, V0, saveat=SaveAt(every=5),
          event=Band(1e-4, 1e4), paths=2048, seed=0)

The coefficients (:class:`~deeplimit.sde.coefficients.Scenario`), the scheme (:class:`~deeplimit.sde.step.Euler`,
:class:`~deeplimit.sde.step.TamedEuler`), what to save (:class:`~deeplimit.sde.saveat.SaveAt`) and when to
stop (:class:`~deeplimit.sde.events.Band`) are value objects that check themselves when built.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError, warn
from deeplimit.sde._linalg import blas_threads
from deeplimit.sde.coefficients import Scenario
from deeplimit.sde.events import EXIT_HIGH, EXIT_LOW, EXIT_NONFINITE, REASONS, RUNNING, Band, band_exit
from deeplimit.sde.noise import psd_sqrt
from deeplimit.sde.saveat import SaveAt
from deeplimit.sde.step import Euler, Solver, TamedEuler


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
    * ``terminal (B, m, m)``: state at ``t1`` or, for stopped paths, the last in-band state (time ``t_stop``);
    * ``t_stop (B,)``: ``t0 + t*`` (``t*`` of §3.8), ``t1`` for paths that never left the band;
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


def k_lin_h_m(scenario: Scenario, h: float, m: int) -> float:
    """``κ_lin · h · m``: a quarter of the squared relative spectral size of one Euler noise increment."""
    return scenario.kappa_lin * h * m


def step_count(T: float, dt: float) -> tuple[int, float]:
    """Number of steps ``ceil(T/dt)`` and the step ``h = T/steps`` actually used (``h ≤ dt``)."""
    steps = max(1, math.ceil(T / dt - 1e-9))
    return steps, T / steps


def _validate(solver: Solver, t0: float, t1: float, dt0: float | None, dtype: torch.dtype, paths: int) -> None:
    """One-line errors for a solve's scalar arguments (the value objects checked themselves when built)."""
    if not isinstance(solver, Solver):
        raise DeeplimitError(
            f"solver must be a deeplimit.sde solver such as Euler() or TamedEuler(), got {solver!r}"
        )
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise DeeplimitError(f"t0 and t1 must be finite, got t0={t0!r}, t1={t1!r}")
    if not t1 - t0 > 0:
        raise DeeplimitError(f"T = t1 − t0 must be positive, got t0={t0!r}, t1={t1!r}; T = d/n (depth over width)")
    if dtype not in (torch.float32, torch.float64):
        raise DeeplimitError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not (isinstance(paths, numbers.Integral) and paths >= 1):
        raise DeeplimitError(f"paths must be an integer ≥ 1, got {paths!r}")
    if dt0 is not None and not dt0 > 0:
        raise DeeplimitError(f"dt0 must be positive, got {dt0!r}")


def _start(V0: Tensor, paths: int, dtype: torch.dtype) -> Tensor:
    """``(paths, m, m)`` start states from ``V0 (m, m)`` or ``(paths, m, m)``, checked and symmetrised."""
    V0 = torch.as_tensor(V0)
    check_V0(V0)
    m = V0.shape[-1]
    if V0.ndim == 2:
        V = V0.to(dtype).expand(paths, m, m).clone()
    elif V0.shape[0] == paths:
        V = V0.to(dtype).clone()
    else:
        raise DeeplimitError(f"V0 has batch {V0.shape[0]} but paths = {paths}; pass (m, m) or (paths, m, m)")
    return 0.5 * (V + V.mT)


def _warn_coarse(scenario: Scenario, h: float, m: int) -> None:
    if 16 * k_lin_h_m(scenario, h, m) > 1:
        # the Euler noise L G Lᵀ has relative spectral size ≈ 2 sqrt(κ_lin h m); once it nears 1 most steps
        # leave the PSD cone and the eigen fallback clips (observed: m = 128, h = 0.01 clips every path in
        # 10 steps)
        hmax = 1 / (16 * scenario.kappa_lin * m)
        warn(
            f"dt = {h:.3g} is large for m = {m} tokens (κ_lin·h·m = {k_lin_h_m(scenario, h, m):.3g} > 1/16): "
            f"Euler steps will leave the PSD cone and be clipped; pass dt ≤ {hmax:.2g}"
        )


def solve(
    scenario: Scenario,
    solver: Solver,
    t0: float,
    t1: float,
    dt0: float | None,
    y0: Tensor,
    *,
    saveat: SaveAt | None = None,
    event: Band | None = None,
    paths: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    noise_dtype: torch.dtype | None = None,
) -> Solution:
    """Simulate ``dV = b dt + (κ_lin Σ_lin + κ_att 𝒜)^{1/2} dB`` from ``t0`` to ``t1``, batched (spec §5.2).

    Args:
        scenario: coefficient-table row (§3.6), the "terms" of the SDE.
        solver: :class:`~deeplimit.sde.step.Euler` (Euler–Maruyama) or :class:`~deeplimit.sde.step.TamedEuler`
            (drift ``b/(1 + h‖b‖_F)``, §5.4 option for exploding cubic drifts).
        t0, t1: start and end time; ``T = t1 − t0 = d/n``.
        dt0: step bound, ``None`` for ``min(0.01, 0.008/κ_lin)`` (§5.4); the step used is ``T/ceil(T/dt0)``.
        y0: start ``V0``, ``(m, m)`` shared by all paths or ``(paths, m, m)``; symmetric PSD, m ≥ 2.
        saveat: states to keep besides the terminal one (:class:`~deeplimit.sde.saveat.SaveAt`; ``None``:
            only the terminal state).
        event: stopping band (:class:`~deeplimit.sde.events.Band`, §3.8, e.g. ``Band(1e-4, 1e4)``); ``None``
            (default for comparisons) stops only on non-finite values, so Euler overshoot below 0 is handled
            by the robust square root (§5.3) and counted in ``clipped`` instead of removing the path.
        paths, seed, dtype: batch size, seed of a private ``torch.Generator`` (or pass ``generator``),
            float32/64.
        noise_dtype: dtype in which the standard normals ``G`` are drawn (default ``dtype``). float64 draws
            use NumPy's exact ziggurat seeded from ``seed``/``generator``; ``torch.float32`` draws are about 2×
            faster again and are then cast: the law changes by float32 rounding (~1e-7 relative) and a tail
            cut at ≈ 5.8σ (torch's Box–Muller on 24-bit uniforms; ~1e-8 of the draws), both far below
            Euler's O(h) bias. Opt-in.

    Both noise matrices ``G1, G2`` are drawn every step (even when ``κ_att = 0``) so random streams line up
    across scenarios. Stopped paths are frozen at their last in-band state; statistics should use
    :meth:`Solution.survivors` and report :attr:`Solution.exit_fraction`. Times in the result
    (``times``, ``t_stop``) are absolute, ``t0 + k·h``.
    """
    _validate(solver, t0, t1, dt0, dtype, paths)
    T = t1 - t0
    h0 = scenario.default_dt() if dt0 is None else dt0
    if h0 > T * (1 + 1e-12):
        raise DeeplimitError(f"dt0 = {h0} exceeds T = t1 − t0 = {T}; pass dt0 ≤ T (the paper uses dt = 0.01)")
    if event is not None and not isinstance(event, Band):
        raise DeeplimitError(f"event must be a deeplimit.sde.Band(lo, hi) or None, got {event!r}")
    saveat = SaveAt() if saveat is None else saveat
    if not isinstance(saveat, SaveAt):
        raise DeeplimitError(f"saveat must be a deeplimit.sde.SaveAt(every=…, ts=…), got {saveat!r}")
    V = _start(y0, paths, dtype)
    m = V.shape[-1]
    steps, h = step_count(T, h0)
    _warn_coarse(scenario, h, m)
    save_at = saveat.indices(t0, h, steps)
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    times, saved = [], []
    if 0 in save_at:
        times.append(t0)
        saved.append(V.clone())

    reason = torch.zeros(paths, dtype=torch.long)
    stop_step = torch.full((paths,), steps, dtype=torch.long)
    clipped = torch.zeros(paths, dtype=torch.long)
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
                solver.step(scenario, Vc, L, G, h, Vn[sl])
                code[sl] = band_exit(Vn[sl], event)
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
                times.append(t0 + k * h)
                saved.append(V.clone())
    return Solution(
        times=torch.tensor(times, dtype=torch.float64),
        V=torch.stack(saved) if saved else None,
        terminal=V,
        t_stop=t0 + stop_step.double() * h,
        reason=reason,
        clipped=clipped,
        dt=h,
        steps=steps,
    )


__all__ = ["EXIT_HIGH", "EXIT_LOW", "EXIT_NONFINITE", "REASONS", "RUNNING", "Band", "Euler", "SaveAt", "Solution",
           "Solver", "TamedEuler", "check_V0", "nearest_psd", "solve", "step_count"]
