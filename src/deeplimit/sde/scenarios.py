"""Named presets of the paper's simulations (spec §4, §6, §7) and runners for them.

:data:`SCENARIOS` maps each scenario name to its :class:`Preset` (its settings);
``get_preset(name, **overrides)`` returns a validated copy; :func:`run_comparison` simulates the SDE
and the finite network of a preset and tabulates KS/W1 distances, quantiles and exit fractions;
:func:`stopping_map` computes the median stopping time over a :class:`StoppingGrid` of ``(γ, τ0)`` cells
(Fig. 5 right, Fig. 8).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError
from deeplimit.nn.theory import ATTENTION_VARIANTS
from deeplimit.sde.coefficients import Scenario
from deeplimit.sde.compare import EXPLODE_AT, compare_distributions, exploded, quantile_table
from deeplimit.sde.events import Band
from deeplimit.sde.samplers import NetworkSamples, initial_X, sample_network
from deeplimit.sde.saveat import SaveAt
from deeplimit.sde.solver import Solution, check_V0, solve
from deeplimit.sde.step import Euler

STOPPING_GAMMAS = (0.1, 0.16, 0.214, 0.29, 0.4, 0.54, 0.735, 1.0)
MAP_GAMMAS = (0.0,) + tuple(2.0 ** (-3.0 + 0.2 * k) for k in range(16))  # {0, 2^-3.0, 2^-2.8, …, 2^0}
MAP_TAU0S = tuple(2.0**k for k in range(-10, 7))  # 2^-10 … 2^6
STOP_BAND = (1e-4, 1e4)


@dataclass(frozen=True)
class Preset:
    """One simulation setting. ``kind`` is a coefficient-table row (§3.6); ``variant`` the attention
    matrix (§6).

    ``init``: ``"exact"`` (``X_0 = √n [L_0 | 0]``, ``V_0 = (1−ρ0) I + ρ0 11ᵀ``), ``"iid"`` (entries
    N(0, init_std²), stopping presets) or ``"gaussian"`` (``X_0 = L_0 Z``, Gaussian coordinates for the plain
    MLP (a), whose ``σ_s`` acts on ``X`` directly; the SDE then starts at the realised ``X_0 X_0ᵀ/n``).
    """

    name: str
    kind: str
    n: int
    d: int
    m: int = 2
    gamma: float = 1 / math.sqrt(8)
    tau0: float = 1.0
    c_plus: float = 0.0
    c_minus: float = -1.0
    rho0: float = 0.2
    init: str = "exact"
    init_std: float = 10.0
    paths: int = 4096
    dt: float | None = 0.01
    band: tuple[float, float] | None = None
    variant: str = "shaped"
    gammas: tuple[float, ...] = field(default=())
    tau0s: tuple[float, ...] = field(default=())

    @property
    def T(self) -> float:
        """Terminal SDE time ``d/n`` (one layer or block = ``1/n``)."""
        return self.d / self.n

    @property
    def scenario(self) -> Scenario:
        kind = "resnet" if self.kind == "resnet" else self.kind
        return Scenario(kind, self.gamma if self.kind != "mlp" else 1.0, self.tau0, self.c_plus, self.c_minus)

    @property
    def event(self) -> Band | None:
        """The stopping band as a :class:`~deeplimit.sde.events.Band` (``None``: stop on non-finite values only)."""
        return Band.of(self.band)

    def V0(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(1 − ρ0) I + ρ0 11ᵀ`` (m×m)."""
        return equicorrelated(self.m, self.rho0, dtype)

    def to_dict(self) -> dict:
        return asdict(self)


