"""The transfer oracle's exploratory pilot scripts (scripts/oracle_*_pilot.py): they run pilot seeds only, the LM
pilot's default is still the claim's design, and a diverged run stays in the table under the held-out loss."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.protocol import protocol
from deeplimit.transfer.oracle_grids import oracle_claim_specs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import oracle_batch_pilot as batch  # noqa: E402
import oracle_lm_pilot as lm  # noqa: E402
import oracle_pilot_common as common  # noqa: E402
import oracle_width_pilot as width  # noqa: E402

PILOT = set(protocol().seeds["pilot"])


def _all_specs():
    for n in range(1, len(PILOT) + 1):
        for tiny in (False, True):
            yield batch.build_specs(n, tiny)
            yield width.build_specs(n, tiny)
    for rule in lm.RULES:
        for tiny in (False, True):
            yield lm.build_specs(rule, tiny)


def test_every_pilot_sweep_runs_pilot_seeds_only_and_more_seeds_are_refused():
    for specs in _all_specs():
        assert common.spec_seeds(specs) <= PILOT
        common.check_pilot_only(specs)
    for bad in (0, len(PILOT) + 1, True):
        with pytest.raises(DeeplimitError, match="pilot seeds"):
            common.pilot_seed_count(bad)
    confirmation = {"x": oracle_claim_specs("smoke", claim="oracle")["all"]}
    with pytest.raises(DeeplimitError, match="outside the pilot set"):
        common.check_pilot_only(confirmation)


def test_the_lm_pilot_defaults_to_the_claims_design_and_mup_changes_only_the_rule():
    claim = oracle_claim_specs("full", seed_set="pilot", claim="oracle-lm", seeds=lm.PILOT_SEEDS)
    assert lm.build_specs() == claim
    mup = lm.build_specs("mup")
    assert list(mup) == list(claim)
    for k, spec in mup.items():
        assert spec.axes["rule"] == ("mup",)
        assert {a: v for a, v in spec.axes.items() if a != "rule"} == \
            {a: v for a, v in claim[k].axes.items() if a != "rule"}
        assert spec.fixed == claim[k].fixed


def test_the_batch_pilot_runs_each_budget_and_batch_once_on_a_fixed_evaluation_set():
    d = batch.design()
    cells = [(s, b) for spec in batch.build_specs(3).values() for s in spec.axes["samples"]
             for b in spec.axes["batch_size"]]
    want = [(s, b) for s, bs in d["fit_batches"].items() for b in bs] + \
        [(d["held_samples"], b) for b in d["held_batches"]]
    assert sorted(cells) == sorted(want) and len(set(cells)) == len(cells)
    assert all(len(bs) >= 5 for bs in [*d["fit_batches"].values(), d["held_batches"]])  # a 5-point quadratic fits
    for spec in batch.build_specs(3).values():
        assert spec.fixed["eval_batches"] * spec.axes["batch_size"][0] == batch.EVAL_IMAGES


def test_a_diverged_run_stays_in_the_table_as_infinite_under_the_held_out_loss():
    long = pd.DataFrame([
        {"run_id": 0, "step": 10, "metric": "eval_loss", "value": 0.5, "status": "ok", "log2_lr": -9.0},
        {"run_id": 0, "step": 10, "metric": "window_loss", "value": 0.6, "status": "ok", "log2_lr": -9.0},
        {"run_id": 1, "step": 3, "metric": "window_loss", "value": math.inf, "status": "diverged", "log2_lr": -4.0},
    ])
    runs = common.loss_runs([long], "eval_loss").set_index("run_id")
    assert runs.loc[0, "loss"] == 0.5 and runs.loc[1, "loss"] == math.inf
    assert runs.loc[1, "status"] == "diverged" and runs.loc[0, "lr"] == 2.0 ** -9
    assert common.loss_runs([long], "window_loss").set_index("run_id").loc[0, "loss"] == 0.6
