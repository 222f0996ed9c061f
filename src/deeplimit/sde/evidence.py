"""Evidence that the covariance SDE describes finite networks, with statistics that could fail (issue 12).

* :func:`compare_stopping_maps` / :func:`map_agreement`: the network's and the SDE's stopping-time maps
  (Fig. 8) compared cell by cell: a bootstrap interval of the difference of median ``t*`` per cell, the share
  of cells whose interval meets the tolerance, and the rank correlation between the two maps;
* :func:`stopping_width_check`: the network's median ``t*`` at growing width ``n`` (``d = T n``, same start
  scale) against the SDE's, the measurement that separates a finite-width effect from a bug;
* :func:`convergence_study` / :func:`convergence_verdicts`: KS distance (network vs SDE) of every terminal
  covariance entry as ``n`` grows at fixed ``d/n``, with a fitted log-log slope and its bootstrap interval;
  exploded paths are counted per source, never averaged into a distance;
* :func:`unshaped_control`: the negative control, an unshaped network (standard softmax attention and/or
  plain ReLU) against the shaped SDE, which must be far from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.sde.compare import exploded, extract, ks_distance, label
from deeplimit.sde.scenarios import (
    STOP_BAND,
    Preset,
    StoppingGrid,
    covariance_quantities,
    get_preset,
    run_network,
    run_sde,
    stopping_samples,
)

Cells = dict[tuple[float, float], np.ndarray]


def ks_critical(n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Two-sample KS critical value ``c(α)·√((n_a+n_b)/(n_a n_b))``, ``c(α) = √(−ln(α/2)/2)`` (1.358 at 5%)."""
    if n_a < 1 or n_b < 1:
        raise DeeplimitError(f"KS critical value needs samples on both sides, got {n_a} and {n_b}")
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n_a + n_b) / (n_a * n_b))