def equicorrelated(m: int, rho0: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """``V_0 = (1 − ρ0) I + ρ0 11ᵀ``; PSD for ``−1/(m−1) ≤ ρ0 ≤ 1``."""
    if m < 2:
        raise DeeplimitError(f"m = {m}: covariance SDEs need at least 2 tokens; pass m ≥ 2")
    if not -1.0 / (m - 1) <= rho0 <= 1.0:
        raise DeeplimitError(f"rho0 = {rho0} gives a non-PSD start for m = {m}; use −1/(m−1) ≤ rho0 ≤ 1")
    return (1 - rho0) * torch.eye(m, dtype=dtype) + rho0 * torch.ones(m, m, dtype=dtype)


SCENARIOS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("attention", "attention", n=200, d=150),
        Preset("block", "block", n=200, d=150),
        Preset(
            "resnet",
            "resnet",
            n=300,
            d=100,
            gamma=0.5,
            paths=8192,
            dt=None,
            gammas=(1 / math.sqrt(100), 0.25, 0.5, 1.0),
        ),
        Preset("mlp", "mlp", n=300, d=60, init="gaussian", dt=None),
        Preset("linear", "linear", n=200, d=150),
        Preset(
            "ablations", "attention", n=300, d=150, gamma=1 / math.sqrt(2), paths=8192, gammas=(), tau0s=()
        ),
        Preset(
            "stopping",
            "attention",
            n=200,
            d=200,
            m=3,
            gamma=0.735,
            init="iid",
            paths=100,
            band=STOP_BAND,
            gammas=STOPPING_GAMMAS,
        ),
        Preset(
            "stopping-map",
            "attention",
            n=200,
            d=200,
            m=3,
            init="iid",
            paths=100,
            band=STOP_BAND,
            gammas=MAP_GAMMAS,
            tau0s=MAP_TAU0S,
        ),
    ]
}


def get_preset(name: str, **overrides: object) -> Preset:
    """Preset ``name`` with fields replaced by the non-``None`` ``overrides``; validated.

    Raises :class:`DeeplimitError` for unknown names (listing the valid ones) and bad parameters.
    """
    if name not in SCENARIOS:
        raise DeeplimitError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    p = replace(SCENARIOS[name], **{k: v for k, v in overrides.items() if v is not None})
    validate_preset(p)
    return p


def validate_preset(p: Preset) -> None:
    """Raise :class:`DeeplimitError` naming the problem and the fix for an impossible preset."""
    if p.m < 2:
        raise DeeplimitError(f"m = {p.m}: covariance SDEs need at least 2 tokens; pass --m 2 or more")
    for name in ("n", "d", "paths"):
        v = getattr(p, name)
        if not (isinstance(v, int) and v >= 1):
            raise DeeplimitError(f"{name} must be a positive integer, got {v!r}")
    if p.n < p.m and p.init == "exact":
        raise DeeplimitError(f"width n = {p.n} < m = {p.m}; the exact start √n [L0 | 0] needs n ≥ m")
    if p.dt is not None and not 0 < p.dt <= p.T:
        raise DeeplimitError(f"dt = {p.dt} must lie in (0, T = d/n = {p.T:g}]; use dt = 0.01 or raise d")
    if not 0 <= p.gamma <= 1:
        raise DeeplimitError(f"gamma = {p.gamma} outside [0, 1]; λ² + γ² = 1 needs γ ∈ [0, 1]")
    if not (math.isfinite(p.tau0) and p.tau0 > 0):
        raise DeeplimitError(f"tau0 = {p.tau0} must be a finite positive number; the paper uses 1")
    for name in ("c_plus", "c_minus", "rho0", "init_std"):
        if not math.isfinite(getattr(p, name)):
            raise DeeplimitError(f"{name} = {getattr(p, name)} must be finite")
    if not p.init_std > 0:
        raise DeeplimitError(f"init_std = {p.init_std} must be positive")
    if p.band is not None:
        check_band(p.band)
    if p.variant not in ATTENTION_VARIANTS:
        raise DeeplimitError(
            f"unknown attention variant {p.variant!r}; use one of {', '.join(ATTENTION_VARIANTS)}"
        )
    if p.init not in ("exact", "iid", "gaussian"):
        raise DeeplimitError(f"unknown init {p.init!r}; use 'exact', 'iid' or 'gaussian'")
    equicorrelated(p.m, p.rho0)


