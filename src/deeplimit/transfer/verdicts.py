"""The verdict rules of the report's transfer and coordinate-check claims, as pure functions of run tables.

Each rule takes the runs (the long table of a sweep, or a coordinate-check table) and the claim's entry of the
frozen protocol (``deeplimit/protocol.toml``: margins, predicted values, the contrast and the controls) and
returns a :class:`ClaimVerdict` — "holds", "partly", "does not hold" or "inconclusive" — with the statistics behind
it and every control with what it could have shown. The report only calls these and draws the result; the unit
tests feed them synthetic runs on both sides of every threshold.

Controls come in two kinds (:class:`Check`): *evidence* — a rule or setting that could fail on its own (ODE's
η* moving with depth, SP's shift over width) — and *calibration* — a relabelling of the claim's own runs (the
(½, 0) rule with input and readout frozen is Depth-μP with its LR multiplied by m_L^−½). A calibration shows the
estimator's power (it must reject transfer at the same sample size) and is never counted as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.analysis import paired_difference
from deeplimit.transfer.statistics import (
    TransferTest,
    paired_slope_difference,
    relabelling,
    transfer_test,
)

__all__ = ["Check", "ClaimVerdict", "SlopeVerdict", "depth_transfer_verdict", "width_transfer_verdict",
           "transformer_depth_verdict", "block_depth_verdict", "slope_verdict", "coord_width_verdict",
           "relabelled_runs"]


@dataclass(frozen=True)
class Check:
    """A control beside a claim. ``passed``: it behaved as the claim predicts (None: not decided). ``evidence``:
    False for a calibration (a relabelling of the claim's own runs), which is shown but never counted."""

    name: str
    expectation: str
    measured: str
    passed: bool | None
    evidence: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "expectation": self.expectation, "measured": self.measured,
                "passed": self.passed, "evidence": self.evidence}


@dataclass(frozen=True)
class ClaimVerdict:
    """A claim's verdict, its one-line reason, the controls, and the statistics behind it (JSON-able)."""

    verdict: str
    reason: str
    checks: tuple[Check, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)


def _rule_runs(runs: pd.DataFrame, group: str, rule: str) -> pd.DataFrame:
    return runs[runs[group].astype(str) == rule]


def relabelled_runs(runs: pd.DataFrame, *, size: str, exponent: float, base: float) -> pd.DataFrame:
    """The runs with their LR relabelled by (size/base)^exponent: what a rule that differs from this one only by
    that LR factor would measure, exactly (e.g. (½, 0) = Depth-μP with LR × (L/L₀)^−½ when U, V are frozen)."""
    out = runs.copy()
    out["log2_lr"] = out["log2_lr"].astype(float) + exponent * np.log2(out[size].astype(float) / float(base))
    return out


def _claim_outcome(test: TransferTest) -> str:
    """The claim rule's outcome: "transfers", "degrades", "shifts" only when its slope interval lies wholly beyond
    the margin (a minimum-effect test: a slope that is non-zero but inside the margin refutes nothing), else
    "inconclusive"."""
    lo, hi = test.slope_ci
    if test.verdict == "shifts" and not (lo > test.margin or hi < -test.margin):
        return "inconclusive"
    return test.verdict


def _why_not(test: TransferTest) -> str:
    if test.verdict == "shifts":  # significant but inside the margin: neither transfer nor a refuting shift
        lo, hi = test.slope_ci
        return (f"inconclusive: the slope interval [{lo:+.2f}, {hi:+.2f}] per doubling excludes 0 but is not beyond "
                f"±{test.margin:g} ({test.text()})")
    return test.reason


def _transfer_check(name: str, expectation: str, test: TransferTest, ok: tuple[str, ...]) -> Check:
    passed = None if test.verdict == "inconclusive" else test.verdict in ok
    return Check(name, expectation, f"{test.text()} → {test.verdict}", passed)


