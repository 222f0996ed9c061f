"""SDE-vs-network agreement as an *equivalence* test, with a sensitivity control (issue 20).

A KS statistic under its critical value only says "no difference was detected"; with few paths every
comparison passes. Here agreement has to be shown:

* :func:`equivalence_test`: a confidence interval for the *true* distance between the network's and the
  SDE's laws, and a three-way verdict against a margin ``δ`` fixed in advance: ``"agrees"`` when the whole
  interval lies below ``δ``, ``"differs"`` when it lies above, ``"inconclusive"`` otherwise (too few paths);
* :func:`paths_for_equivalence`: the path count at which the test reaches ``"agrees"`` with given power;
* :func:`sensitivity_control` / :func:`perturbed_sde_samples`: the same test against the SDE with γ or
  ``T = d/n`` off by 20%, which must come out ``"differs"`` — otherwise the test could not have seen a 20%
  error, and :func:`claim_verdict` does not count the ``"agrees"``;
* :func:`exploded_paths`: the fractions of exploded paths compared (two-proportion interval), not just counted;
* :func:`sde_equivalence`: all of it for one preset of :mod:`deeplimit.sde.scenarios`.

**KS bounds (distribution-free, finite-sample).** ``D̂ = sup|F_n − G_m|``, true ``D = sup|F − G|``,
``α = 1 − level``, ``k`` columns. Each bound is one-sided at ``level`` (the convention of two one-sided tests:
whichever side of the margin the truth is on, the wrong verdict has probability ≤ ``α``; the pair is a
``1 − 2α`` interval).

* *Upper* (for "agrees"): at a point ``x*`` where ``|F − G| = D``, ``F_n(x*) − G_m(x*)`` is a difference of two
  means of indicators, so ``D̂ ≥ D − t`` except with probability ``exp(−2t²/(1/n + 1/m))`` (Hoeffding).
  Upper bound ``D̂ + √(ln(k/α)·(1/n + 1/m)/2)``. No uniform bound is needed here, because only one point is
  used: this is 2–3× fewer paths than the DKW form ``D̂ + ε_n + ε_m``.
* *Lower* (for "differs"): ``D̂ ≤ D + sup|F_n − F| + sup|G_m − G|``, and DKW with Massart's constant,
  ``P(sup|F_n − F| > ε) ≤ 2 exp(−2nε²)``, over the ``2k`` empirical CDFs: ``ε_n = √(ln(4k/α)/(2n))``, lower
  bound ``D̂ − ε_n − ε_m``.

Both hold for any laws at any sample size. A bootstrap would not: the bootstrap law of a sup-distance is
inconsistent at ``D = 0``, exactly where agreement is claimed.

**W1** (second statistic): ``scipy.stats.wasserstein_distance`` divided by a scale (default: the SDE sample's
normal-equivalent IQR, ``IQR/1.349``, robust to the heavy tails of ``V`` entries; re-estimated in every
resample so its own uncertainty is in the interval), with bootstrap bounds (rows of each source resampled jointly):
upper = the ``1 − α`` quantile of the resampled statistic (conservative: W1's upward small-sample bias is added
twice), lower = the smaller of the ``α`` quantile and the reflected ``2Ŵ − q_{1−α}`` (the percentile lower bound
alone covered only ~90% at 95% in simulation). KS is the primary statistic; W1 bounds are not distribution-free.

**2-D samples** ``(paths, k)``: every column is tested (Bonferroni: each column's bounds at level
``1 − α/k``); the reported statistic is the max over columns and its interval is ``[max lo_j, max hi_j]``, the
induced interval for ``max_j D_j``. So "agrees" needs every entry within the margin, "differs" one entry beyond.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.sde.compare import exploded, extract, label
from deeplimit.sde.scenarios import Preset, covariance_quantities, run_network, run_sde

STATS = ("ks", "w1")
VERDICTS = ("agrees", "differs", "inconclusive")
PERTURBED = ("gamma", "T")


@dataclass(frozen=True)
class Equivalence:
    """One equivalence test: ``value`` (the statistic; max over columns) and its confidence interval ``ci``
    at ``level`` against ``margin``, with the verdict read from the interval (see the module docstring).

    ``columns``: per tested column ``{"name", "value", "lo", "hi"}``; ``method``: how ``ci`` was made.
    """

    stat: str
    value: float
    ci: tuple[float, float]
    margin: float
    n_network: int
    n_sde: int
    verdict: str
    level: float = 0.95
    method: str = ""
    columns: tuple[dict, ...] = field(default=())

    def text(self) -> str:
        """One line, e.g. ``KS 0.021 [0.000, 0.067] < margin 0.100: agrees (…)``."""
        lo, hi = self.ci
        rel = {"agrees": "<", "differs": ">"}.get(self.verdict, "overlaps")
        where = f"max over {len(self.columns)} entries, " if len(self.columns) > 1 else ""
        return (f"{self.stat.upper()} {self.value:.3f} [{lo:.3f}, {hi:.3f}] {rel} margin {self.margin:.3g}: "
                f"{self.verdict} ({where}{self.level:.0%} {self.method}; {self.n_network} network, "
                f"{self.n_sde} SDE paths)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (``ci`` as a list)."""
        return {"stat": self.stat, "value": self.value, "ci": list(self.ci), "margin": self.margin,
                "n_network": self.n_network, "n_sde": self.n_sde, "verdict": self.verdict, "level": self.level,
                "method": self.method, "columns": [dict(c) for c in self.columns]}


