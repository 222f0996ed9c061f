"""The transfer oracle's held-out check on the byte-level LM, on the PILOT seeds (exploratory: a pilot for a
future protocol claim, never a verdict).

    python scripts/oracle_lm_pilot.py --out runs/oracle-lm-pilot

CompleteP Pre-LN transformer (the ``oracle-lm`` grid's model: width 64, 4 heads, AdamW, 64-byte sequences,
Shakespeare), batch 16. The oracle is fitted on depth {2, 4} × data budget {800, 1600, 3200} sequences and
scored, as the report's ``oracle`` claim scores the MLP (per-seed η̂*, per-seed 80% intervals, regret, the naive
forecast and the ±1-octave control: :func:`deeplimit.transfer.oracle_verdict.heldout_validation`), on two groups
it never sees: (2, 25600) = 8× the largest fitted budget and (32, 3200) = 8× the largest fitted depth. Writes
the runs' table and the scores (``oracle_lm_pilot.json``) under ``--out`` and prints the scores.

This design is now the protocol's claim ``oracle-lm`` (``claims.oracle-lm.tiers.full``, decided by
``deeplimit reproduce --full --only oracle-lm`` on its own confirmation seeds); the script builds its sweeps from
that entry (:func:`~deeplimit.transfer.oracle_grids.oracle_claim_specs`) with the pilot's two pilot seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle_grids import oracle_claim_groups, oracle_claim_specs
from deeplimit.transfer.oracle_verdict import heldout_validation, runs_table
from deeplimit.transfer.sweeps import run_transfer_sweep

PILOT_SEEDS = 2  # pilot seeds 0-1: the claim's confirmation seeds are never run here


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/oracle-lm-pilot")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fitted, held = oracle_claim_groups("full", claim="oracle-lm")
    specs = oracle_claim_specs("full", seed_set="pilot", claim="oracle-lm", seeds=PILOT_SEEDS)
    storage = f"sqlite:///{(out / 'sweeps.db').resolve()}"
    runs = runs_table([(run_transfer_sweep(f"oracle-lm-pilot-{k}", spec, storage=storage, run_dir=out / k,
                                           workers=a.workers)[1], spec.metric) for k, spec in specs.items()])
    runs.to_csv(out / "runs.csv", index=False)
    val = heldout_validation(runs, fitted, held, x=("depth", "samples"), lr="lr", loss="loss")
    (out / "oracle_lm_pilot.json").write_text(json.dumps(json_safe(val), indent=1))
    print(json.dumps({k: val[k] for k in ("fit", "oracle", "naive", "shift_plus", "shift_minus")}, indent=1))
    for g in val["groups"]:
        print(g["depth"], g["samples"], "measured", g["measured_log2_lr"], "oracle", g["predicted_log2_lr"],
              [g["lo"], g["hi"]], "naive", g["naive_log2_lr"], "regret", g["regret_oracle"], g["regret_naive"])


if __name__ == "__main__":
    main()