def _deeper_not_worse(runs: pd.DataFrame, size: str, bound: float):
    """Paired by seed: best loss at the largest size minus at the smallest; 'not worse' when the interval's upper
    end is at most ``bound`` nats."""
    best = runs.groupby([size, "seed"])["value"].min()
    sizes = sorted(runs[size].unique())
    lo, hi = best.xs(sizes[0], level=size), best.xs(sizes[-1], level=size)
    seeds = sorted(set(lo.index) & set(hi.index), key=str)
    diff = paired_difference(hi.loc[seeds].to_numpy(), lo.loc[seeds].to_numpy())
    return diff, bool(diff.n >= 2 and diff.hi <= bound)


def depth_transfer_verdict(runs: pd.DataFrame, claim: Mapping[str, Any], *, size: str = "depth",
                           group: str = "rule", base_depth: float | None = None) -> ClaimVerdict:
    """TP6 Figs. 10–11 under the protocol's ``depth-transfer`` entry.

    "holds": the claim rule (Depth-μP) transfers (slope interval inside ±margin_slope per doubling and regret below
    margin_regret), deeper is not worse, the contrast (ODE) has a larger slope than Depth-μP paired by seed
    (interval below 0 for Depth-μP − ODE) and the negative control (SP) shifts or degrades. "partly": Depth-μP
    transfers and deeper is not worse but the paper's contrast or a control does not reproduce here. "does not
    hold": Depth-μP shifts or degrades. Otherwise "inconclusive". A control whose runs are an exact relabelling of
    Depth-μP's is shown as a calibration and never counted.
    """
    margin, regret = float(claim["margin_slope"]), float(claim["margin_regret"])
    main, contrast, negative = claim["claim_rule"], claim.get("contrast"), claim.get("negative_control")
    rules = set(runs[group].astype(str))
    if main not in rules:
        raise DeeplimitError(f"depth transfer needs runs of {main!r}; the table has {sorted(rules)}")
    sizes = sorted(runs[size].unique())
    base = float(base_depth if base_depth is not None else sizes[0])
    dm_runs = _rule_runs(runs, group, main)
    dm = transfer_test(dm_runs, size=size, margin=margin, regret_margin=regret)
    dm_outcome = _claim_outcome(dm)
    checks: list[Check] = []
    stats: dict[str, Any] = {main: dm.to_dict()}

    # Calibration: Depth-μP's own runs with the LR relabelled as (½, 0) would have them. The estimator must call
    # that "shifts" (−½ per doubling) at this sample size, or a "transfers" here would carry no power.
    cal_slope = float(claim.get("calibration_slope", -0.5))
    cal = transfer_test(relabelled_runs(dm_runs, size=size, exponent=cal_slope, base=base), size=size,
                        margin=margin, regret_margin=regret, predicted=dm.slope + cal_slope)
    checks.append(Check(f"calibration: {main} relabelled by {cal_slope:+g} per doubling",
                        "the estimator rejects transfer for a known shift at this sample size: 'shifts'",
                        f"{cal.text()} → {cal.verdict}", cal.verdict == "shifts", evidence=False))
    stats["calibration"] = cal.to_dict()

    calibration_rule = claim.get("calibration")
    if calibration_rule and calibration_rule in rules:  # run at this tier: check that it really is a relabelling
        rel = relabelling(dm_runs, _rule_runs(runs, group, calibration_rule), size=size)
        bo = transfer_test(_rule_runs(runs, group, calibration_rule), size=size, margin=margin,
                           regret_margin=regret, predicted=dm.slope + cal_slope)
        if rel is not None:
            checks.append(Check(f"{calibration_rule} (a relabelling of {main})", "refused as evidence: its losses "
                                f"equal {main}'s at a relabelled LR, so its slope is {main}'s {cal_slope:+g} by "
                                "construction", f"{rel.text()}; {bo.text()} → {bo.verdict}",
                                bo.verdict == "shifts", evidence=False))
        else:
            checks.append(_transfer_check(f"{calibration_rule} over depth", f"η* shifts by {cal_slope:+g} per "
                                          "doubling: 'shifts'", bo, ("shifts",)))
        stats[calibration_rule] = {**bo.to_dict(), "relabelling": None if rel is None else rel.to_dict()}

    contrast_ok: bool | None = None
    if contrast and contrast in rules:
        c_runs = _rule_runs(runs, group, contrast)
        ct = transfer_test(c_runs, size=size, margin=margin, regret_margin=regret)
        pair = paired_slope_difference(dm_runs, c_runs, size=size)
        rel = relabelling(dm_runs, c_runs, size=size)
        contrast_ok = None if pair.verdict == "no difference shown" else pair.verdict == "a < b"
        measured = f"{contrast}: {ct.text()} → {ct.verdict}; {main} − {contrast}: {pair.text()}"
        if rel is not None:
            measured += f"; {rel.text()} — refused as evidence"
            contrast_ok = None
        checks.append(Check(f"contrast: {contrast} over depth", f"η* grows with depth under {contrast} "
                            f"(TP6 Fig. 11): {main} − {contrast} slope below 0", measured, contrast_ok,
                            evidence=rel is None))
        stats[contrast] = ct.to_dict()
        stats[f"{main}_minus_{contrast}"] = pair.to_dict()
        if ct.verdict == "transfers":
            contrast_ok = False  # the paper's contrast does not reproduce at this scale: ODE transfers too
    if negative and negative in rules:
        nt = transfer_test(_rule_runs(runs, group, negative), size=size, margin=margin, regret_margin=regret)
        checks.append(_transfer_check(f"{negative} over depth", "η* shifts and/or the loss degrades: 'shifts' or "
                                      "'degrades'", nt, ("shifts", "degrades")))
        stats[negative] = nt.to_dict()

    deeper, not_worse = _deeper_not_worse(dm_runs, size, float(claim.get("deeper_not_worse", 0.02)))
    stats["deeper_minus_shallower"] = {**deeper.to_dict(), "text": deeper.text("nats")}
    evidence = [c for c in checks if c.evidence]
    if dm_outcome in ("shifts", "degrades"):
        return ClaimVerdict("does not hold", f"{main} {dm.verdict}: {dm.reason}", tuple(checks), stats)
    if dm_outcome != "transfers":
        return ClaimVerdict("inconclusive", f"{main}: {_why_not(dm)}", tuple(checks), stats)
    if not not_worse:
        return ClaimVerdict("inconclusive", f"{main} transfers but deeper-not-worse was not shown "
                            f"({deeper.text('nats')})", tuple(checks), stats)
    if all(c.passed for c in evidence) and cal.verdict == "shifts" and contrast_ok:
        return ClaimVerdict("holds", f"{main} transfers ({dm.text()}), deeper is not worse, {contrast}'s η* grows "
                            f"faster than {main}'s and every control fails as predicted", tuple(checks), stats)
    if contrast_ok is False:
        why = (f"the paper's contrast does not reproduce at this scale: {contrast} transfers too"
               if stats.get(contrast, {}).get("verdict") == "transfers" else
               f"{contrast}'s η* does not grow faster than {main}'s")
    else:
        failed = [c.name for c in evidence if not c.passed]
        why = f"not shown: {', '.join(failed)}" if failed else "the estimator's calibration did not reject"
    return ClaimVerdict("partly", f"{main} transfers and deeper is not worse, but {why}", tuple(checks), stats)