def _verdict(lo: float, hi: float, margin: float) -> str:
    return "agrees" if hi < margin else "differs" if lo > margin else "inconclusive"


def _columns(x: Any, what: str) -> np.ndarray:
    """``(paths, k)`` float64 from a 1-D or 2-D array or tensor; finite, at least 2 rows."""
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise DeeplimitError(f"{what} samples must be 1-D (paths,) or 2-D (paths, k), got shape {a.shape}")
    if a.shape[0] < 2:
        raise DeeplimitError(f"{what} has {a.shape[0]} sample(s); give at least 2 paths (thousands for a verdict)")
    if not np.isfinite(a).all():
        raise DeeplimitError(f"{what} samples contain NaN or inf; leave exploded paths out first "
                             "(deeplimit.sde.compare.exploded) and compare their fractions with exploded_paths")
    return a


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise DeeplimitError(f"level must be a confidence in (0, 1), e.g. 0.95, got {level!r}")
    return 1.0 - float(level)


def dkw_epsilon(n: int, alpha: float, events: int = 2) -> float:
    """``√(ln(2·events/α)/(2n))``: with probability ≥ ``1 − α`` none of ``events`` empirical CDFs of ``n``
    samples each is farther than this from its law (DKW with Massart's constant, union bound)."""
    return math.sqrt(math.log(2 * events / alpha) / (2 * n))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """``sup|F_a − G_b|`` of two 1-D samples, the statistic of ``scipy.stats.ks_2samp`` without its p-value (which
    costs 7–25 ms at a few hundred paths and is not used here: repeated simulations call this thousands of times)."""
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, side="right") / a.size
                        - np.searchsorted(b, x, side="right") / b.size).max())


def ks_upper_width(n: int, m: int, alpha: float) -> float:
    """``√(ln(1/α)·(1/n + 1/m)/2)``: the true KS distance exceeds ``D̂`` by more than this with probability ≤ ``α``
    (Hoeffding at the point where ``|F − G|`` is largest; see the module docstring)."""
    return math.sqrt(math.log(1 / alpha) * (1 / n + 1 / m) / 2)


def _robust_scale(x: np.ndarray) -> np.ndarray:
    """Normal-equivalent IQR per column, ``(k,)`` (``σ`` for a normal law)."""
    q75, q25 = np.quantile(x, [0.75, 0.25], axis=0)
    return (q75 - q25) / 1.349


