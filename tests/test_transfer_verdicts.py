"""The report's transfer and coordinate-check verdict rules, fed synthetic runs on both sides of each threshold.

The runs are exact parabolas in log2 LR whose optimum moves by a chosen slope per doubling of the size (each seed
its own slope, so the Student-t interval has a known width): every verdict below is decided by where that interval
and the regret sit against the protocol's margins.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deeplimit.protocol import protocol
from deeplimit.transfer.verdicts import (
    coord_width_verdict,
    depth_transfer_verdict,
    relabelled_runs,
    slope_verdict,
    width_transfer_verdict,
)

GRID = np.arange(-14.0, -1.99, 0.5)
JITTER = (-0.04, -0.02, 0.0, 0.02, 0.04)  # per-seed slope offsets: sd 0.0316, 95% half-width 0.039 with 5 seeds


def rule_runs(rule: str, slope: float, *, sizes=(2, 8, 32), size="depth", curvature=0.01, floor=0.5,
              degrade=1.0, jitter=JITTER) -> pd.DataFrame:
    rows = []
    for seed, d in enumerate(jitter):
        for L in sizes:
            opt = -8.0 + (slope + d) * math.log2(L / sizes[0])
            best = floor * degrade ** math.log2(L / sizes[0]) - 1e-3 * math.log2(L / sizes[0])
            for x in GRID:
                rows.append({"rule": rule, size: L, "seed": seed, "log2_lr": float(x),
                             "value": best + curvature * (x - opt) ** 2})
    return pd.DataFrame(rows)


DEPTH = protocol().claim("depth-transfer")
WIDTH = protocol().claim("width-transfer")


def depth_runs(dm: float, ode: float, sp_degrade: float = 3.0) -> pd.DataFrame:
    return pd.concat([rule_runs("depth_mup", dm), rule_runs("ode", ode), rule_runs("sp", 0.0, degrade=sp_degrade)])


def test_depth_transfer_holds_just_inside_the_margin() -> None:
    v = depth_transfer_verdict(depth_runs(0.2, 0.6), DEPTH)  # Depth-μP interval [0.161, 0.239] ⊂ ±0.25
    assert v.verdict == "holds", v.reason
    assert math.isclose(v.stats["depth_mup"]["slope"], 0.2, abs_tol=1e-6)
    cal = [c for c in v.checks if not c.evidence]
    assert cal and all(c.passed for c in cal)  # the calibration rejects transfer, but is not evidence


def test_depth_transfer_inconclusive_just_outside_the_margin() -> None:
    v = depth_transfer_verdict(depth_runs(0.23, 0.6), DEPTH)  # interval [0.191, 0.269]: straddles 0.25
    assert v.verdict == "inconclusive", v.reason


def test_depth_transfer_partly_when_ode_transfers_too() -> None:
    v = depth_transfer_verdict(depth_runs(0.0, 0.1), DEPTH)
    assert v.verdict == "partly"
    assert "does not reproduce" in v.reason


def test_depth_transfer_does_not_hold_when_depth_mup_shifts() -> None:
    v = depth_transfer_verdict(depth_runs(-0.5, 0.6), DEPTH)
    assert v.verdict == "does not hold", v.reason


def test_depth_transfer_regret_decides_just_inside_and_outside() -> None:
    # slope 0.2 over 4 doublings puts the base η* 0.8 octave off at 32 blocks: regret = c·0.64/0.5
    ok = depth_transfer_verdict(pd.concat([rule_runs("depth_mup", 0.2, curvature=0.008), rule_runs("ode", 0.6)]),
                                DEPTH)
    assert ok.stats["depth_mup"]["verdict"] == "transfers"  # regret 0.7–1.5% by seed: upper end < 2%
    bad = depth_transfer_verdict(pd.concat([rule_runs("depth_mup", 0.2, curvature=0.03), rule_runs("ode", 0.6)]),
                                 DEPTH)
    assert bad.stats["depth_mup"]["verdict"] != "transfers" and bad.verdict == "inconclusive"
    assert bad.stats["depth_mup"]["regret_ci"][0] > DEPTH["margin_regret"]  # the regret alone decided it


def test_a_relabelled_control_is_refused_as_evidence() -> None:
    dm = rule_runs("depth_mup", 0.1)
    bo = relabelled_runs(dm, size="depth", exponent=-0.5, base=4).assign(rule="blocks_only")
    v = depth_transfer_verdict(pd.concat([dm, bo, rule_runs("ode", 0.6), rule_runs("sp", 0.0, degrade=3.0)]),
                               DEPTH)
    refused = [c for c in v.checks if c.name.startswith("blocks_only")]
    assert refused and not refused[0].evidence and "refused as evidence" in refused[0].expectation
    assert v.stats["blocks_only"]["relabelling"] is not None
    # a genuinely different rule with the same η* shift is a control that counts
    other = rule_runs("blocks_only", 0.1 - 0.5, curvature=0.02)
    w = depth_transfer_verdict(pd.concat([dm, other, rule_runs("ode", 0.6), rule_runs("sp", 0.0, degrade=3.0)]),
                               DEPTH)
    counted = [c for c in w.checks if c.name.startswith("blocks_only")]
    assert counted and counted[0].evidence and counted[0].passed


def test_a_relabelled_contrast_cannot_make_the_claim_hold() -> None:
    dm = rule_runs("depth_mup", 0.0)
    ode = relabelled_runs(dm, size="depth", exponent=0.5, base=2).assign(rule="ode")
    v = depth_transfer_verdict(pd.concat([dm, ode, rule_runs("sp", 0.0, degrade=3.0)]), DEPTH)
    assert v.verdict != "holds"


def test_width_transfer_needs_sp_to_shift() -> None:
    mup = rule_runs("mup", 0.0, sizes=(32, 64, 128, 256), size="width")
    sp = rule_runs("sp", -0.9, sizes=(32, 64, 128, 256), size="width")
    assert width_transfer_verdict(pd.concat([mup, sp]), WIDTH).verdict == "holds"
    flat_sp = rule_runs("sp", 0.0, sizes=(32, 64, 128, 256), size="width")
    assert width_transfer_verdict(pd.concat([mup, flat_sp]), WIDTH).verdict == "partly"
    drifting = rule_runs("mup", -0.6, sizes=(32, 64, 128, 256), size="width")
    assert width_transfer_verdict(pd.concat([drifting, sp]), WIDTH).verdict == "does not hold"


@pytest.mark.parametrize(("slopes", "expected"), [
    ((0.18, 0.20, 0.22), "flat"),          # [0.15, 0.25]: just inside
    ((0.20, 0.22, 0.24), "inconclusive"),  # [0.17, 0.27]: just outside
    ((0.40, 0.45, 0.50), "grows"),
    ((-0.50, -0.45, -0.40), "shrinks"),
    ((0.1,), "inconclusive"),               # one seed: no interval
])
def test_slope_verdict_thresholds(slopes, expected) -> None:
    assert slope_verdict(slopes, 0.25).verdict == expected


def test_coord_width_verdict() -> None:
    claim = protocol().claim("coord-check-width")
    flat = {"input": [0.01, -0.02, 0.0], "logits": [0.02, -0.01, 0.0]}
    grows = {"input": [0.0, 0.01, 0.02], "logits": [0.7, 0.8, 0.75]}
    assert coord_width_verdict({"mup": flat, "sp": grows}, claim).verdict == "holds"
    assert coord_width_verdict({"mup": flat, "sp": flat}, claim).verdict == "partly"
    assert coord_width_verdict({"mup": grows, "sp": grows}, claim).verdict == "does not hold"


def test_transformer_depth_verdict() -> None:
    from deeplimit.transfer.verdicts import transformer_depth_verdict

    claim = protocol().claim("transformer-depth")
    sizes = (2, 4, 8, 16)
    cp = rule_runs("completep", 0.0, sizes=sizes)
    movers = pd.concat([rule_runs("depth_mup", 0.5, sizes=sizes), rule_runs("mup", -0.5, sizes=sizes)])
    stay = pd.concat([rule_runs("depth_mup", 0.0, sizes=sizes), rule_runs("mup", -0.5, sizes=sizes)])
    assert transformer_depth_verdict(pd.concat([cp, movers]), claim, learned=True).verdict == "holds"
    assert transformer_depth_verdict(pd.concat([cp, stay]), claim, learned=True).verdict == "partly"
    assert transformer_depth_verdict(pd.concat([cp, movers]), claim, learned=False).verdict == "inconclusive"
    moving = rule_runs("completep", -0.5, sizes=sizes)
    assert transformer_depth_verdict(pd.concat([moving, movers]), claim, learned=True).verdict == "does not hold"


@pytest.mark.parametrize(("k2_slope", "expected"), [
    (0.5, "holds"),            # interval [0.46, 0.54]: beyond +0.25
    (0.2, "does not hold"),    # inside the margin with a small regret: k = 2 transfers over this range
    (0.27, "inconclusive"),    # interval [0.23, 0.31]: straddles the margin
])
def test_block_depth_verdict(k2_slope, expected) -> None:
    from deeplimit.transfer.verdicts import block_depth_verdict

    claim = protocol().claim("block-depth")
    k1 = rule_runs("depth_mup", 0.0, curvature=0.005).assign(block_depth=1)
    k2 = rule_runs("depth_mup", k2_slope, curvature=0.005).assign(block_depth=2)
    v = block_depth_verdict(pd.concat([k1, k2]), claim)
    assert v.verdict == expected, v.reason
    assert v.checks[0].passed  # block depth 1 transfers


def test_a_reconfirmed_claim_has_its_own_unseen_confirmation_seeds() -> None:
    from deeplimit.protocol import seed_values

    own = seed_values(5, "confirmation", "coord-check-width")
    shared = seed_values(5, "confirmation", "depth-transfer")
    assert not set(own) & set(shared) and not set(own) & set(seed_values(5, "pilot"))