def width_transfer_verdict(runs: pd.DataFrame, claim: Mapping[str, Any], *, size: str = "width",
                           group: str = "rule") -> ClaimVerdict:
    """TP5 under the protocol's ``width-transfer`` entry: "holds" when μP transfers and SP — a parametrization that
    can fail on its own — shifts (consistent with its predicted slope) or degrades at the same sample size;
    "partly" when μP transfers but SP was not shown to shift; "does not hold" when μP shifts or degrades."""
    margin, regret = float(claim["margin_slope"]), float(claim["margin_regret"])
    main, negative = claim["claim_rule"], claim.get("negative_control")
    rules = set(runs[group].astype(str))
    if main not in rules:
        raise DeeplimitError(f"width transfer needs runs of {main!r}; the table has {sorted(rules)}")
    mt = transfer_test(_rule_runs(runs, group, main), size=size, margin=margin, regret_margin=regret)
    mt_outcome = _claim_outcome(mt)
    stats: dict[str, Any] = {main: mt.to_dict()}
    checks: list[Check] = []
    if negative and negative in rules:
        # a minimum-effect test in the predicted direction: SP's η* must move toward smaller LR by more than the
        # margin per doubling (its interval wholly below −margin), or its loss must degrade
        nt = transfer_test(_rule_runs(runs, group, negative), size=size, margin=margin, regret_margin=regret)
        lo, hi = nt.slope_ci
        passed = (True if nt.verdict == "degrades" or hi < -margin else
                  False if lo > -margin else None)
        checks.append(Check(f"{negative} over width", f"η* shifts toward smaller LR by more than {margin:g} per "
                            "doubling (interval below −margin), or the loss degrades",
                            f"{nt.text()} → {nt.verdict}", passed))
        stats[negative] = nt.to_dict()
    if mt_outcome in ("shifts", "degrades"):
        return ClaimVerdict("does not hold", f"{main} {mt.verdict}: {mt.reason}", tuple(checks), stats)
    if mt_outcome != "transfers":
        return ClaimVerdict("inconclusive", f"{main}: {_why_not(mt)}", tuple(checks), stats)
    if checks and all(c.passed for c in checks):
        return ClaimVerdict("holds", f"{main} transfers ({mt.text()}) and {negative} shifts at the same sample size",
                            tuple(checks), stats)
    return ClaimVerdict("partly", f"{main} transfers, but {negative}'s shift was not shown (the test's power "
                        "against a real shift is not shown)", tuple(checks), stats)


