"""``deeplimit sde``: run a named covariance-SDE scenario and compare it with finite networks (spec §4, §7, §9).

Examples:

    deeplimit sde --scenario attention --m 2 --out runs/att          # Fig. 1 right / Fig. 7 comparison
    deeplimit sde --scenario resnet --gamma 1.0 --samples-out s.csv  # Fig. 3 left, raw samples exported
    deeplimit sde --scenario ablations --out runs/abl                # Fig. 4 (network only)
    deeplimit sde --scenario stopping --out runs/stop                # Fig. 5 right
    deeplimit sde --scenario stopping-map --paths 50 --out runs/map  # Fig. 8 heat map
"""

from __future__ import annotations

import argparse

from deeplimit.cli._args import add_run_options
from deeplimit.sde.names import METHODS, SOURCES, STUDIES  # torch-free: the parser never loads torch

PRESET_FLAGS = ("n", "d", "m", "gamma", "tau0", "rho0", "c_plus", "c_minus", "paths", "dt")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sde`` sub-command to ``subparsers``; it sets ``func(args) -> int``."""
    p = subparsers.add_parser("sde", help="simulate a covariance-SDE scenario and compare it with finite networks",
                              description=__doc__)
    p.add_argument("--scenario", default="attention", choices=STUDIES, help="scenario of spec §4")
    g = p.add_argument_group("scenario settings (default: the scenario's own)")
    g.add_argument("--n", type=int, help="width (one layer/block = SDE time 1/n)")
    g.add_argument("--d", type=int, help="depth (layers or blocks)")
    g.add_argument("--m", type=int, help="number of tokens (≥ 2)")
    g.add_argument("--gamma", type=float, help="residual branch weight γ in [0, 1] (λ = sqrt(1 − γ²))")
    g.add_argument("--tau0", type=float, help="shaped temperature factor τ0 > 0")
    g.add_argument("--rho0", type=float, help="start correlation of V0 = (1−ρ0)I + ρ0 11ᵀ")
    g.add_argument("--c-plus", dest="c_plus", type=float, help="shaped-ReLU c+ (s+ = 1 + c+/√n)")
    g.add_argument("--c-minus", dest="c_minus", type=float, help="shaped-ReLU c− (s− = 1 + c−/√n)")
    g.add_argument("--paths", type=int, help="samples on each side")
    g.add_argument("--dt", type=float, help="SDE step bound (default: the scenario's, or min(0.01, 0.008/κ_lin))")
    g.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"),
                   help="stopping band on eigenvalues, 0 < LO < HI (e.g. 1e-4 1e4)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (≥ 0)")
    p.add_argument("--method", default="gram", choices=METHODS,
                   help="finite-network sampler (gram/cheap are exact in law; explicit draws all weights)")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for KS/W1 standard errors (≥ 0)")
    p.add_argument("--source", default="network", choices=SOURCES,
                   help="stopping scenarios: simulate the network, the SDE, or both")
    p.add_argument("--gammas", type=float, nargs="+", help="stopping scenarios: γ grid (default: the scenario's)")
    p.add_argument("--tau0s", type=float, nargs="+", help="stopping-map: τ0 grid (default: the scenario's)")
    p.add_argument("--out", default="sde_out", help="output folder (CSV, JSON, PNG)")
    p.add_argument("--samples-out", dest="samples_out",
                   help="CSV of raw terminal samples: source, path, stopped, upper-triangle entries of V_d")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``deeplimit sde``; returns the exit code."""
    from deeplimit.cli._args import check_seeds, set_threads
    from deeplimit.sde.names import check_study_args

    check_seeds("seed", args.seed)
    check_study_args(args.scenario, seed=args.seed, bootstrap=args.bootstrap, method=args.method, source=args.source)
    from deeplimit.sde.studies import run_study  # torch: only for a command line that passed the checks above

    overrides = {k: getattr(args, k) for k in PRESET_FLAGS}
    overrides["band"] = args.band
    set_threads(args.threads)
    res = run_study(args.scenario, args.out, overrides=overrides, seed=args.seed, bootstrap=args.bootstrap,
                    method=args.method, source=args.source, gammas=args.gammas, tau0s=args.tau0s,
                    samples_out=args.samples_out, progress=not args.quiet)
    print(res.table.round(4).to_string(index=False, max_rows=40))
    if args.scenario == "ablations":
        slopes, theory = res.summary["log_median_V12_slope_layers_10_30"], res.summary["theory_slopes"]
        print("log median V12 slope per layer (layers 10-30): "
              + ", ".join(f"{k} {v:+.4f}" for k, v in slopes.items())
              + "; theory: " + ", ".join(f"{k} {v:+.4f}" for k, v in theory.items()))
    if "agreement" in res.summary:  # --source both on a stopping study: the maps compared cell by cell
        a = res.summary["agreement"]
        print(f"network vs SDE: {a['agree']} of {a['cells']} cells agree (95% interval of the median-t* difference "
              f"meets ±0.05·T); {a['big_gaps']} differ by > 0.25; Spearman {a['spearman']:+.2f}")
    for src in ("sde", "network"):
        if res.summary.get(f"{src}_exploded"):
            print(f"{src}: {res.summary[f'{src}_exploded']} exploded path(s) (eigmax > 1e4) left out of the distances")
    print(f"[deeplimit sde] wrote {', '.join(str(f) for f in res.files)}")
    return 0