def check_band(band: tuple[float, float]) -> None:
    """A stopping band ``(lo, hi)`` on eigenvalues must satisfy ``0 < lo < hi < ∞``."""
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise DeeplimitError(f"band must be two numbers LO HI, got {band!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise DeeplimitError(f"band ({lo:g}, {hi:g}) must satisfy 0 < LO < HI < inf (eigenvalue bounds); e.g. "
                             "--band 1e-4 1e4")


@dataclass
class ComparisonResult:
    """Output of :func:`run_comparison`: SDE solution, network samples and the tables built from them."""

    preset: Preset
    sde: Solution
    network: NetworkSamples
    distances: pd.DataFrame
    quantiles: pd.DataFrame
    sde_exploded: int = 0
    network_exploded: int = 0

    def summary(self) -> dict:
        return {
            "preset": self.preset.to_dict(),
            "sde_exit_fraction": self.sde.exit_fraction,
            "network_exit_fraction": self.network.exit_fraction,
            "sde_exploded": self.sde_exploded,
            "network_exploded": self.network_exploded,
            "explode_at": EXPLODE_AT,
            "sde_clipped_paths": int((self.sde.clipped > 0).sum()),
            "dt": self.sde.dt,
            "distances": self.distances.to_dict(orient="records"),
        }


def start_states(p: Preset, seed: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor | None]:
    """``(V0 for the SDE, X0 for the network or None)``: the realised start of each path for random inits."""
    if p.init == "exact":
        return p.V0(dtype), None
    gen = torch.Generator().manual_seed(seed + 7919)
    if p.init == "iid":
        X0 = initial_X(p.paths, p.n, V0=p.V0(dtype), init_std=p.init_std, generator=gen, dtype=dtype)
    else:
        L0 = torch.linalg.cholesky(p.V0(dtype))
        X0 = L0 @ torch.randn(p.paths, p.m, p.n, generator=gen, dtype=dtype)
    V0 = X0 @ X0.mT / p.n
    return 0.5 * (V0 + V0.mT), X0


def run_network(
    p: Preset,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    method: str = "gram",
    saveat: SaveAt | None = None,
) -> NetworkSamples:
    """Finite-network samples of preset ``p`` (exact-in-law sampler by default).

    The ``linear`` row is the attention layer with ``τ0 = 10¹²``: ``Softmax = U`` to ~1e-12, so ``A = I``
    (the linear residual map ``λX + γ X W^V/√n``, same law as zero queries).
    """
    V0, X0 = start_states(p, seed, dtype)
    linear = p.kind == "linear"
    return sample_network(
        "attention" if linear else p.kind,
        p.n,
        p.d,
        None if X0 is not None else V0,
        X0=X0,
        gamma=p.gamma,
        tau0=1e12 if linear else p.tau0,
        c_plus=p.c_plus,
        c_minus=p.c_minus,
        variant=p.variant,
        paths=p.paths,
        seed=seed + 1,
        dtype=dtype,
        event=p.event,
        method=method,
        saveat=saveat,
    )


def run_sde(p: Preset, seed: int = 0, dtype: torch.dtype = torch.float64, saveat: SaveAt | None = None) -> Solution:
    """SDE solution of preset ``p`` (same realised start as :func:`run_network` for random inits)."""
    V0, _ = start_states(p, seed, dtype)
    return solve(p.scenario, Euler(), 0.0, p.T, p.dt, V0, saveat=saveat, event=p.event, paths=p.paths,
                 seed=seed + 2, dtype=dtype)


def run_comparison(
    p: Preset, seed: int = 0, bootstrap: int = 100, method: str = "gram", dtype: torch.dtype = torch.float64
) -> ComparisonResult:
    """Simulate SDE and network for ``p``; KS/W1 (bootstrap SE) and quantiles on ρ^{12}, V^{12}, V^{11}.

    Statistics use the paths that stayed in the band and did not explode (non-finite or eigmax above
    :data:`~deeplimit.sde.compare.EXPLODE_AT`); exit fractions and exploded counts per source are reported in
    :meth:`summary`, never averaged into a distance.
    """
    if p.variant != "shaped":
        raise DeeplimitError(
            f"variant {p.variant!r} has no SDE limit (spec §6); compare only the shaped variant, or use "
            "deeplimit.sde.sample_network directly for ablations"
        )
    sde = run_sde(p, seed, dtype)
    net = run_network(p, seed, dtype, method)
    a, b = sde.survivors(), net.survivors()
    ea, eb = exploded(a), exploded(b)
    a, b = a[~ea], b[~eb]
    q = covariance_quantities(p.m)
    dist = compare_distributions(a, b, q, bootstrap=bootstrap, seed=seed)
    quant = quantile_table({"sde": a, "network": b}, q)
    return ComparisonResult(p, sde, net, dist, quant, int(ea.sum()), int(eb.sum()))