@dataclass(frozen=True)
class SlopeVerdict:
    """Mean of per-seed log2 slopes per doubling with a Student-t interval, judged against ±margin: "flat"
    (interval inside), "grows" (interval above +margin), "shrinks" (below −margin), else "inconclusive"."""

    slope: float
    ci: tuple[float, float]
    n: int
    margin: float
    verdict: str

    def text(self) -> str:
        lo, hi = self.ci
        return f"{self.slope:+.2f} [{lo:+.2f}, {hi:+.2f}] → {self.verdict}"

    def to_dict(self) -> dict[str, Any]:
        f = lambda v: None if not math.isfinite(v) else round(float(v), 4)
        return {"slope": f(self.slope), "ci": [f(self.ci[0]), f(self.ci[1])], "n": self.n, "margin": self.margin,
                "verdict": self.verdict}


def slope_verdict(per_seed: Sequence[float], margin: float, level: float = 0.95) -> SlopeVerdict:
    """Judge per-seed slopes (log2 per doubling) against ±``margin`` with a Student-t ``level`` interval."""
    v = np.asarray([x for x in per_seed if math.isfinite(x)], dtype=float)
    n = len(v)
    if n < 2:
        mean = float(v.mean()) if n else math.nan
        return SlopeVerdict(mean, (math.nan, math.nan), n, margin, "inconclusive")
    mean, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    lo, hi = mean - half, mean + half
    verdict = ("flat" if -margin <= lo and hi <= margin else "grows" if lo > margin else
               "shrinks" if hi < -margin else "inconclusive")
    return SlopeVerdict(mean, (lo, hi), n, margin, verdict)


