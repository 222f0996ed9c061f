"""The ``oracle-width`` claim (protocol ``claims.oracle-width``): the oracle's held-out check over width on the μP
MLP-ResNet, pre-registered from the width pilot (scripts/oracle_width_pilot.py at commit 55070fe) with two changes
fixed before any confirmation run (5 seeds, a half-octave LR grid), decided at the standard tier on its own
unseen confirmation seeds."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.protocol import protocol, seed_values
from deeplimit.transfer.oracle_grids import ORACLE_CLAIMS, oracle_claim_groups, oracle_claim_specs
from deeplimit.transfer.oracle_verdict import heldout_validation

CLAIM = protocol().claim("oracle-width")
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _pilot():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("oracle_width_pilot", SCRIPTS / "oracle_width_pilot.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(SCRIPTS))


def test_the_entry_states_the_oracle_claims_criteria_and_its_pilot():
    mlp = protocol().claim("oracle")
    for key in ("max_abs_log2_error", "max_regret", "min_coverage", "level", "sensitivity_octaves",
                "min_scored_share", "predicted_claim", "predicted_alternative"):
        assert CLAIM[key] == mlp[key], key
    assert "scripts/oracle_width_pilot.py" in CLAIM["pilot"] and "55070fe" in CLAIM["pilot"]
    assert "width exponent held at 0" in CLAIM["beside"] and "not a criterion" in CLAIM["beside"]
    assert ORACLE_CLAIMS["oracle-width"].size == "width"


def test_its_confirmation_seeds_are_its_own_and_unseen():
    others = set(protocol().seeds["pilot"]) | set(protocol().seeds["confirmation"])
    for name, entry in protocol().claims.items():
        if name != "oracle-width":
            others |= set(entry.get("confirmation_seeds", ()))
    assert not others & set(CLAIM["confirmation_seeds"])
    assert seed_values(5, "confirmation", "oracle-width") == [1050, 1051, 1052, 1053, 1054]
    specs = oracle_claim_specs("standard", claim="oracle-width")
    assert {s for spec in specs.values() for s in spec.axes["seed"]} == {1050, 1051, 1052, 1053, 1054}


def test_standard_decides_it_and_quick_says_what_standard_runs():
    from deeplimit.report.reproduce import NOT_AT_TIER, not_run_text

    p = protocol()
    assert p.decides("oracle-width", "standard") and not p.decides("oracle-width", "quick")
    assert NOT_AT_TIER["oracle-width"] == {"quick": "standard"}
    runs = sum(len(s) for s in oracle_claim_specs("standard", claim="oracle-width").values())
    assert runs == (9 + 2) * 11 * 5
    text = not_run_text("oracle-width", "quick")
    assert "it runs at --standard" in text and f"{runs} runs of 128–512 steps" in text, text


def test_the_standard_tier_is_the_pilots_model_and_groups_with_the_registered_changes():
    """Same model, widths, budgets and held-out groups as the pilot; only the seeds and the LR grid differ, as the
    entry says: 5 seeds instead of 3, and a half-octave grid that still spans the pilot's optima by ≥ 1.5 octaves."""
    mod = _pilot()
    d = mod.design()
    fitted, held = oracle_claim_groups("standard", claim="oracle-width")
    assert fitted == d["fitted"] and held == d["held_out"]
    pilot = mod.build_specs(3)
    claim = oracle_claim_specs("standard", claim="oracle-width")
    assert pilot["fit"].fixed == claim["fit"].fixed  # μP, zero readout, depth-2 base, Fashion-MNIST, Adam
    assert pilot["fit"].metric == claim["fit"].metric == "window_loss"
    assert all(s in (0, 1, 2) for s in pilot["fit"].axes["seed"])
    lrs = claim["fit"].axes["log2_lr"]
    assert np.allclose(np.diff(lrs), 0.5) and lrs[0] <= -9.45 - 1.5 - 0.4 and lrs[-1] >= -8.55 + 1.5


def test_the_width_scoring_recovers_a_flat_law_and_rejects_a_shifted_one():
    """heldout_validation over (width, samples) on runs whose η* is flat in width and falls 0.4 octave per
    doubling of data (the pilot's shape): the forecast at 8× the width lands on it; the ±1-octave controls miss."""
    rng = np.random.default_rng(0)
    rows = []
    for w in (32, 64, 128, 512, 1024):
        for n in (4096, 8192, 16384):
            for seed in range(4):
                opt = -3.6 - 0.4 * math.log2(n) + rng.normal(0, 0.1)
                for x in np.arange(-12.0, -6.0, 0.5):
                    rows.append({"width": w, "samples": n, "seed": seed, "lr": 2.0 ** x,
                                 "loss": 0.5 + 0.02 * (x - opt) ** 2})
    runs = pd.DataFrame(rows)
    fitted = [(w, n) for w in (32, 64, 128) for n in (4096, 8192, 16384)]
    val = heldout_validation(runs, fitted, [(512, 16384), (1024, 16384)], x=("width", "samples"))
    assert abs(val["fit"]["exponents"]["width"]) < 0.1
    assert val["oracle"]["mean_abs_log2_error"] < 0.2 and val["oracle"]["coverage"] >= 0.75
    assert val["shift_plus"]["coverage"] == 0 and val["shift_minus"]["mean_regret"] > 0.005