def _w1(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.array([stats.wasserstein_distance(a[:, j], b[:, j]) / scale[j] for j in range(a.shape[1])])


def w1_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 between the empirical laws of each row pair, ``a (R, n)``, ``b (R, m)`` → ``(R,)``: ``∫|F_a − F_b|``
    summed over the pooled sorted points. The same number as ``scipy.stats.wasserstein_distance`` row by row, but
    one vectorised pass, for the bootstrap's thousands of resamples."""
    n, m = a.shape[1], b.shape[1]
    z = np.concatenate([a, b], axis=1)
    order = np.argsort(z, axis=1, kind="stable")
    zs = np.take_along_axis(z, order, axis=1)
    from_a = order < n
    gap = np.cumsum(from_a, axis=1) / n - np.cumsum(~from_a, axis=1) / m
    return (np.abs(gap[:, :-1]) * np.diff(zs, axis=1)).sum(axis=1)


def _w1_boot(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None, reps: int, rng: np.random.Generator
             ) -> np.ndarray:
    """``(reps, k)`` W1 of resampled rows (each source resampled jointly over its columns), over ``scale`` or, when
    ``None``, over each resample's own SDE scale; in blocks to bound memory."""
    n, m, k = a.shape[0], b.shape[0], a.shape[1]
    out = np.empty((reps, k))
    block = max(1, 2_000_000 // (n + m))
    for s in range(0, reps, block):
        r = min(block, reps - s)
        ia, ib = rng.integers(0, n, (r, n)), rng.integers(0, m, (r, m))
        for j in range(k):
            ra, rb = a[ia, j], b[ib, j]
            sc = scale[j] if scale is not None else (
                (np.quantile(rb, 0.75, axis=1) - np.quantile(rb, 0.25, axis=1)) / 1.349)
            out[s:s + r, j] = w1_rows(ra, rb) / np.where(sc > 0, sc, np.inf)
    return out


def equivalence_test(network: Any, sde: Any, *, margin: float, level: float = 0.95, stat: str = "ks",
                     scale: float | Sequence[float] | None = None, reps: int = 1000, seed: int = 0,
                     names: Sequence[str] | None = None) -> Equivalence:
    """Is the network's law within ``margin`` of the SDE's? Samples ``(paths,)`` or ``(paths, k)`` per source
    (same ``k``; rows may differ in number).

    ``stat="ks"``: sup-distance of the CDFs, Hoeffding upper and DKW lower bound (no resampling;
    ``reps``/``seed`` unused). ``stat="w1"``: Wasserstein-1 over ``scale`` (per column; default the SDE's
    ``IQR/1.349``), bootstrap bounds from ``reps`` resamples. Each bound is one-sided at ``level``
    (Bonferroni over the ``k`` columns). ``names`` label the columns. Verdict: ``"agrees"`` when the upper bound
    ``< margin``, ``"differs"`` when the lower bound ``> margin``, else ``"inconclusive"``.
    """
    alpha = _check_level(level)
    if stat not in STATS:
        raise DeeplimitError(f"unknown statistic {stat!r}; use one of {', '.join(STATS)}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise DeeplimitError(f"margin must be a positive number (the largest distance that counts as agreement, "
                             f"e.g. 0.05 for KS), got {margin!r}")
    if stat == "ks" and margin >= 1:
        raise DeeplimitError(f"a KS margin of {margin} can never be exceeded (KS ≤ 1); use a margin below 1")
    a, b = _columns(network, "network"), _columns(sde, "SDE")
    if a.shape[1] != b.shape[1]:
        raise DeeplimitError(f"network has {a.shape[1]} columns and SDE {b.shape[1]}; compare the same entries")
    k, n, m = a.shape[1], a.shape[0], b.shape[0]
    names = [f"column {j}" for j in range(k)] if names is None else [str(s) for s in names]
    if len(names) != k:
        raise DeeplimitError(f"{len(names)} names for {k} columns; give one name per column")
    if stat == "ks":
        d = np.array([ks_statistic(a[:, j], b[:, j]) for j in range(k)])
        up = ks_upper_width(n, m, alpha / k)
        down = dkw_epsilon(n, alpha, 2 * k) + dkw_epsilon(m, alpha, 2 * k)
        lo, hi = np.clip(d - down, 0.0, 1.0), np.clip(d + up, 0.0, 1.0)
        method = "Hoeffding upper / DKW lower bound" + (f", Bonferroni over {k}" if k > 1 else "")
    else:
        q = alpha / k
        if not (isinstance(reps, int) and reps * q >= 5):
            raise DeeplimitError(f"reps = {reps!r} resamples cannot place the {q:.2%} quantile of the W1 interval; "
                                 f"use reps ≥ {math.ceil(5 / q)}")
        fixed = scale is not None
        sc = np.broadcast_to(np.asarray(scale, dtype=float), (k,)) if fixed else _robust_scale(b)
        if not (np.isfinite(sc).all() and (sc > 0).all()):
            raise DeeplimitError(f"W1 scale {sc.tolist()} must be positive and finite (a constant SDE column has "
                                 "IQR 0); pass scale=… explicitly")
        d = _w1(a, b, sc)
        boot = _w1_boot(a, b, sc if fixed else None, reps, np.random.default_rng(seed))
        # W1 is biased upward at finite n (it is ≥ |mean difference|), and resampling adds the bias again: the
        # percentile upper bound is conservative, its lower bound covered only ~90% at 95% (simulated); the
        # lower bound takes the smaller of it and the basic (reflected, bias-removing) bound
        q_lo, q_hi = np.quantile(boot, q, axis=0), np.quantile(boot, 1 - q, axis=0)
        lo, hi = np.clip(np.minimum(q_lo, 2 * d - q_hi), 0.0, None), q_hi
        method = (f"bootstrap ({reps}), W1 / {'given scale' if fixed else 'SDE IQR/1.349'}"
                  + (f", Bonferroni over {k}" if k > 1 else ""))
    cols = tuple({"name": names[j], "value": float(d[j]), "lo": float(lo[j]), "hi": float(hi[j])} for j in range(k))
    ci = (float(lo.max()), float(hi.max()))
    return Equivalence(stat, float(d.max()), ci, float(margin), n, m, _verdict(*ci, margin), float(level), method,
                       cols)


def _check_power_args(power: float, columns: int, sde_ratio: float) -> None:
    """The arguments :func:`paths_for_equivalence` and :func:`paths_for_difference` share."""
    if not (isinstance(power, (int, float)) and 0 < power < 1):
        raise DeeplimitError(f"power must lie in (0, 1), e.g. 0.8, got {power!r}")
    if not (isinstance(columns, int) and columns >= 1):
        raise DeeplimitError(f"columns must be a positive integer (entries tested together), got {columns!r}")
    if not (isinstance(sde_ratio, (int, float)) and sde_ratio > 0):
        raise DeeplimitError(f"sde_ratio must be positive (SDE paths per network path), got {sde_ratio!r}")


def paths_for_equivalence(margin: float, *, level: float = 0.95, expected: float = 0.0, power: float = 0.8,
                          columns: int = 1, sde_ratio: float = 1.0) -> int:
    """Network paths (and ``sde_ratio`` × as many SDE paths) at which the KS equivalence test concludes
    ``"agrees"`` with probability ≥ ``power`` when the true distance of every column is ``expected``.

    "agrees" needs ``D̂ + √(ln(k/α)(1/n + 1/m)/2) < margin`` (the upper bound of :func:`equivalence_test`,
    ``k = columns``). ``D̂ ≤ expected + sup|E|`` with ``E = (F_n − F) − (G_m − G)``; at ``expected = 0``,
    ``sup|E| ≈ K·√(1/n + 1/m)`` with ``K`` Kolmogorov's law (``scipy.stats.kstwobign``), and for
    ``expected > 0`` ``D̂`` moves like one Gaussian coordinate, less; so with ``K_p`` the
    ``1 − (1 − power)/k`` quantile, ``n = ((K_p + √(ln(k/α)/2))·√(1 + 1/r) / (margin − expected))²``
    (``r = sde_ratio``). The simulation in the tests reaches the power at this ``n``.
    """
    alpha = _check_level(level)
    if not (isinstance(margin, (int, float)) and 0 < margin < 1):
        raise DeeplimitError(f"margin must lie in (0, 1) for KS, got {margin!r}")
    if not (isinstance(expected, (int, float)) and 0 <= expected < margin):
        raise DeeplimitError(f"expected = {expected!r}: the true distance must lie in [0, margin = {margin}) for "
                             "'agrees' to be reachable; widen the margin")
    _check_power_args(power, columns, sde_ratio)
    c_alpha = math.sqrt(math.log(columns / alpha) / 2)
    k_p = float(stats.kstwobign.ppf(1 - (1 - power) / columns))
    root = (k_p + c_alpha) * math.sqrt(1 + 1 / sde_ratio) / (margin - expected)
    return math.ceil(root**2)


def paths_for_difference(margin: float, expected: float, *, level: float = 0.95, power: float = 0.8,
                         columns: int = 1, sde_ratio: float = 1.0) -> int:
    """Network paths (and ``sde_ratio`` × as many SDE paths) at which the KS test concludes ``"differs"`` with
    probability ≥ ``power`` when the true distance (of the farthest column) is ``expected > margin``: the path
    count a sensitivity control needs.

    "differs" needs ``D̂ − ε_n − ε_m > margin`` (DKW lower bound, ``ε = √(ln(4k/α)/(2n))``, ``k = columns``);
    ``D̂ ≥ |F_n − G_m|(x*)``, Gaussian about ``expected`` with s.d. ≤ ``½√(1/n + 1/m)``, so with ``z_p`` the normal
    ``power`` quantile ``n = ((√(ln(4k/α)/2)(1 + 1/√r) + ½ z_p √(1 + 1/r)) / (expected − margin))²``.
    """
    alpha = _check_level(level)
    if not (isinstance(margin, (int, float)) and 0 < margin < 1):
        raise DeeplimitError(f"margin must lie in (0, 1) for KS, got {margin!r}")
    if not (isinstance(expected, (int, float)) and margin < expected <= 1):
        raise DeeplimitError(f"expected = {expected!r}: the true distance must lie in (margin = {margin}, 1] for "
                             "'differs' to be reachable; lower the margin")
    _check_power_args(power, columns, sde_ratio)
    c = math.sqrt(math.log(4 * columns / alpha) / 2) * (1 + 1 / math.sqrt(sde_ratio))
    z = 0.5 * float(stats.norm.ppf(power)) * math.sqrt(1 + 1 / sde_ratio)
    return math.ceil(((c + z) / (expected - margin)) ** 2)


def exploded_paths(network_exploded: int, sde_exploded: int, n_network: int, n_sde: int, *, margin: float = 0.01,
                   level: float = 0.95) -> Equivalence:
    """Compare the *fractions* of exploded (or otherwise lost) paths: ``value = p_network − p_SDE`` with
    Newcombe's hybrid score interval (Wilson interval per source, combined; sound at zero counts), and
    ``"agrees"`` when the interval lies inside ``(−margin, margin)``, ``"differs"`` when it excludes
    ``[−margin, margin]``."""
    _check_level(level)
    for name, k, n in (("network", network_exploded, n_network), ("SDE", sde_exploded, n_sde)):
        if not (isinstance(n, (int, np.integer)) and n >= 1 and isinstance(k, (int, np.integer)) and 0 <= k <= n):
            raise DeeplimitError(f"{name}: need 0 ≤ exploded ≤ paths with paths ≥ 1, got {k!r} of {n!r}")
    if not (isinstance(margin, (int, float)) and 0 < margin < 1):
        raise DeeplimitError(f"margin must be a difference of fractions in (0, 1), e.g. 0.01, got {margin!r}")
    p1, p2 = network_exploded / n_network, sde_exploded / n_sde
    ci1 = stats.binomtest(int(network_exploded), int(n_network)).proportion_ci(level, method="wilson")
    ci2 = stats.binomtest(int(sde_exploded), int(n_sde)).proportion_ci(level, method="wilson")
    diff = p1 - p2
    lo = diff - math.hypot(p1 - ci1.low, ci2.high - p2)
    hi = diff + math.hypot(ci1.high - p1, p2 - ci2.low)
    verdict = "agrees" if -margin < lo and hi < margin else "differs" if lo > margin or hi < -margin else \
        "inconclusive"
    col = {"name": "exploded fraction", "value": diff, "lo": lo, "hi": hi, "network": int(network_exploded),
           "sde": int(sde_exploded), "network_fraction": p1, "sde_fraction": p2}
    return Equivalence("exploded", float(diff), (float(lo), float(hi)), float(margin), int(n_network), int(n_sde),
                       verdict, float(level), "Newcombe hybrid score", (col,))


def sensitivity_control(network: Any, perturbed: Any | Callable[[int, int], Any], *, margin: float,
                        level: float = 0.95, stat: str = "ks", paths: int | None = None, seed: int = 0,
                        **kwargs: Any) -> Equivalence:
    """The same :func:`equivalence_test` of ``network`` against SDE samples under a perturbed parameter.

    ``perturbed``: the samples, or a function ``(paths, seed) -> samples`` (then called with ``paths``,
    default the number of network rows: the same path count). The claim's "agrees" counts only when this
    comes out ``"differs"`` (:func:`claim_verdict`): the test had the power to see that error.
    """
    if callable(perturbed):
        n = len(_columns(network, "network")) if paths is None else paths
        if not (isinstance(n, int) and n >= 2):
            raise DeeplimitError(f"paths must be an integer ≥ 2 for the perturbed SDE, got {n!r}")
        perturbed = perturbed(n, seed)
    return equivalence_test(network, perturbed, margin=margin, level=level, stat=stat, seed=seed, **kwargs)


def claim_verdict(test: Equivalence, control: Equivalence | None) -> str:
    """``"agrees"`` only when the test agrees *and* the sensitivity control differs; ``"differs"`` when the
    test differs; ``"inconclusive"`` otherwise (including an "agrees" whose control could not see a 20% error)."""
    if test.verdict == "differs":
        return "differs"
    if test.verdict == "agrees" and control is not None and control.verdict == "differs":
        return "agrees"
    return "inconclusive"


def covariance_columns(V: torch.Tensor) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(paths, k)`` samples of every entry of terminal covariances ``V (paths, m, m)`` (ρ^{αβ}, V^{αβ},
    V^{αα}: :func:`~deeplimit.sde.scenarios.covariance_quantities`) and their labels."""
    if V.ndim != 3 or V.shape[-1] != V.shape[-2]:
        raise DeeplimitError(f"need terminal covariances of shape (paths, m, m), got {tuple(V.shape)}")
    q = covariance_quantities(int(V.shape[-1]))
    return np.column_stack([extract(V, *x) for x in q]), tuple(label(*x) for x in q)


def _usable(sol: Any) -> tuple[torch.Tensor, int]:
    """Survivors that did not explode, and how many paths were lost (stopped or exploded)."""
    v = sol.survivors()
    bad = exploded(v)
    return v[~bad], int(sol.stopped.sum()) + int(bad.sum())


def perturbed_preset(preset: Preset, factor: float = 1.2, param: str = "gamma") -> Preset:
    """``preset`` with γ × ``factor`` or ``T = d/n`` × ``factor`` (``d`` rounded; read the real factor from
    ``.T``). For the ReLU ResNet the two are one family (time change: γ×f ≡ T×f²)."""
    if param not in PERTURBED:
        raise DeeplimitError(f"unknown perturbed parameter {param!r}; use one of {', '.join(PERTURBED)}")
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0 and factor != 1):
        raise DeeplimitError(f"factor must be a positive number ≠ 1 (1.2 = 20% off), got {factor!r}")
    if param == "gamma":
        g = preset.gamma * factor
        if not 0 < g <= 1:
            raise DeeplimitError(f"γ = {preset.gamma:g} × {factor:g} = {g:g} leaves (0, 1]; perturb T instead "
                                 "(param='T') or use a factor that keeps γ ≤ 1")
        return replace(preset, gamma=g)
    d = max(1, round(preset.d * factor))
    if d == preset.d:
        raise DeeplimitError(f"d = {preset.d} × {factor:g} rounds to the same depth; raise d or the factor")
    return replace(preset, d=d)


def perturbed_sde_samples(preset: Preset, factor: float = 1.2, param: str = "gamma", *, paths: int | None = None,
                          seed: int = 0) -> np.ndarray:
    """Terminal covariance columns ``(paths', k)`` (:func:`covariance_columns`; exploded and stopped paths left
    out) of the SDE of ``preset`` with γ or ``T`` scaled by ``factor`` — the sensitivity control's samples."""
    p = perturbed_preset(preset, factor, param)
    if paths is not None:
        p = replace(p, paths=int(paths))
    v, _ = _usable(run_sde(p, seed=seed))
    return covariance_columns(v)[0]


@dataclass(frozen=True)
class SdeEquivalence:
    """:func:`sde_equivalence`'s result: the ``test`` (network vs SDE, every covariance entry), the
    sensitivity ``control`` (network vs the perturbed SDE), the ``exploded`` fractions compared, the claim's
    ``verdict`` (:func:`claim_verdict`, and "differs" when the exploded fractions differ) and the ``seconds``."""

    test: Equivalence
    control: Equivalence
    exploded: Equivalence
    verdict: str
    perturbation: str
    seconds: float

    def text(self) -> str:
        return (f"{self.verdict}: {self.test.text()}; control ({self.perturbation}): {self.control.text()}; "
                f"exploded paths: {self.exploded.text()}")

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "test": self.test.to_dict(), "control": self.control.to_dict(),
                "exploded": self.exploded.to_dict(), "perturbation": self.perturbation, "seconds": self.seconds}


def sde_equivalence(preset: Preset, *, margin: float, level: float = 0.95, seed: int = 0,
                    sde_paths: int | None = None, factor: float = 1.2, param: str = "gamma", stat: str = "ks",
                    exploded_margin: float = 0.01) -> SdeEquivalence:
    """Network (``preset.paths`` paths) vs SDE (``sde_paths``, default as many) for one preset, every terminal
    covariance entry at once, with the sensitivity control (SDE with ``param`` × ``factor``, same SDE path
    count) and the exploded fractions. The SDE is cheap next to the network for the ResNet and the block, so
    ``sde_paths`` of several times ``preset.paths`` buys power cheaply (:func:`paths_for_equivalence`'s
    ``sde_ratio``)."""
    t0 = time.perf_counter()
    p_sde = preset if sde_paths is None else replace(preset, paths=int(sde_paths))
    perturbed_preset(preset, factor, param)  # fail on a bad perturbation before the expensive runs
    net, net_lost = _usable(run_network(preset, seed=seed))
    sde, sde_lost = _usable(run_sde(p_sde, seed=seed))
    a, names = covariance_columns(net)
    b, _ = covariance_columns(sde)
    test = equivalence_test(a, b, margin=margin, level=level, stat=stat, names=names, seed=seed)
    ctrl = sensitivity_control(a, lambda k, s: perturbed_sde_samples(preset, factor, param, paths=k, seed=s),
                               margin=margin, level=level, stat=stat, paths=p_sde.paths, seed=seed + 1009,
                               names=names)
    expl = exploded_paths(net_lost, sde_lost, preset.paths, p_sde.paths, margin=exploded_margin, level=level)
    verdict = "differs" if expl.verdict == "differs" else claim_verdict(test, ctrl)
    if verdict == "agrees" and expl.verdict != "agrees":
        verdict = "inconclusive"
    pert = f"{'γ' if param == 'gamma' else 'T'} × {factor:g}"
    return SdeEquivalence(test, ctrl, expl, verdict, pert, time.perf_counter() - t0)


__all__ = ["PERTURBED", "STATS", "VERDICTS", "Equivalence", "SdeEquivalence", "claim_verdict", "covariance_columns",
           "dkw_epsilon", "equivalence_test", "exploded_paths", "ks_statistic", "ks_upper_width",
           "paths_for_difference", "paths_for_equivalence", "perturbed_preset", "perturbed_sde_samples",
           "sde_equivalence", "sensitivity_control", "w1_rows"]