def covariance_quantities(m: int) -> tuple[tuple[str, int, int], ...]:
    """Every entry of the terminal covariance compared: ``ρ^{αβ}`` and ``V^{αβ}`` for α < β, then ``V^{αα}``.

    Tokens are exchangeable at these starts, but each entry is its own marginal, so all are compared (m = 2:
    ρ¹², V¹², V¹¹, V²²)."""
    off = [(i, j) for i in range(m) for j in range(i + 1, m)]
    return (tuple(("rho", i, j) for i, j in off) + tuple(("V", i, j) for i, j in off)
            + tuple(("V", i, i) for i in range(m)))


@dataclass(frozen=True)
class StoppingGrid:
    """The stopping-time experiment of Figs. 5 and 8 (spec §3.8, §4): one ``(γ, τ0)`` grid of cells.

    ``gammas`` in ``[0, 1]`` and ``tau0s`` (finite, > 0) span the grid; ``n, d, m``: width, depth (``T = d/n``),
    tokens; ``paths`` per cell; ``seed``; ``band``: the stopping band (a :class:`~deeplimit.sde.events.Band` or
    ``(lo, hi)``); start ``X_0`` iid N(0, ``init_std``²); ``dt``: the SDE's step bound (``None``: §5.4 rule).
    Checked on construction (one-line :class:`DeeplimitError` naming the bad field).
    """

    gammas: tuple[float, ...]
    tau0s: tuple[float, ...]
    n: int = 200
    d: int = 200
    m: int = 3
    paths: int = 100
    seed: int = 0
    band: Band = Band(*STOP_BAND)
    init_std: float = 10.0
    dt: float | None = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "gammas", _finite_tuple("gammas", self.gammas))
        object.__setattr__(self, "tau0s", _finite_tuple("tau0s", self.tau0s))
        for g in self.gammas:
            if not 0 <= g <= 1:
                raise DeeplimitError(f"gamma = {g} outside [0, 1]; λ² + γ² = 1 needs γ ∈ [0, 1]")
        for t0 in self.tau0s:
            if not t0 > 0:
                raise DeeplimitError(f"tau0 = {t0} must be a finite positive number")
        for name in ("n", "d", "m", "paths", "seed"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= (0 if name == "seed" else 1)):
                raise DeeplimitError(f"StoppingGrid: {name} must be a {'' if name == 'seed' else 'positive '}integer, "
                                     f"got {v!r}")
        if self.m < 2:
            raise DeeplimitError(f"m = {self.m}: covariance SDEs need at least 2 tokens; pass m ≥ 2")
        if isinstance(self.band, Band):
            check_band((self.band.lo, self.band.hi))
        else:
            check_band(self.band)
            object.__setattr__(self, "band", Band.of(self.band))
        if not (math.isfinite(self.init_std) and self.init_std > 0):
            raise DeeplimitError(f"init_std = {self.init_std} must be a finite positive number")
        if self.dt is not None and not (math.isfinite(self.dt) and self.dt > 0):
            raise DeeplimitError(f"dt = {self.dt} must be a finite positive step (the paper uses 0.01)")

    @property
    def T(self) -> float:
        """Terminal SDE time ``d/n``."""
        return self.d / self.n


