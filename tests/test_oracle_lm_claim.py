"""The ``oracle-lm`` claim (protocol ``claims.oracle-lm``): the oracle's held-out check on the byte-level LM,
pre-registered with exactly the pilot's design (scripts/oracle_lm_pilot.py at commit f750fcb), decided at the
full tier only, on its own unseen confirmation seeds; its smoke section runs and decides nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.protocol import protocol, seed_values
from deeplimit.transfer.oracle_grids import oracle_claim_groups, oracle_claim_specs, oracle_lm

CLAIM = protocol().claim("oracle-lm")
# The pilot's design as scripts/oracle_lm_pilot.py at f750fcb built it, written out here so that the protocol
# entry (and the script, which now builds its sweeps from that entry) is checked against it, not against itself.
PILOT_FITTED = [(d, s) for d in (2, 4) for s in (800, 1600, 3200)]
PILOT_HELD = [(2, 25600), (32, 3200)]
PILOT_COMMON = {"rule": "completep", "batch_size": 16, "log2_lr": "-9:-3:1"}


def _pilot_specs(seed_set: str, seeds: int, claim: str | None = None) -> dict:
    specs = {"fit": oracle_lm(tier="quick", seed_set=seed_set, claim=claim, depth=[2, 4], samples=[800, 1600, 3200],
                              seeds=seeds, **PILOT_COMMON)}
    for d, s in PILOT_HELD:
        specs[f"held-{d}-{s}"] = oracle_lm(tier="quick", seed_set=seed_set, claim=claim, depth=[d], samples=[s],
                                           seeds=seeds, **PILOT_COMMON)
    return specs


def _seeds_of_everything_but(claim: str) -> set[int]:
    """Every seed the protocol gives to anything but ``claim``: the pilot and shared confirmation sets and every
    other claim's own confirmation seeds."""
    seeds = set(protocol().seeds["pilot"]) | set(protocol().seeds["confirmation"])
    for name, entry in protocol().claims.items():
        if name != claim:
            seeds |= set(entry.get("confirmation_seeds", ()))
    return seeds


def _same_runs(a: dict, b: dict) -> bool:
    """The same sweeps point for point (the descriptions, free text, may differ)."""
    return list(a) == list(b) and all(a[k].axes == b[k].axes and a[k].fixed == b[k].fixed
                                      and a[k].objective == b[k].objective and a[k].metric == b[k].metric for k in a)


def test_the_entry_states_the_oracle_claims_criteria_and_its_pilot():
    mlp = protocol().claim("oracle")
    for key in ("max_abs_log2_error", "max_regret", "min_coverage", "level", "sensitivity_octaves",
                "min_scored_share", "predicted_claim", "predicted_alternative", "naive"):
        assert CLAIM[key] == mlp[key], key
    assert (CLAIM["max_abs_log2_error"], CLAIM["max_regret"], CLAIM["min_coverage"], CLAIM["level"]) == \
        (0.5, 0.005, 0.8, 0.8)
    assert all(CLAIM[k] for k in ("paper", "quote", "statistic"))
    assert "scripts/oracle_lm_pilot.py" in CLAIM["pilot"] and "f750fcb" in CLAIM["pilot"]
    assert "0-1" in CLAIM["pilot"] and "112 runs" in CLAIM["pilot"]


def test_its_confirmation_seeds_are_its_own_and_unseen():
    assert CLAIM["confirmation_seeds"] == [1030, 1031, 1032, 1033, 1034]
    assert not _seeds_of_everything_but("oracle-lm") & set(CLAIM["confirmation_seeds"])
    assert seed_values(3, "confirmation", "oracle-lm") == [1030, 1031, 1032]
    assert seed_values(2, "pilot", "oracle-lm") == [0, 1]


