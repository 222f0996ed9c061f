"""``deeplimit sde``: run a named covariance-SDE scenario and compare it with finite networks (spec §4,
§7, §9).

Examples::

    deeplimit sde --scenario attention --m 2 --out runs/att          # Fig. 1 right / Fig. 7 comparison
    deeplimit sde --scenario resnet --gamma 1.0 --samples-out s.csv  # Fig. 3 left, raw samples exported
    deeplimit sde --scenario ablations --out runs/abl                # Fig. 4 (network only)
    deeplimit sde --scenario stopping --out runs/stop                # Fig. 5 right
    deeplimit sde --scenario stopping-map --paths 50 --out runs/map  # Fig. 8 heat map
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.nn.theory import ATTENTION_VARIANTS

COMPARISON = ("attention", "block", "resnet", "mlp", "linear")
SCENARIOS = COMPARISON + ("ablations", "stopping", "stopping-map")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sde`` sub-command to ``subparsers``; it sets ``func(args) -> int``."""
    p = subparsers.add_parser(
        "sde",
        help="simulate a covariance SDE preset and compare it with finite networks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario", default="attention", choices=SCENARIOS, help="preset of spec §4 (default attention)"
    )
    p.add_argument("--n", type=int, help="width (one layer/block = SDE time 1/n)")
    p.add_argument("--d", type=int, help="depth (layers or blocks)")
    p.add_argument("--m", type=int, help="number of tokens (≥ 2)")
    p.add_argument("--gamma", type=float, help="residual branch weight γ (λ = sqrt(1 − γ²))")
    p.add_argument("--tau0", type=float, help="shaped temperature factor τ0")
    p.add_argument("--rho0", type=float, help="start correlation of V0 = (1−ρ0)I + ρ0 11ᵀ")
    p.add_argument("--c-plus", dest="c_plus", type=float, help="shaped-ReLU c+ (s+ = 1 + c+/√n)")
    p.add_argument("--c-minus", dest="c_minus", type=float, help="shaped-ReLU c− (s− = 1 + c−/√n)")
    p.add_argument("--paths", type=int, help="samples on each side")
    p.add_argument("--dt", type=float, help="SDE step bound (default: preset, or min(0.01, 0.008/κ_lin))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"), help="stopping band on eigenvalues")
    p.add_argument(
        "--method",
        default="gram",
        choices=["gram", "cheap", "explicit"],
        help="finite-network sampler (gram/cheap are exact in law; explicit draws all weights)",
    )
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for KS/W1 standard errors")
    p.add_argument(
        "--source",
        default="network",
        choices=["network", "sde", "both"],
        help="stopping scenarios: simulate the network, the SDE, or both",
    )
    p.add_argument("--gammas", type=float, nargs="+", help="stopping scenarios: γ grid")
    p.add_argument("--tau0s", type=float, nargs="+", help="stopping-map: τ0 grid")
    p.add_argument("--out", default="sde_out", help="output directory (CSV, JSON, PNG)")
    p.add_argument(
        "--samples-out",
        dest="samples_out",
        help="CSV of raw terminal samples: source, path, stopped, upper-triangle entries of V_d",
    )
    p.set_defaults(func=main)


def _overrides(args: argparse.Namespace) -> dict:
    keys = ("n", "d", "m", "gamma", "tau0", "rho0", "c_plus", "c_minus", "paths", "dt")
    out = {k: getattr(args, k) for k in keys}
    if args.band is not None:
        out["band"] = tuple(args.band)
    return out