def coord_width_verdict(slopes: Mapping[str, Mapping[str, Sequence[float]]], claim: Mapping[str, Any]
                        ) -> ClaimVerdict:
    """TP5's coordinate check under the protocol's ``coord-check-width`` entry.

    ``slopes``: rule → site → per-seed log2 slope per doubling of width of the change from init. "holds": every
    site of the claim rule (μP) is flat and the negative control (SP) grows at its logits (a check that can fail
    on its own, at the same seeds); "partly": μP flat but SP not shown to grow; "does not hold": a μP site grows
    or shrinks; else "inconclusive"."""
    margin = float(claim["margin_slope"])
    main, negative = claim["claim_rule"], claim.get("negative_control")
    if main not in slopes:
        raise DeeplimitError(f"the width coordinate check needs slopes of {main!r}; got {sorted(slopes)}")
    per_site = {site: slope_verdict(v, margin) for site, v in slopes[main].items()}
    stats: dict[str, Any] = {main: {s: v.to_dict() for s, v in per_site.items()}}
    checks: list[Check] = []
    if negative and negative in slopes:
        neg = {site: slope_verdict(v, margin) for site, v in slopes[negative].items()}
        stats[negative] = {s: v.to_dict() for s, v in neg.items()}
        lg = neg.get("logits")
        passed = None if lg is None or lg.verdict == "inconclusive" else lg.verdict == "grows"
        checks.append(Check(f"{negative} over width", "the logits' change grows with width: 'grows'",
                            "; ".join(f"{s} {v.text()}" for s, v in neg.items()), passed))
    verdicts = {v.verdict for v in per_site.values()}
    text = "; ".join(f"{s} {v.text()}" for s, v in per_site.items())
    if verdicts & {"grows", "shrinks"}:
        return ClaimVerdict("does not hold", f"{main} is not flat over width: {text}", tuple(checks), stats)
    if verdicts != {"flat"}:
        return ClaimVerdict("inconclusive", f"{main}: a site's interval straddles ±{margin:g}: {text}",
                            tuple(checks), stats)
    if checks and all(c.passed for c in checks):
        return ClaimVerdict("holds", f"{main} flat at every site (|slope| interval within ±{margin:g}) and "
                            f"{negative}'s logits grow", tuple(checks), stats)
    return ClaimVerdict("partly", f"{main} is flat, but {negative} was not shown to grow, so the check's power is "
                        "not shown", tuple(checks), stats)


def _shift_check(name: str, expectation: str, test: TransferTest, margin: float) -> Check:
    """A control that must move: passed when its slope interval lies wholly beyond ±margin or it degrades, failed
    when it transfers, undecided otherwise."""
    lo, hi = test.slope_ci
    passed = (True if test.verdict == "degrades" or lo > margin or hi < -margin else
              False if test.verdict == "transfers" else None)
    return Check(name, expectation, f"{test.text()} → {test.verdict}", passed)