def _median_diff_interval(a: np.ndarray, b: np.ndarray, reps: int, rng: np.random.Generator,
                          level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``median(a) − median(b)`` (the two samples resampled independently)."""
    ia = rng.integers(0, a.size, (reps, a.size))
    ib = rng.integers(0, b.size, (reps, b.size))
    d = np.median(a[ia], axis=1) - np.median(b[ib], axis=1)
    q = (1 - level) / 2
    return float(np.quantile(d, q)), float(np.quantile(d, 1 - q))


def compare_stopping_maps(network: Cells, sde: Cells, T: float, *, tol: float = 0.05, reps: int = 400,
                          seed: int = 0, v0_eigmax: np.ndarray | None = None, n: int | None = None) -> pd.DataFrame:
    """Cell-by-cell comparison of two stopping-time maps (outputs of
    :func:`~deeplimit.sde.scenarios.stopping_samples` on the same grid).

    Per cell: ``median_network``, ``median_sde``, ``diff`` (network − SDE), its 95% bootstrap interval
    ``diff_lo, diff_hi``, and ``agree``: the interval meets ``[−tol·T, tol·T]`` (a tolerance for the time
    grids, ``1/n`` vs the SDE's step, and Euler's bias). With ``v0_eigmax`` (eigmax of each path's ``V_0``) and
    ``n``, also ``logit_scale = median eigmax(V_0) / (τ0 √n)``: the size of ``Y/τ`` at the start; the SDE is
    the small-logit expansion of the softmax (spec §2.2–2.3) and describes the network only where it is ≪ 1.
    """
    if set(network) != set(sde):
        raise DeeplimitError("the two stopping maps are on different (γ, τ0) grids; run both with the same grid")
    if not (T > 0 and tol >= 0 and reps >= 10):
        raise DeeplimitError(f"need T > 0, tol ≥ 0 and reps ≥ 10, got T={T}, tol={tol}, reps={reps}")
    rng = np.random.default_rng(seed)
    rows = []
    for (g, t0) in network:
        a, b = np.asarray(network[(g, t0)], float), np.asarray(sde[(g, t0)], float)
        lo, hi = _median_diff_interval(a, b, reps, rng)
        row = {"gamma": g, "tau0": t0, "median_network": float(np.median(a)), "median_sde": float(np.median(b)),
               "diff": float(np.median(a) - np.median(b)), "diff_lo": lo, "diff_hi": hi,
               "agree": bool(lo <= tol * T and hi >= -tol * T)}
        if v0_eigmax is not None and n is not None:
            row["logit_scale"] = float(np.median(v0_eigmax) / (t0 * math.sqrt(n)))
        rows.append(row)
    return pd.DataFrame(rows)


def map_agreement(cells: pd.DataFrame, T: float = 1.0, gap: float = 0.25) -> dict:
    """Summary of :func:`compare_stopping_maps`: ``cells``, ``agree`` (count), ``agree_share``, ``big_gaps``
    (cells with ``|diff| > gap·T``, the issue's count), ``max_abs_diff``, and ``spearman`` (rank correlation
    of the two median maps over the cells; NaN when one map is constant)."""
    a, b = cells["median_network"].to_numpy(), cells["median_sde"].to_numpy()
    rho = float(stats.spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
    return {"cells": int(len(cells)), "agree": int(cells["agree"].sum()),
            "agree_share": float(cells["agree"].mean()) if len(cells) else float("nan"),
            "big_gaps": int((cells["diff"].abs() > gap * T).sum()),
            "max_abs_diff": float(cells["diff"].abs().max()) if len(cells) else float("nan"), "spearman": rho}


def stopping_width_check(gammas: Sequence[float], tau0s: Sequence[float], ns: Sequence[int], *, T: float = 1.0,
                         m: int = 3, paths: int = 48, seed: int = 0, init_std: float = 10.0,
                         band: tuple[float, float] = STOP_BAND, dt: float | None = 0.01) -> pd.DataFrame:
    """Median ``t*`` of the network at each width ``n`` (depth ``d = round(T n)``, start iid N(0, init_std²)
    so ``V_0 ≈ init_std² I`` at every ``n``) beside the SDE's (which does not depend on ``n``).

    Rows: ``gamma, tau0, n, median_network, median_sde, median_sde_fine`` (the SDE at step ``dt/10``: its
    own discretisation error), ``gap`` (network − SDE) and ``logit_scale`` (``init_std²/(τ0 √n)``). If the SDE
    is the limit, ``|gap|`` shrinks as ``n`` grows.
    """
    if len(ns) < 2:
        raise DeeplimitError("give at least two widths ns to see a trend in n")
    grid = StoppingGrid(gammas, tau0s, n=max(ns), d=max(1, round(T * max(ns))), m=m, paths=paths, seed=seed,
                        band=band, init_std=init_std, dt=dt)
    sde, _ = stopping_samples(grid, "sde")
    fine, _ = stopping_samples(replace(grid, dt=(dt or 0.01) / 10), "sde")
    rows = []
    for n in ns:
        net, _ = stopping_samples(replace(grid, n=n, d=max(1, round(T * n))), "network")
        for key, t in net.items():
            ms = float(np.median(sde[key]))
            rows.append({"gamma": key[0], "tau0": key[1], "n": int(n), "median_network": float(np.median(t)),
                         "median_sde": ms, "median_sde_fine": float(np.median(fine[key])),
                         "gap": float(np.median(t)) - ms,
                         "logit_scale": init_std**2 / (key[1] * math.sqrt(n))})
    return pd.DataFrame(rows)


def _convergence_samples(base: Preset, gamma: float, ns: Sequence[int], ratio: float, seed: int
                         ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[str, int], dict[int, int]]:
    """Terminal covariances of the SDE (once) and of the network at each width, exploded paths removed."""
    T = ratio
    sol = run_sde(replace(base, gamma=gamma, n=max(ns), d=round(T * max(ns))), seed=seed)
    a = sol.survivors()
    bad = exploded(a)
    sde_lost = int(sol.stopped.sum()) + int(bad.sum())
    nets, net_lost = {}, {}
    for n in ns:
        p = replace(base, gamma=gamma, n=int(n), d=round(T * n))
        ns_ = run_network(p, seed=seed + 17 * int(n))
        b = ns_.survivors()
        eb = exploded(b)
        nets[int(n)] = b[~eb]
        net_lost[int(n)] = int(ns_.stopped.sum()) + int(eb.sum())
    return a[~bad], nets, {"sde": sde_lost}, net_lost


def convergence_study(kind: str = "resnet", gammas: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
                      ns: Sequence[int] = (60, 120, 240, 480), *, ratio: float = 1 / 3, m: int = 2,
                      paths: int = 2048, seed: int = 0, reps: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KS distance between network and SDE for every terminal covariance entry as the width grows at fixed
    ``T = d/n = ratio`` (spec §9 check 2 run over ``n``).

    Returns ``(table, slopes)``. ``table``: one row per ``(gamma, n, quantity)`` with ``ks``, ``ks_crit``
    (two-sample 5% critical value for the sample sizes), ``n_sde, n_net`` and the paths left out per source
    (``sde_exploded``, ``network_exploded``: stopped, non-finite or eigmax > 1e4, counted not averaged).
    ``slopes``: one row per ``(gamma, quantity)`` with the least-squares slope of ``log KS`` on ``log n`` and its
    95% interval from ``reps`` bootstrap resamples of the paths at every width. Start ``V_0 = (1 − 0.2) I + 0.2
    11ᵀ`` (the ResNet figure's ρ0 = 0.2).
    """
    if len(ns) < 3:
        raise DeeplimitError("give at least three widths ns to fit a slope of KS against n")
    if kind not in ("resnet", "attention", "block"):
        raise DeeplimitError(f"convergence is measured for 'resnet', 'attention' or 'block', not {kind!r}")
    bad = [n for n in ns if not (n >= m and round(ratio * n) >= 1 and abs(ratio * n - round(ratio * n)) < 1e-9)]
    if bad:
        raise DeeplimitError(f"widths {bad} do not give an integer depth d = ratio·n ≥ 1 (ratio = {ratio:g}) with "
                             f"n ≥ m; pick widths that are multiples of 1/ratio, e.g. 60, 120, 240, 480 for 1/3")
    base = replace(get_preset(kind), m=m, paths=paths, rho0=0.2, band=None)
    quantities = covariance_quantities(m)
    rng = np.random.default_rng(seed)
    rows, slope_rows = [], []
    for gamma in gammas:
        a_all, nets, sde_lost, net_lost = _convergence_samples(base, float(gamma), ns, ratio, seed)
        for q, i, j in quantities:
            a = extract(a_all, q, i, j)
            ks_n, boot = [], np.empty((reps, len(ns)))
            for k, n in enumerate(ns):
                b = extract(nets[int(n)], q, i, j)
                ks = ks_distance(a, b)
                ks_n.append(ks)
                rows.append({"gamma": float(gamma), "n": int(n), "d": round(ratio * n),
                             "quantity": label(q, i, j), "ks": ks, "ks_crit": ks_critical(a.size, b.size),
                             "n_sde": a.size, "n_net": b.size, "sde_exploded": sde_lost["sde"],
                             "network_exploded": net_lost[int(n)]})
                for r in range(reps):
                    boot[r, k] = ks_distance(rng.choice(a, a.size), rng.choice(b, b.size))
            x = np.log(np.asarray(ns, float))
            slope = float(np.polyfit(x, np.log(ks_n), 1)[0])
            bs = np.array([np.polyfit(x, np.log(boot[r]), 1)[0] for r in range(reps)])
            slope_rows.append({"gamma": float(gamma), "quantity": label(q, i, j), "slope": slope,
                               "slope_lo": float(np.quantile(bs, 0.025)), "slope_hi": float(np.quantile(bs, 0.975)),
                               "ks_first": ks_n[0], "ks_last": ks_n[-1]})
    return pd.DataFrame(rows), pd.DataFrame(slope_rows)


def convergence_verdicts(table: pd.DataFrame, slopes: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Verdict per ``(gamma, quantity)`` from :func:`convergence_study`'s output.

    * ``converges``: the slope's 95% bootstrap interval lies below 0 (KS falls with ``n``). The percentile
      interval is conservative here: resampled KS is biased upward near its noise floor, which flattens the
      resampled slopes toward 0;
    * ``agrees, no trend``: no resolvable slope, but KS at the largest width is below its critical value at
      family-wise level ``alpha`` (over all rows of ``slopes``): the network already matches the SDE;
    * ``does not converge``: no falling trend and KS at the largest width above that critical value.
    """
    k = max(1, len(slopes))
    c_ratio = math.sqrt(-math.log(alpha / k / 2) / 2) / math.sqrt(-math.log(0.05 / 2) / 2)
    out = []
    for _, s in slopes.iterrows():
        rows = table[(table["gamma"] == s["gamma"]) & (table["quantity"] == s["quantity"])].sort_values("n")
        last = rows.iloc[-1]
        if s["slope_hi"] < 0:
            v = "converges"
        elif last["ks"] <= last["ks_crit"] * c_ratio:
            v = "agrees, no trend"
        else:
            v = "does not converge"
        out.append({"gamma": s["gamma"], "quantity": s["quantity"], "verdict": v})
    return pd.DataFrame(out)


def unshaped_control(p: Preset, sde_terminal: torch.Tensor, *, paths: int = 1024, seed: int = 0,
                     quantity: tuple[str, int, int] = ("rho", 0, 1)) -> dict:
    """Negative control: the *unshaped* network of preset ``p`` (standard softmax attention with temperature
    √n_k for attention layers; plain ReLU, ``s− = 0``, for the MLP part) against the shaped SDE's terminal
    samples ``sde_terminal (B, m, m)``.

    Returns ``{"what", "ks", "ks_crit", "n_sde", "n_net", "exploded"}``. The unshaped network has no SDE limit
    (spec §6, §8: correlations → 1), so a sound comparison must find a KS far above the critical value; a small
    KS would mean the comparison cannot tell shaped from unshaped networks.
    """
    over: dict = {"paths": paths}
    what = []
    if p.kind in ("attention", "block"):
        over["variant"] = "softmax"
        what.append("standard softmax attention (τ = √n_k, no identity, no centring)")
    if p.kind in ("resnet", "block"):
        over["c_minus"] = -math.sqrt(p.n)  # s− = 1 + c−/√n = 0: the plain ReLU
        over["c_plus"] = 0.0
        what.append("plain ReLU (s− = 0)")
    if not what:
        raise DeeplimitError(f"no unshaped control for kind {p.kind!r}; use attention, resnet or block")
    net = run_network(replace(p, **over), seed=seed + 99)
    b = net.survivors()
    eb = exploded(b)
    b = b[~eb]
    a = sde_terminal[~exploded(sde_terminal)]
    q, i, j = quantity
    xa, xb = extract(a, q, i, j), extract(b, q, i, j)
    return {"what": " and ".join(what), "quantity": label(q, i, j), "ks": ks_distance(xa, xb),
            "ks_crit": ks_critical(xa.size, xb.size), "n_sde": int(xa.size), "n_net": int(xb.size),
            "exploded": int(net.stopped.sum()) + int(eb.sum())}


def unshaped_convergence_control(kind: str = "resnet", gamma: float = 0.5, ns: Sequence[int] = (3, 6, 12, 24),
                                 *, ratio: float = 1 / 3, m: int = 2, paths: int = 2048, seed: int = 0) -> pd.DataFrame:
    """The control of :func:`convergence_study`: KS on ρ¹² between the *unshaped* network (see
    :func:`unshaped_control`) at each width and the shaped SDE. One row per ``n`` with ``ks, ks_crit``.

    The unshaped network has no SDE limit, so its KS must stay large as ``n`` grows (it rises: a deeper plain
    ReLU net correlates its tokens more); a KS that fell like the shaped one would mean the falling trend is not
    specific to the shaped limit.
    """
    base = replace(get_preset(kind), m=m, paths=paths, rho0=0.2, band=None, gamma=float(gamma))
    sde = run_sde(replace(base, n=max(ns), d=round(ratio * max(ns))), seed=seed).survivors()
    rows = []
    for n in ns:
        res = unshaped_control(replace(base, n=int(n), d=round(ratio * n)), sde, paths=paths, seed=seed + int(n))
        rows.append({"n": int(n), "ks": res["ks"], "ks_crit": res["ks_crit"], "what": res["what"]})
    return pd.DataFrame(rows)


__all__ = ["compare_stopping_maps", "convergence_study", "convergence_verdicts", "ks_critical", "map_agreement",
           "stopping_width_check", "unshaped_control", "unshaped_convergence_control"]