def test_it_is_decided_at_full_only_and_the_lower_tiers_say_what_full_runs():
    from deeplimit.report.reproduce import NOT_AT_TIER, not_run_text

    p = protocol()
    assert "oracle-lm" not in p.tiers["quick"] and "oracle-lm" not in p.tiers["standard"]
    assert p.decides("oracle-lm", "full") and not p.decides("oracle-lm", "standard")
    assert sorted(p.claims["oracle-lm"]["tiers"]) == ["full", "smoke"]
    assert NOT_AT_TIER["oracle-lm"] == {"quick": "full", "standard": "full"}
    runs = sum(len(s) for s in oracle_claim_specs("full", claim="oracle-lm").values())
    assert runs == (6 + 2) * 7 * 3
    for tier in ("quick", "standard"):
        text = not_run_text("oracle-lm", tier)
        assert "it runs at --full" in text and f"{runs} runs of 50–1600 steps" in text, text
    with pytest.raises(DeeplimitError, match="no 'standard' tier"):
        oracle_claim_specs("standard", claim="oracle-lm")


def test_the_full_tier_is_the_pilots_design_on_the_confirmation_seeds():
    fitted, held = oracle_claim_groups("full", claim="oracle-lm")
    assert fitted == PILOT_FITTED and held == PILOT_HELD
    specs = oracle_claim_specs("full", claim="oracle-lm")
    assert _same_runs(specs, _pilot_specs("confirmation", 3, claim="oracle-lm"))
    assert all(s.axes["seed"] == (1030, 1031, 1032) for s in specs.values())
    assert all(s.fixed["data"] == "shakespeare" and s.axes["rule"] == ("completep",) for s in specs.values())
    # the pilot script builds its sweeps from the entry with two pilot seeds: exactly what it ran at f750fcb
    assert _same_runs(oracle_claim_specs("full", seed_set="pilot", claim="oracle-lm", seeds=2),
                      _pilot_specs("pilot", 2))
    assert sum(len(s) for s in _pilot_specs("pilot", 2).values()) == 112
    with pytest.raises(DeeplimitError, match="no oracle claim 'oracle-xl'"):
        oracle_claim_specs("full", claim="oracle-xl")


# --- protocol 1.7: the same design under μP (claims.oracle-lm-mup) -------------------------------------------------
MUP = protocol().claim("oracle-lm-mup")


def test_the_mup_entry_is_the_lm_claim_under_mup_with_its_pilot_and_own_unseen_seeds():
    for key in ("max_abs_log2_error", "max_regret", "min_coverage", "level", "sensitivity_octaves",
                "min_scored_share", "predicted_claim", "predicted_alternative", "naive"):
        assert MUP[key] == CLAIM[key], key
    assert "--rule mup" in MUP["pilot"] and "7321269" in MUP["pilot"] and "112 runs" in MUP["pilot"]
    assert not _seeds_of_everything_but("oracle-lm-mup") & set(MUP["confirmation_seeds"])
    assert seed_values(3, "confirmation", "oracle-lm-mup") == [1060, 1061, 1062]
    assert not protocol().decides("oracle-lm-mup", "standard")


def test_the_mup_full_tier_is_the_mup_pilots_design_on_its_confirmation_seeds():
    """Point for point what ``scripts/oracle_lm_pilot.py --rule mup`` ran at 7321269 (the CompleteP design with
    the rule axis set to mup), on seeds 1060–1062 instead of the pilot's 0–1."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import oracle_lm_pilot
    finally:
        sys.path.pop(0)
    assert oracle_claim_groups("full", claim="oracle-lm-mup") == (PILOT_FITTED, PILOT_HELD)
    specs = oracle_claim_specs("full", claim="oracle-lm-mup")
    assert all(s.axes["seed"] == (1060, 1061, 1062) and s.axes["rule"] == ("mup",) for s in specs.values())
    pilot = oracle_lm_pilot.build_specs("mup")
    as_pilot = oracle_claim_specs("full", seed_set="pilot", claim="oracle-lm-mup", seeds=2)
    assert _same_runs(as_pilot, pilot)