def _finite_tuple(name: str, values: object) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise DeeplimitError(f"StoppingGrid: {name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise DeeplimitError(f"StoppingGrid: {name} must hold at least one value, all finite; got {values!r}")
    return out


def stopping_samples(
    grid: StoppingGrid, source: str = "sde", *, progress: bool = False
) -> tuple[dict[tuple[float, float], np.ndarray], np.ndarray]:
    """Per-path stopping times ``t*`` (§3.8, capped at ``T = d/n``) on the ``(γ, τ0)`` cells of ``grid``.

    Returns ``({(γ, τ0): t* (paths,)}, eigmax(V_0) (paths,))``. Start ``X_0`` iid N(0, init_std²) (token
    norms ≈ ``init_std·√n``, Figs. 5/8), the same realised ``X_0`` for every cell and both sources; the SDE
    starts at ``X_0 X_0ᵀ/n``. ``source``: ``"sde"`` or ``"network"`` (exact-in-law sampler). Cell ``(i, j)``
    draws its noise from seed ``seed + 1000 i + j + 1``. ``progress`` shows a bar over the cells on stderr.
    """
    from tqdm.auto import tqdm

    if not isinstance(grid, StoppingGrid):
        raise DeeplimitError(f"pass a StoppingGrid(gammas, tau0s, …), got {type(grid).__name__}")
    if source not in ("sde", "network"):
        raise DeeplimitError(f"unknown source {source!r}; use 'sde' or 'network'")
    n, d, paths, T = grid.n, grid.d, grid.paths, grid.T
    gen = torch.Generator().manual_seed(grid.seed)
    V0m = torch.eye(grid.m, dtype=torch.float64)
    X0 = initial_X(paths, n, V0=V0m, init_std=grid.init_std, generator=gen)
    V0 = X0 @ X0.mT / n
    V0 = 0.5 * (V0 + V0.mT)
    out: dict[tuple[float, float], np.ndarray] = {}
    bar = tqdm(total=len(grid.gammas) * len(grid.tau0s), disable=not progress, desc=f"stopping map ({source})",
               leave=False, dynamic_ncols=True)
    for i, g in enumerate(grid.gammas):
        for j, t0 in enumerate(grid.tau0s):
            bar.update(1)
            cell_seed = grid.seed + 1000 * i + j + 1
            if source == "sde":
                sol = solve(Scenario("attention", g, t0), Euler(), 0.0, T, grid.dt, V0, event=grid.band,
                            paths=paths, seed=cell_seed)
                t = sol.t_stop
            else:
                t = sample_network("attention", n, d, X0=X0, gamma=g, tau0=t0, paths=paths, seed=cell_seed,
                                   event=grid.band).t_stop
            out[(float(g), float(t0))] = t.clamp(max=T).numpy().copy()
    bar.close()
    return out, torch.linalg.eigvalsh(V0)[:, -1].numpy()


def stopping_map(grid: StoppingGrid, source: str = "sde", *, progress: bool = False) -> pd.DataFrame:
    """Median and 10th-percentile stopping time ``t*`` (capped at ``T = d/n``) over the cells of ``grid``.

    Same arguments as :func:`stopping_samples`. One row per grid cell with
    ``gamma, tau0, median_t, p10_t, exit_fraction, T``.
    """
    samples, _ = stopping_samples(grid, source, progress=progress)
    return stopping_table(samples, grid.T)


def stopping_table(samples: dict[tuple[float, float], np.ndarray], T: float) -> pd.DataFrame:
    """Median, 10th percentile and exit fraction (``t* < T``) per cell of :func:`stopping_samples`' output."""
    rows = []
    for (g, t0), t in samples.items():
        rows.append({"gamma": g, "tau0": t0, "median_t": float(np.median(t)), "p10_t": float(np.quantile(t, 0.1)),
                     "exit_fraction": float(np.mean(t < T - 1e-12)), "T": T})
    return pd.DataFrame(rows)


__all__ = [
    "SCENARIOS",
    "ComparisonResult",
    "Preset",
    "StoppingGrid",
    "check_V0",
    "check_band",
    "covariance_quantities",
    "equicorrelated",
    "get_preset",
    "run_comparison",
    "run_network",
    "run_sde",
    "stopping_map",
    "stopping_samples",
    "stopping_table",
]
