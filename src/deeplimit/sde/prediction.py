"""Predict a real model's covariance at initialization from the SDE (spec §3.4–§3.8, §5.5).

Given the embeddings ``X (m, n)`` of one input (or its token covariance ``V0 = X Xᵀ/n``) and the shaped
model's ``d, γ, τ0, c±``, :func:`predict` simulates the covariance SDE up to ``T = d/n`` and returns the law
of the output covariance and the probability that a path leaves the stable band before depth ``d``. Optionally
it draws explicit forward passes of the theory block (fresh weights per path, several seeds) from the same
``X`` and tabulates the agreement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from deeplimit.errors import DeeplimitError, warn
from deeplimit.sde.coefficients import Scenario
from deeplimit.sde.compare import compare_distributions, quantile_table
from deeplimit.sde.events import Band
from deeplimit.sde.samplers import NetworkSamples, sample_network
from deeplimit.sde.solver import Solution, check_V0, solve
from deeplimit.sde.step import Euler

STABLE_BAND = Band(1e-4, 1e4)  # the band of spec §3.8
DEFAULT_QUANTITIES: tuple[tuple[str, int, int], ...] = (
    ("rho", 0, 1),
    ("V", 0, 1),
    ("V", 0, 0),
    ("eigmax", 0, 0),
)


@dataclass
class Prediction:
    """Output of :func:`predict`.

    ``sde``: the SDE solution (``terminal (paths, m, m)``); ``quantiles``: SDE (and network) quantiles;
    ``exit_probability`` ± ``exit_se``: P(leave ``band`` before ``T``) from the SDE; ``network``: pooled
    explicit samples over the seeds (or ``None``); ``comparison``: KS/W1 per quantity and per seed.
    """

    V0: Tensor
    T: float
    sde: Solution
    quantiles: pd.DataFrame
    exit_probability: float
    exit_se: float
    network: NetworkSamples | None = None
    network_exit_probability: float | None = None
    comparison: pd.DataFrame | None = None


def predict(
    X: Tensor | None = None,
    V0: Tensor | None = None,
    *,
    d: int,
    n: int | None = None,
    gamma: float,
    tau0: float = 1.0,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    kind: str = "block",
    heads: int = 1,
    n_k: int | None = None,
    paths: int = 2048,
    seed: int = 0,
    dt: float | None = None,
    band: Band | tuple[float, float] = STABLE_BAND,
    compare: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
    network_paths: int = 256,
    method: str = "explicit",
    quantities: Sequence[tuple[str, int, int]] = DEFAULT_QUANTITIES,
) -> Prediction:
    """Predict the output token covariance of a shaped model at initialization.

    Args:
        X: embeddings ``(m, n)`` of one input; or ``V0 (m, m)`` together with ``n``.
        d: number of blocks (``kind="block"``) or layers; ``T = d/n``.
        gamma, tau0, c_plus, c_minus: shaped hyper-parameters (``λ = sqrt(1 − γ²)``).
        kind: ``block`` (Eq. 11), ``attention`` (Eq. 1) or ``resnet`` (Eq. 4).
        heads, n_k: the SDE covers one head without ``W^O`` (spec §2.7) and does not depend on ``n_k``; with
            ``heads > 1`` the network comparison uses one head of width ``n_k = n // heads`` and a
            warning says
            the prediction is the single-head limit.
        paths, seed, dt, band: SDE sample size, seed, step bound (default §5.4 rule) and stopping band (§3.8).
        compare: also run ``network_paths`` explicit forward passes per seed in ``seeds`` (``method="gram"``
            uses the exact-in-law sampler instead, for large ``n``).
    """
    if X is not None:
        X = torch.as_tensor(X, dtype=torch.float64)
        if X.ndim != 2:
            raise DeeplimitError(f"X must be one input's embeddings of shape (m, n), got {tuple(X.shape)}")
        if n is not None and n != X.shape[1]:
            raise DeeplimitError(f"n = {n} does not match X's width {X.shape[1]}; drop n or fix X")
        n = X.shape[1]
        V0 = X @ X.T / n
        V0 = 0.5 * (V0 + V0.T)
    elif V0 is None or n is None:
        raise DeeplimitError("pass the embeddings X (m, n), or V0 (m, m) together with the width n")
    V0 = torch.as_tensor(V0, dtype=torch.float64)
    check_V0(V0)
    if kind not in ("block", "attention", "resnet"):
        raise DeeplimitError(f"kind must be 'block', 'attention' or 'resnet', got {kind!r}")
    if not (isinstance(d, int) and d >= 1):
        raise DeeplimitError(f"d must be a positive integer number of blocks, got {d!r}")
    if heads < 1 or n % heads:
        raise DeeplimitError(f"heads = {heads} must divide the width n = {n}")
    if heads > 1:
        warn(
            f"the covariance SDE is the single-head limit (spec §2.7); heads = {heads} is modelled as "
            f"one head of width n_k = {n // heads}"
        )
    n_k = n_k or n // heads
    T = d / n
    sc = Scenario(kind, gamma, tau0, c_plus, c_minus)
    h = sc.default_dt() if dt is None else dt
    h = min(h, T)
    event = Band.of(band)
    sol = solve(sc, Euler(), 0.0, T, h, V0, event=event, paths=paths, seed=seed)
    p = sol.exit_fraction
    se = math.sqrt(max(p * (1 - p), 1e-300) / paths)
    samples = {"sde": sol.survivors()}
    net = comp = None
    net_p = None
    if compare:
        nets, rows = [], []
        X0 = X if X is not None else None
        for s in seeds:
            ns = sample_network(
                kind,
                n,
                d,
                None if X0 is not None else V0,
                X0=X0,
                n_k=n_k,
                gamma=gamma,
                tau0=tau0,
                c_plus=c_plus,
                c_minus=c_minus,
                paths=network_paths,
                seed=1000 + s,
                event=event,
                method=method,
            )
            nets.append(ns)
            if ns.survivors().shape[0] >= 2 and samples["sde"].shape[0] >= 2:
                df = compare_distributions(samples["sde"], ns.survivors(), quantities, bootstrap=0)
                df.insert(0, "seed", s)
                df["network_exit_fraction"] = ns.exit_fraction
                rows.append(df)
        net = NetworkSamples(
            nets[0].layers,
            torch.cat([x.V for x in nets], 1),
            torch.cat([x.terminal for x in nets]),
            torch.cat([x.stop_layer for x in nets]),
            torch.cat([x.reason for x in nets]),
            n,
        )
        net_p = net.exit_fraction
        samples["network"] = net.survivors()
        comp = pd.concat(rows, ignore_index=True) if rows else None
    quant = quantile_table({k: v for k, v in samples.items() if v.shape[0] > 0}, quantities)
    return Prediction(V0, T, sol, quant, p, se, net, net_p, comp)
