"""Named SDE studies (spec §4, §6, §7, §9): run one scenario, write its tables, figures and JSON summary.

:func:`run_study` is what ``deeplimit sde`` and the report call. Every study validates all of its settings
before it writes anything, writes each file atomically, and records its ``settings`` in the JSON summary so a
cached result is reused only for the same settings.

* comparisons (``attention``, ``block``, ``resnet``, ``mlp``, ``linear``): SDE vs finite network, KS/W1 with
  bootstrap standard errors, quantiles, a density figure;
* ``ablations``: rank collapse of the attention variants over depth and the log-slope of the median
  covariance against the theory rates ``log λ²`` (no identity) and ``log(λ² + 4γ²)`` (no centring), §6;
* ``stopping`` / ``stopping-map``: median stopping time over γ (and τ0), Figs. 5 and 8.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write, atomic_write_json, ensure_dir, nearest_existing_folder
from deeplimit.nn.theory import ATTENTION_VARIANTS
from deeplimit.sde.names import COMPARISONS, STUDIES, check_study_args
from deeplimit.sde.scenarios import Preset, get_preset

STUDY_VERSION = 2  # bump when a study's computation changes, so cached summaries are recomputed


@dataclass
class StudyResult:
    """What a study wrote: its JSON ``summary`` (also on disk), its main ``table`` and the files."""

    name: str
    summary: dict
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def _bar(items, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, disable=not enabled, desc=desc, leave=False, dynamic_ncols=True)


def _finite_list(name: str, values, lo: float, hi: float, lo_open: bool = False) -> tuple[float, ...]:
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            interval = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
            raise DeeplimitError(f"{name}: every value must be a finite number in {interval}, got {v!r}")
        out.append(float(v))
    if not out:
        raise DeeplimitError(f"{name}: give at least one value")
    return tuple(out)


def study_settings(name: str, *, overrides: dict | None = None, seed: int = 0, bootstrap: int = 100,
                   method: str = "gram", source: str = "network", gammas=None, tau0s=None) -> dict[str, Any]:
    """Validated settings of a study as plain JSON data (raises :class:`DeeplimitError` naming the bad one);
    nothing runs. A cached summary whose ``settings`` equal these can be reused."""
    return _resolve(name, overrides, seed, bootstrap, method, source, gammas, tau0s)[1]


def _resolve(name, overrides, seed, bootstrap, method, source, gammas, tau0s) -> tuple[Preset, dict[str, Any]]:
    check_study_args(name, seed=seed, bootstrap=bootstrap, method=method, source=source)
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "band" in over:
        over["band"] = tuple(over["band"])
    preset = get_preset(name, **over)  # validates every preset field
    settings: dict[str, Any] = {"study": name, "version": STUDY_VERSION, "preset": preset.to_dict(), "seed": seed}
    if name in COMPARISONS:
        settings.update(bootstrap=bootstrap, method=method)
    elif name == "ablations":
        settings.update(method=method)
    else:
        g = _finite_list("gammas", gammas, 0.0, 1.0) if gammas is not None else preset.gammas
        if name == "stopping-map":
            t = _finite_list("tau0s", tau0s, 0.0, 1e12, lo_open=True) if tau0s is not None else preset.tau0s
        else:
            t = (preset.tau0,)
        settings.update(gammas=list(g), tau0s=list(t), source=source)
    return preset, json.loads(json.dumps(settings))


def run_study(name: str, out: str | Path, *, overrides: dict | None = None, seed: int = 0, bootstrap: int = 100,
              method: str = "gram", source: str = "network", gammas=None, tau0s=None,
              samples_out: str | Path | None = None, progress: bool = False) -> StudyResult:
    """Run study ``name`` (one of :data:`STUDIES`) and write ``<out>/<name>.json``, its CSV tables and PNGs.

    ``overrides`` replace fields of the scenario's :class:`~deeplimit.sde.scenarios.Preset` (``n``, ``d``,
    ``m``, ``gamma``, ``tau0``, ``paths``, ``band``, …). ``samples_out`` (comparisons only) also writes the raw
    terminal samples. Settings are validated before anything is written.
    """
    preset, settings = _resolve(name, overrides, seed, bootstrap, method, source, gammas, tau0s)
    if samples_out is not None:
        nearest_existing_folder(Path(samples_out), "samples_out")
    out = ensure_dir(out, "output folder")
    if samples_out is not None:
        ensure_dir(Path(samples_out).parent, "folder of samples_out")
    if name in COMPARISONS:
        res = _comparison(preset, settings, out, samples_out, progress)
    elif name == "ablations":
        res = _ablations(preset, settings, out, progress)
    else:
        res = _stopping(preset, settings, out, progress)
    res.summary["settings"] = settings
    res.files.append(atomic_write_json(out / f"{name}.json", res.summary, default=float))
    return res


def write_samples(path: str | Path, samples: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """One CSV row per path: ``source, path, stopped, V11, V12, …`` (upper triangle of the terminal ``V_d``)."""
    first = next(iter(samples.values()))[0]
    m = first.shape[-1]
    iu = torch.triu_indices(m, m)
    names = [f"V{i + 1}{j + 1}" if m < 10 else f"V{i + 1}_{j + 1}" for i, j in iu.T.tolist()]
    with atomic_write(path, "w") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "path", "stopped", *names])
        for src, (V, stopped) in samples.items():
            vals = V[:, iu[0], iu[1]].double().numpy()
            for k in range(vals.shape[0]):
                w.writerow([src, k, int(stopped[k]), *(repr(float(x)) for x in vals[k])])
    return Path(path)


def _csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, index=False)
    return path


def _comparison(preset: Preset, settings: dict, out: Path, samples_out, progress: bool) -> StudyResult:
    from deeplimit.sde.compare import exploded
    from deeplimit.sde.plots import plot_density
    from deeplimit.sde.scenarios import run_comparison

    name = preset.name
    with _bar(range(1), progress, f"sde {name}: SDE and network, {preset.paths} paths") as bar:
        res = run_comparison(preset, seed=settings["seed"], bootstrap=settings["bootstrap"],
                             method=settings["method"])
        bar.update(1)
    table = res.distances.copy()
    table["sde_exit_fraction"] = res.sde.exit_fraction
    table["network_exit_fraction"] = res.network.exit_fraction
    table["sde_exploded"] = res.sde_exploded
    table["network_exploded"] = res.network_exploded
    files = [_csv(table, out / f"{name}_table.csv"), _csv(res.quantiles, out / f"{name}_quantiles.csv")]
    summary = res.summary()
    summary["quantiles"] = res.quantiles.to_dict(orient="records")
    a, b = res.sde.survivors(), res.network.survivors()
    png = plot_density(a[~exploded(a)], b[~exploded(b)], out / f"{name}.png", "rho",
                       title=f"{name}: terminal ρ¹² at T = d/n = {preset.T:.3g}")
    summary["png"] = str(png)
    files.append(png)
    if samples_out is not None:
        files.append(write_samples(samples_out, {"sde": (res.sde.terminal, res.sde.stopped),
                                                 "network": (res.network.terminal, res.network.stopped)}))
    return StudyResult(name, summary, table, files)


def log_slope(layers: np.ndarray, y: np.ndarray, lo: int = 10, hi: int = 30) -> float:
    """Least-squares slope of ``log y`` over layers ``lo…hi`` (NaN with fewer than two positive points)."""
    sel = (layers >= lo) & (layers <= hi) & (y > 0)
    return float(np.polyfit(layers[sel], np.log(y[sel]), 1)[0]) if sel.sum() >= 2 else float("nan")


def theory_slopes(gamma: float) -> dict[str, float]:
    """Per-layer log growth rate of the covariance without the identity (``log λ²``) and without the centring
    (``log(λ² + 4γ²)``) of shaped attention, λ² = 1 − γ² (spec §6)."""
    lam2 = 1 - gamma**2
    return {"no identity": math.log(lam2) if lam2 > 0 else -math.inf, "no centring": math.log(lam2 + 4 * gamma**2)}


def _ablations(base: Preset, settings: dict, out: Path, progress: bool) -> StudyResult:
    from deeplimit.sde.coefficients import correlation
    from deeplimit.sde.compare import extract
    from deeplimit.sde.plots import plot_vs_depth
    from deeplimit.sde.saveat import SaveAt
    from deeplimit.sde.scenarios import run_network

    rows, rho_curves, cov_curves, slopes = [], {}, {}, {}
    for variant in _bar(list(ATTENTION_VARIANTS), progress, "sde ablations: variants"):
        ns = run_network(replace(base, variant=variant), seed=settings["seed"], method=settings["method"],
                         saveat=SaveAt(every=1))
        layers = ns.layers.numpy()
        absrho = correlation(ns.V)[..., 0, 1].abs().mean(dim=1).numpy()
        med12 = np.array([np.median(extract(ns.V[k], "V", 0, 1)) for k in range(len(layers))])
        abscov = ns.V[..., 0, 1].abs().mean(dim=1).numpy()
        rho_curves[variant], cov_curves[variant] = (layers, absrho), (layers, abscov)
        slopes[variant] = log_slope(layers, np.abs(med12))
        rows += [{"variant": variant, "layer": int(ell), "mean_abs_rho": float(r), "mean_abs_V12": float(c),
                  "median_V12": float(v)} for ell, r, c, v in zip(layers, absrho, abscov, med12)]
    table = pd.DataFrame(rows)
    files = [_csv(table, out / "ablations_table.csv")]
    files.append(plot_vs_depth(rho_curves, out / "ablations.png",
                               title=f"ablations (γ = {base.gamma:.3g}): mean |ρ¹²| per layer"))
    files.append(plot_vs_depth(cov_curves, out / "ablations_cov.png", ylabel="mean |V¹²|",
                               title="ablations: mean |V¹²| per layer", logy=True))
    summary = {"preset": base.to_dict(), "log_median_V12_slope_layers_10_30": slopes,
               "theory_slopes": theory_slopes(base.gamma), "table": table.to_dict(orient="records")}
    return StudyResult("ablations", summary, table, files)


def _stopping(p: Preset, settings: dict, out: Path, progress: bool) -> StudyResult:
    from deeplimit.sde.evidence import compare_stopping_maps, map_agreement
    from deeplimit.sde.plots import plot_stopping_diff, plot_stopping_map, plot_stopping_vs_gamma
    from deeplimit.sde.scenarios import STOP_BAND, StoppingGrid, stopping_samples, stopping_table

    sources = ["network", "sde"] if settings["source"] == "both" else [settings["source"]]
    grid = StoppingGrid(settings["gammas"], settings["tau0s"], n=p.n, d=p.d, m=p.m, paths=p.paths,
                        seed=settings["seed"], band=p.band or STOP_BAND, init_std=p.init_std, dt=p.dt)
    frames, samples, v0_eigmax = [], {}, None
    for src in sources:
        samples[src], v0_eigmax = stopping_samples(grid, src, progress=progress)
        df = stopping_table(samples[src], p.T)
        df.insert(0, "source", src)
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    files = [_csv(table, out / f"{p.name}_table.csv")]
    summary: dict[str, Any] = {"preset": p.to_dict(), "table": table.to_dict(orient="records")}
    if p.name == "stopping-map":
        for src in sources:
            files.append(plot_stopping_map(table[table["source"] == src], out / f"{p.name}_{src}.png",
                                           title=f"median t* ({src}), n = {p.n}, d = {p.d}"))
    else:
        files.append(plot_stopping_vs_gamma(table, out / f"{p.name}.png"))
    if len(sources) == 2:
        # the two maps compared cell by cell, not only by the sign of a rank correlation (issue 12)
        cells = compare_stopping_maps(samples["network"], samples["sde"], p.T, seed=settings["seed"],
                                      v0_eigmax=v0_eigmax, n=p.n)
        files.append(_csv(cells, out / f"{p.name}_cells.csv"))
        if p.name == "stopping-map":
            files.append(plot_stopping_diff(cells, out / f"{p.name}_diff.png", T=p.T,
                                            title=f"median t*, network − SDE (n = {p.n}, d = {p.d}); ✗: disagree"))
        summary["cells"] = cells.to_dict(orient="records")
        summary["agreement"] = map_agreement(cells, T=p.T)
    return StudyResult(p.name, summary, table, files)


__all__ = ["COMPARISONS", "STUDIES", "StudyResult", "log_slope", "run_study", "study_settings", "theory_slopes",
           "write_samples"]
