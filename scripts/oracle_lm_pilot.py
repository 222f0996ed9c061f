"""The transfer oracle's held-out check on the byte-level LM, on the PILOT seeds (exploratory: a pilot for a
future protocol claim, never a verdict).

    python scripts/oracle_lm_pilot.py --out runs/oracle-lm-pilot                 # CompleteP (the claim's design)
    python scripts/oracle_lm_pilot.py --rule mup                                # the same design under muP
    python scripts/oracle_lm_pilot.py --tiny --workers 1 --out /tmp/olp         # the pipeline in ~2 minutes

CompleteP Pre-LN transformer (the ``oracle-lm`` grid's model: width 64, 4 heads, AdamW, 64-byte sequences,
Shakespeare), batch 16. The oracle is fitted on depth {2, 4} × data budget {800, 1600, 3200} sequences and
scored, as the report's ``oracle`` claim scores the MLP (per-seed η̂*, per-seed 80% intervals, regret, the naive
forecast and the ±1-octave control: :func:`deeplimit.transfer.oracle_verdict.heldout_validation`), on two groups
it never sees: (2, 25600) = 8× the largest fitted budget and (32, 3200) = 8× the largest fitted depth. Writes
the runs' table and the scores (``oracle_lm_pilot.json``) under ``--out`` and prints the scores.

This design is now the protocol's claim ``oracle-lm`` (``claims.oracle-lm.tiers.full``, decided by
``deeplimit reproduce --full --only oracle-lm`` on its own confirmation seeds); the script builds its sweeps from
that entry (:func:`~deeplimit.transfer.oracle_grids.oracle_claim_specs`) with the pilot's two pilot seeds.

``--rule mup`` runs exactly that design under μP instead (the claim is CompleteP's: a μP run is a pilot beside
it, never part of it) into its own folder (``runs/oracle-lm-pilot-mup`` by default) and sweeps named
``oracle-lm-pilot-mup-*``, so the two never share a sweep. At base depth 2 the two rules are the same model; they
part with depth (μP does not scale the residual branches or their learning rates with depth). ``--tiny`` runs
the claim's smoke design (1-2 layers, width 16, 32-128 sequences of the stdlib corpus; LR 2^-10 … 2^-2 in two
octaves): it checks the pipeline, not the oracle.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from oracle_pilot_common import provenance, run_sweeps

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.experiments import log2_grid
from deeplimit.transfer.optimum import json_safe
from deeplimit.transfer.oracle_grids import oracle_claim_groups, oracle_claim_specs
from deeplimit.transfer.oracle_verdict import heldout_validation, runs_table

PILOT_SEEDS = 2  # pilot seeds 0-1: the claim's confirmation seeds are never run here
RULES = ("completep", "mup")
TINY_LR = (-10.0, -2.0, 2.0)


def build_specs(rule: str = "completep", tiny: bool = False) -> dict[str, SweepSpec]:
    """The claim's sweeps (its smoke design with ``tiny``) on the pilot seeds, under ``rule``."""
    if rule not in RULES:
        raise DeeplimitError(f"--rule {rule!r}: choose one of {RULES}")
    specs = oracle_claim_specs("smoke" if tiny else "full", seed_set="pilot", claim="oracle-lm", seeds=PILOT_SEEDS)
    out = {}
    for k, spec in specs.items():
        axes = {**spec.axes, "rule": (rule,)}
        if tiny:
            axes["log2_lr"] = tuple(log2_grid(*TINY_LR))
        out[k] = spec if axes == spec.axes else replace(
            spec, axes=axes, description=spec.description.replace("(CompleteP)", f"({rule}: a pilot beside the "
                                                                  "claim)"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="default runs/oracle-lm-pilot (completep), "
                    "runs/oracle-lm-pilot-mup (mup)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rule", default="completep", choices=RULES)
    ap.add_argument("--tiny", action="store_true", help="the claim's smoke design: checks the pipeline only")
    a = ap.parse_args()
    suffix = "" if a.rule == "completep" else f"-{a.rule}"
    out = Path(a.out or f"runs/oracle-lm-pilot{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    fitted, held = oracle_claim_groups("smoke" if a.tiny else "full", claim="oracle-lm")
    specs = build_specs(a.rule, a.tiny)
    meta = provenance()
    t0 = time.perf_counter()
    tables, walls = run_sweeps(specs, out, prefix=f"oracle-lm-pilot{suffix}", workers=a.workers)
    wall = round(time.perf_counter() - t0, 1)
    runs = runs_table([(t, spec.metric) for t, spec in zip(tables, specs.values())])
    runs.to_csv(out / "runs.csv", index=False)
    try:
        val = heldout_validation(runs, fitted, held, x=("depth", "samples"), lr="lr", loss="loss")
    except DeeplimitError as exc:  # too few interior optima is a result of the pilot, not a crash
        print("no fit:", exc)
        val = {"error": str(exc)}
    (out / "oracle_lm_pilot.json").write_text(json.dumps(json_safe(
        {**val, "rule": a.rule, **meta, "workers": a.workers, "wall_s": wall, "sweep_wall_s": walls,
         "n_runs": len(runs)}), indent=1))
    print(f"{a.rule}: {len(runs)} runs, {wall:.0f} s with {a.workers} workers")
    if "error" in val:
        return
    print(json.dumps({k: val[k] for k in ("fit", "oracle", "naive", "shift_plus", "shift_minus")}, indent=1))
    for g in val["groups"]:
        print(g["depth"], g["samples"], "measured", g["measured_log2_lr"], "oracle", g["predicted_log2_lr"],
              [g["lo"], g["hi"]], "naive", g["naive_log2_lr"], "regret", g["regret_oracle"], g["regret_naive"])


if __name__ == "__main__":
    main()