def transformer_depth_verdict(runs: pd.DataFrame, claim: Mapping[str, Any], *, learned: bool, size: str = "depth",
                              group: str = "rule") -> ClaimVerdict:
    """CompleteP's depth transfer for Pre-LN transformers (protocol ``transformer-depth``): "holds" when CompleteP
    transfers (slope and regret inside their margins) and both controls (α = ½ and μP without depth scaling) move
    beyond the margin or degrade; "partly" when a control does not; "does not hold" when CompleteP moves beyond the
    margin or degrades. ``learned``: a model got clearly below the corpus's bigram entropy — without that the LR
    optima measure noise and the verdict is "inconclusive (no power)"."""
    margin, regret = float(claim["margin_slope"]), float(claim["margin_regret"])
    rules = set(runs[group].astype(str))
    if runs[size].nunique() < 2:
        return ClaimVerdict("inconclusive", f"one {size} at this tier: no slope to measure", (), {})
    if "completep" not in rules:
        raise DeeplimitError(f"transformer depth needs runs of 'completep'; the table has {sorted(rules)}")
    cp = transfer_test(_rule_runs(runs, group, "completep"), size=size, margin=margin, regret_margin=regret)
    stats: dict[str, Any] = {"completep": cp.to_dict()}
    checks = []
    for rule, what in (("depth_mup", "α = ½ is brittle for transformers (TP6 §10.3)"),
                       ("mup", "μP without depth scaling drifts")):
        if rule in rules:
            t = transfer_test(_rule_runs(runs, group, rule), size=size, margin=margin, regret_margin=regret)
            checks.append(_shift_check(f"{rule} over depth", f"{what}: slope interval beyond ±{margin:g} per "
                                       "doubling, or the loss degrades", t, margin))
            stats[rule] = t.to_dict()
    if not learned:
        return ClaimVerdict("inconclusive", "no power: no model got clearly below the corpus's bigram entropy, so "
                            "the LR optima measure noise", tuple(checks), stats)
    outcome = _claim_outcome(cp)
    if outcome in ("shifts", "degrades"):
        return ClaimVerdict("does not hold", f"CompleteP {cp.verdict}: {cp.reason}", tuple(checks), stats)
    if outcome != "transfers":
        return ClaimVerdict("inconclusive", f"CompleteP: {_why_not(cp)}", tuple(checks), stats)
    if checks and all(c.passed for c in checks):
        return ClaimVerdict("holds", f"CompleteP transfers ({cp.text()}) and both controls move", tuple(checks),
                            stats)
    return ClaimVerdict("partly", "CompleteP transfers, but not shown to move: "
                        + ", ".join(c.name for c in checks if not c.passed), tuple(checks), stats)


def block_depth_verdict(runs: pd.DataFrame, claim: Mapping[str, Any], *, size: str = "depth",
                        group: str = "block_depth") -> ClaimVerdict:
    """TP6 §9 (protocol ``block-depth``): with two matrices per branch the optimal LR moves with depth under
    Depth-μP. "holds" when block depth 2's slope interval lies beyond ±margin per doubling; "does not hold" when
    block depth 2 transfers (slope and regret inside their margins) over the depths run; otherwise "inconclusive".
    Block depth 1 is shown beside it (it should transfer), with the paired per-seed |slope₂| − |slope₁|."""
    margin, regret = float(claim.get("margin_slope", 0.25)), float(claim.get("margin_regret", 0.02))
    if runs[size].nunique() < 2:
        return ClaimVerdict("inconclusive", f"one {size} at this tier: no slope to measure", (), {})
    tests = {k: transfer_test(runs[runs[group].astype(int) == k], size=size, margin=margin, regret_margin=regret)
             for k in (1, 2) if (runs[group].astype(int) == k).any()}
    if 2 not in tests:
        raise DeeplimitError("block depth needs runs with block_depth 2")
    stats: dict[str, Any] = {f"block_depth_{k}": t.to_dict() for k, t in tests.items()}
    checks = []
    if 1 in tests:
        checks.append(Check("block depth 1 over depth", "transfers (the rule's own claim at k = 1)",
                            f"{tests[1].text()} → {tests[1].verdict}",
                            None if tests[1].verdict == "inconclusive" else tests[1].verdict == "transfers"))
        common = sorted(set(tests[1].per_seed) & set(tests[2].per_seed), key=str)
        diff = paired_difference([abs(tests[2].per_seed[s]) for s in common],
                                 [abs(tests[1].per_seed[s]) for s in common])
        stats["abs_slope_k2_minus_k1"] = {**diff.to_dict(), "text": diff.text("octaves per doubling")}
    t2 = tests[2]
    lo, hi = t2.slope_ci
    if t2.verdict == "degrades" or lo > margin or hi < -margin:
        return ClaimVerdict("holds", f"block depth 2's η* moves with depth: {t2.text()}", tuple(checks), stats)
    if t2.verdict == "transfers":
        return ClaimVerdict("does not hold", f"block depth 2 transfers over this depth range ({t2.text()}); TP6 "
                            "shows its shift at far larger depth", tuple(checks), stats)
    return ClaimVerdict("inconclusive", f"block depth 2: {_why_not(t2)}", tuple(checks), stats)
