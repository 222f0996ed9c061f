"""Run a learning-rate transfer sweep over depth with two workers, analyse it, and predict the LR at depth 256.

    python examples/transfer_sweep.py --out runs/example-sweep            # a few minutes
    python examples/transfer_sweep.py --out /tmp/example-sweep --quick    # what CI runs

Re-running resumes: finished runs are read from the Optuna storage, not trained again.
"""

import argparse
from pathlib import Path

from deeplimit.sweep import SweepSpec, create_sweep, launch_workers
from deeplimit.transfer import analyze, log2_grid, transfer_results
from deeplimit.transfer.plots import plot_analysis


def main(out: Path, quick: bool) -> None:
    spec = SweepSpec(
        axes={"rule": ["depth_mup", "blocks_only"],
              "depth": [2, 4] if quick else [4, 8, 16, 32],
              "log2_lr": log2_grid(-10, -6, 2) if quick else log2_grid(-12, -5, 1),
              "seed": [0] if quick else [0, 1]},
        fixed={"model": "mlp-resnet", "width": 16 if quick else 64, "base_width": 16 if quick else 64,
               "base_depth": 4, "steps": 30 if quick else 300, "train_io": False,
               "data": "fashion-mnist"},  # or a path to your own .npz with arrays x, y
        objective="deeplimit.transfer.objectives:train_objective", metric="window_loss")
    storage = f"sqlite:///{(out / 'sweep.db').resolve()}"  # or postgresql+psycopg2://… across machines
    create_sweep("example", spec, storage=storage, run_dir=out)
    launch_workers(storage, "example", n_workers=2, run_dir=str(out))

    analysis = analyze(transfer_results(storage, "example"), metric="window_loss", group="rule", size="depth")
    print(analysis.summary[["rule", "depth", "log2_eta_star", "ci_low", "ci_high", "censored", "best_loss"]])
    for key, text in analysis.verdicts().items():
        print(key[0], "->", text)
    print("figures:", [str(p) for p in plot_analysis(analysis, out)])
    if ("blocks_only",) in analysis.trends:
        print(f"blocks_only: predicted LR at 256 blocks = {analysis.predict_lr('blocks_only', 256):.3g}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("runs/example-sweep"))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    main(a.out, a.quick)
