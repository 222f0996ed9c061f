"""Run one of the protocol's sweep experiments on the PILOT seeds (settings are tuned here, never on the
confirmation seeds) and write its long table, so a tuning decision is a recorded run, not a memory.

    python scripts/pilot.py width-transfer --tier quick --set readout_zero_init=false --out runs/pilot

Prints the sweep's name and where its table went; analyse the table with the same statistics the report uses
(``deeplimit.transfer.statistics``). Decisions taken from a pilot go into docs/ledger.md.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from deeplimit.sweep.create import create_sweep
from deeplimit.sweep.launch import launch_workers
from deeplimit.sweep.results import sweep_status
from deeplimit.transfer.experiments import experiment
from deeplimit.transfer.table import transfer_results


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--tier", default="quick")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/pilot")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    overrides = dict((k, _value(v)) for k, v in (s.split("=", 1) for s in a.set))
    spec = experiment(a.experiment, a.tier, seed_set="pilot", **overrides)
    tag = "-".join([a.experiment, a.tier, "pilot", *(f"{k}-{v}" for k, v in sorted(overrides.items()))])
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'pilot.db').resolve()}"
    create_sweep(tag, spec, storage=storage, run_dir=out / tag)
    if sweep_status(storage, tag).left:
        launch_workers(storage, tag, n_workers=a.workers, run_dir=str(out / tag))
    table = transfer_results(storage, tag)
    path = out / f"{tag}.csv"
    table.to_csv(path, index=False)
    print(f"{tag}: {sweep_status(storage, tag)} -> {path}")


if __name__ == "__main__":
    main()