def write_samples(path: str | Path, samples: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """One CSV row per path: ``source, path, stopped, V11, V12, …`` (upper triangle of the terminal
    ``V_d``)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(samples.values()))[0]
    m = first.shape[-1]
    iu = torch.triu_indices(m, m)
    names = [f"V{i + 1}{j + 1}" if m < 10 else f"V{i + 1}_{j + 1}" for i, j in iu.T.tolist()]
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "path", "stopped", *names])
        for src, (V, stopped) in samples.items():
            vals = V[:, iu[0], iu[1]].double().numpy()
            for k in range(vals.shape[0]):
                w.writerow([src, k, int(stopped[k]), *(repr(float(x)) for x in vals[k])])
    return out


def _comparison(args: argparse.Namespace, out: Path) -> dict:
    from deeplimit.sde.plots import plot_density
    from deeplimit.sde.scenarios import get_preset, run_comparison

    preset = get_preset(args.scenario, **_overrides(args))
    res = run_comparison(preset, seed=args.seed, bootstrap=args.bootstrap, method=args.method)
    table = res.distances.copy()
    table["sde_exit_fraction"] = res.sde.exit_fraction
    table["network_exit_fraction"] = res.network.exit_fraction
    table.to_csv(out / f"{args.scenario}_table.csv", index=False)
    res.quantiles.to_csv(out / f"{args.scenario}_quantiles.csv", index=False)
    summary = res.summary()
    summary["quantiles"] = res.quantiles.to_dict(orient="records")
    png = plot_density(
        res.sde.survivors(),
        res.network.survivors(),
        out / f"{args.scenario}.png",
        "rho",
        title=f"{args.scenario}: terminal ρ^{{12}} at T = {preset.T:g}",
    )
    summary["png"] = str(png)
    if args.samples_out:
        write_samples(
            args.samples_out,
            {
                "sde": (res.sde.terminal, res.sde.stopped),
                "network": (res.network.terminal, res.network.stopped),
            },
        )
    print(table.round(4).to_string(index=False))
    return summary


def _slope(layers: np.ndarray, y: np.ndarray, lo: int = 10, hi: int = 30) -> float:
    sel = (layers >= lo) & (layers <= hi) & (y > 0)
    return float(np.polyfit(layers[sel], np.log(y[sel]), 1)[0]) if sel.sum() >= 2 else float("nan")


def _ablations(args: argparse.Namespace, out: Path) -> dict:
    from deeplimit.sde.coefficients import correlation
    from deeplimit.sde.compare import extract
    from deeplimit.sde.plots import plot_vs_depth
    from deeplimit.sde.scenarios import get_preset, run_network

    base = get_preset("ablations", **_overrides(args))
    rows, rho_curves, cov_curves, slopes = [], {}, {}, {}
    for variant in ATTENTION_VARIANTS:
        from dataclasses import replace

        ns = run_network(replace(base, variant=variant), seed=args.seed, method=args.method, save_every=1)
        layers = ns.layers.numpy()
        absrho = correlation(ns.V)[..., 0, 1].abs().mean(dim=1).numpy()
        med12 = np.array([np.median(extract(ns.V[k], "V", 0, 1)) for k in range(len(layers))])
        abscov = ns.V[..., 0, 1].abs().mean(dim=1).numpy()
        rho_curves[variant], cov_curves[variant] = (layers, absrho), (layers, abscov)
        slopes[variant] = _slope(layers, np.abs(med12))
        rows += [
            {
                "variant": variant,
                "layer": int(ell),
                "mean_abs_rho": float(r),
                "mean_abs_V12": float(c),
                "median_V12": float(v),
            }
            for ell, r, c, v in zip(layers, absrho, abscov, med12)
        ]
    pd.DataFrame(rows).to_csv(out / "ablations_table.csv", index=False)
    plot_vs_depth(
        rho_curves, out / "ablations.png", title=f"ablations (γ = {base.gamma:.3g}): mean |ρ^{{12}}|"
    )
    plot_vs_depth(
        cov_curves,
        out / "ablations_cov.png",
        ylabel="mean |V^{12}|",
        title="ablations: mean |V^{12}|",
        logy=True,
    )
    lam2 = 1 - base.gamma**2
    summary = {
        "preset": base.to_dict(),
        "log_median_V12_slope_layers_10_30": slopes,
        "theory_slopes": {"no identity": math.log(lam2), "no centring": math.log(lam2 + 4 * base.gamma**2)},
    }
    print(json.dumps(summary["log_median_V12_slope_layers_10_30"], indent=1))
    return summary


def _stopping(args: argparse.Namespace, out: Path) -> dict:
    from deeplimit.sde.plots import plot_stopping_map, plot_stopping_vs_gamma
    from deeplimit.sde.scenarios import get_preset, stopping_map

    p = get_preset(args.scenario, **_overrides(args))
    gammas = tuple(args.gammas) if args.gammas else p.gammas
    tau0s = tuple(args.tau0s) if args.tau0s else (p.tau0s if args.scenario == "stopping-map" else (p.tau0,))
    band = p.band or (1e-4, 1e4)
    sources = ["network", "sde"] if args.source == "both" else [args.source]
    frames = []
    for src in sources:
        df = stopping_map(
            gammas,
            tau0s,
            n=p.n,
            d=p.d,
            m=p.m,
            paths=p.paths,
            seed=args.seed,
            band=band,
            init_std=p.init_std,
            source=src,
            dt=p.dt,
        )
        df.insert(0, "source", src)
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(out / f"{args.scenario}_table.csv", index=False)
    if args.scenario == "stopping-map":
        for src in sources:
            plot_stopping_map(
                table[table["source"] == src],
                out / f"{args.scenario}_{src}.png",
                title=f"median t* ({src}), n = {p.n}, d = {p.d}",
            )
    else:
        plot_stopping_vs_gamma(table, out / f"{args.scenario}.png")
    print(table.round(4).to_string(index=False))
    return {"preset": p.to_dict(), "table": table.to_dict(orient="records")}


def main(args: argparse.Namespace) -> int:
    """Entry point of ``deeplimit sde``; returns the exit code."""
    torch.set_num_threads(1)  # 2-core target machines: one thread is the fast and stable setting
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeeplimitError(f"cannot create output directory {out}: {exc}; pass a writable --out") from exc
    if args.scenario in COMPARISON:
        summary = _comparison(args, out)
    elif args.scenario == "ablations":
        summary = _ablations(args, out)
    else:
        summary = _stopping(args, out)
    (out / f"{args.scenario}.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"[deeplimit sde] wrote {out}/{args.scenario}.*")
    return 0
