"""The verdict rules of the report's comparison, SDE and coordinate-check claims, as pure functions of numbers.

:mod:`deeplimit.transfer.verdicts` holds the rules that read sweep tables (depth/width transfer, block depth,
transformer depth, the width coordinate check). The rules here take the few numbers a claim module has already
computed — paired differences, shares of ordered cells, per-rule coordinate-check words, correlations, slopes —
and return a :class:`~deeplimit.transfer.verdicts.ClaimVerdict`: the word ("holds", "partly", "does not hold",
"inconclusive"), the one-line reason, and the controls as :class:`~deeplimit.transfer.verdicts.Check` rows.

Every threshold is read from the claim's entry of the frozen protocol (``deeplimit/protocol.toml``) when the entry
has it, else it is the constant below (the value the report has always used; the protocol should pin it).
``tests/test_transfer_verdicts_rules.py`` feeds each rule synthetic numbers just inside and just outside each
threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError
from deeplimit.transfer.analysis import PairedDifference
from deeplimit.transfer.verdicts import Check, ClaimVerdict

__all__ = ["activation_verdict", "shaped_vs_preln_verdict", "no_ln_control", "feature_diversity_verdict",
           "monotone_share", "shuffled_shares", "stopping_trend_verdict", "stopping_agreement_verdict",
           "sde_convergence_verdict", "sde_comparison_verdict", "unshaped_control_fails", "seed_consensus",
           "coord_depth_verdict", "rank_collapse_verdict"]

# Defaults where the protocol entry does not (yet) state the number: the values the report has always used.
SHAPED_MARGIN = 0.05      # nats/byte: shaped − Pre-LN "comparable" within ±0.05 (protocol shaped-vs-preln.margin)
ORDERED_SHARE = 0.90      # stopping: share of adjacent cell pairs ordered as claimed
ORDER_TOL = 0.05          # stopping: ordering tolerance, as a fraction of the time horizon T
AGREE_SHARE = 0.80        # stopping maps cell by cell: share of cells that must agree
FLAT = 0.25               # depth coordinate check: |log2 slope| per doubling called flat (protocol margin_slope)
MIN_SEEDS = 3             # depth coordinate check: fewer seeds decide nothing
COLLAPSE_RHO = 0.99       # rank collapse: softmax's mean |ρ| at layer 30 at least this
BOUNDED_RHO = 0.5         # rank collapse: shaped's mean |ρ| at layer 30 at most this
RATE_RTOL = 0.05          # rank collapse: ablation decay/growth rates within 5% of their closed forms


def _get(claim: Mapping[str, Any] | None, key: str, default: float) -> float:
    return float((claim or {}).get(key, default))


# ------------------------------------------------------------------------------------------------
# Paired comparisons: |x| vs ReLU, shaped vs Pre-LN, feature diversity
# ------------------------------------------------------------------------------------------------
def activation_verdict(diffs: Mapping[int, PairedDifference]) -> ClaimVerdict:
    """TP6 Fig. 3: ``diffs`` maps depth → best-over-LR loss |x| − ReLU paired by seed. "holds" when the deepest
    depth's interval lies below 0, "does not hold" when it lies above 0, else "inconclusive" (no "partly")."""
    if not diffs:
        raise DeeplimitError("activation_verdict needs the |x| − ReLU difference at one depth at least")
    depth = sorted(diffs)[-1]
    deepest = diffs[depth]
    verdict = {"a < b": "holds", "a > b": "does not hold"}.get(deepest.verdict, "inconclusive")
    reason = (f"the 95% interval of |x| − ReLU (best loss, paired by seed) at {depth} blocks is "
              + ("below 0" if verdict == "holds" else "above 0" if verdict == "does not hold" else
                 "not clear of 0" if deepest.n >= 2 else "missing (one seed)") + ".")
    return ClaimVerdict(verdict, reason, (), {"deepest": depth, "abs_minus_relu": deepest.to_dict()})


def no_ln_control(ctrl: PairedDifference, claim: Mapping[str, Any] | None, *, name: str, measured: str,
                  diverged_everywhere: bool = False) -> Check:
    """The shaped-vs-Pre-LN control: a softmax transformer without LayerNorm must train clearly worse than Pre-LN
    (whole interval of no-LN − Pre-LN above +margin). Diverging at every LR in every seed where Pre-LN trained
    passes without an interval (an ∞ loss has none, and needs none); one seed decides nothing."""
    margin = _get(claim, "margin", SHAPED_MARGIN)
    passed = True if diverged_everywhere else None if ctrl.n < 2 else bool(ctrl.lo > margin)
    return Check(name, f"trains clearly worse than Pre-LN: whole interval of (no-LN − Pre-LN) above +{margin}",
                 measured, passed)


def shaped_vs_preln_verdict(diff: PairedDifference, control: Check, claim: Mapping[str, Any] | None, *,
                            shaped_best: float, bigram: float, depth: int, steps: int) -> ClaimVerdict:
    """Noci et al. 2023 App. D: ``diff`` = best loss shaped − Pre-LN paired by seed (nats/byte).

    "inconclusive" with one seed or when the shaped model's best loss is not below the bigram entropy (too little
    training to compare); "holds" when the whole interval lies below +margin and the no-LN ``control`` passed;
    "partly" when it lies below +margin but the control did not pass; "does not hold" when the whole interval
    lies above +margin; else "inconclusive"."""
    margin = _get(claim, "margin", SHAPED_MARGIN)
    checks = (control,)
    if diff.n < 2:
        return ClaimVerdict("inconclusive", "one seed: no interval for shaped − Pre-LN", checks)
    if not shaped_best < bigram:
        return ClaimVerdict("inconclusive", f"the shaped model's best loss {shaped_best:.3f} is not below the bigram "
                            f"entropy {bigram:.3f}: too little training to compare", checks)
    if diff.hi <= margin and control.passed:
        return ClaimVerdict("holds", f"the whole interval of shaped − Pre-LN lies below +{margin} nats/byte "
                            "(comparable or better) and the no-LN control trains clearly worse", checks)
    if diff.hi <= margin:
        return ClaimVerdict("partly", "shaped is comparable or better, but the no-LN control did not train "
                            "clearly worse, so the bar is not shown to be informative", checks)
    if diff.lo > margin:
        return ClaimVerdict("does not hold", f"shaped is worse than Pre-LN by more than {margin} nats/byte (whole "
                            f"interval) at {depth} layers after {steps} steps; the paper compares after 100K steps, "
                            "so this is a statement about early training at this scale", checks)
    return ClaimVerdict("inconclusive", f"the interval of shaped − Pre-LN straddles ±{margin}", checks)


def feature_diversity_verdict(deep: PairedDifference, gap_trend: PairedDifference, ode_trend: PairedDifference,
                              *, shallowest: int, deepest: int) -> ClaimVerdict:
    """TP6 Fig. 17, all paired by seed: ``deep`` = κ(Depth-μP) − κ(ODE) at the deepest depth, ``gap_trend`` = that
    gap at the deepest minus at the shallowest depth, ``ode_trend`` = ODE's κ at the deepest minus the shallowest.

    "holds": the gap > 0, it grows with depth, and ODE's own κ falls (the paper's claim is a trend: a gap alone
    could come from Depth-μP rising); "partly": the gap > 0 but a trend is not shown; "does not hold": the gap < 0;
    "inconclusive": one seed, or the gap's interval contains 0."""
    checks = (Check("the gap grows with depth", f"κ gap at {deepest} − at {shallowest} blocks > 0",
                    gap_trend.text(), None if gap_trend.n < 2 else gap_trend.verdict == "a > b"),
              Check("ODE's own κ falls with depth", f"κ(ODE) at {deepest} − at {shallowest} blocks < 0",
                    ode_trend.text(), None if ode_trend.n < 2 else ode_trend.verdict == "a < b"))
    if deep.n < 2:
        return ClaimVerdict("inconclusive", "one seed: no interval (the smoke tier); quick runs 3 seeds", checks)
    if deep.verdict == "a > b" and gap_trend.verdict == "a > b" and ode_trend.verdict == "a < b":
        return ClaimVerdict("holds", f"κ(Depth-μP) − κ(ODE) > 0 at {deepest} blocks, the gap grows from "
                            f"{shallowest} to {deepest} blocks and ODE's own κ falls (all three 95% intervals "
                            "clear of 0)", checks)
    if deep.verdict == "a > b":
        missing = [w for w, ok in (("the gap growing with depth", gap_trend.verdict == "a > b"),
                                   ("ODE's own κ falling with depth", ode_trend.verdict == "a < b")) if not ok]
        return ClaimVerdict("partly", "Depth-μP keeps more diversity than ODE, but not shown: " + " and ".join(missing)
                            + " (the claim is a trend in depth)", checks)
    if deep.verdict == "a < b":
        return ClaimVerdict("does not hold", "ODE keeps more diversity than Depth-μP at the deepest depth", checks)
    return ClaimVerdict("inconclusive", "the interval of κ(Depth-μP) − κ(ODE) contains 0", checks)


# ------------------------------------------------------------------------------------------------
# Stopping times (Noci et al. 2023 Fig. 4): the trend rule, its shuffled control, the cell-by-cell check
# ------------------------------------------------------------------------------------------------
def monotone_share(g: pd.DataFrame, T: float, tol: float = ORDER_TOL) -> float:
    """Share of adjacent grid pairs of a stopping map (columns ``gamma``, ``tau0``, ``median_t``) ordered as the
    paper says: median t* non-increasing in γ (at fixed τ0) and non-decreasing in τ0 (at fixed γ), up to
    ``tol·T``. NaN for a map with no adjacent pair."""
    return _ordered_share(_stopping_grid(g).to_numpy(), T, tol)


def _stopping_grid(g: pd.DataFrame) -> pd.DataFrame:
    """The stopping map as a grid: rows γ, columns τ0 (both ascending), values median t* (NaN where no cell)."""
    return g.pivot(index="gamma", columns="tau0", values="median_t").sort_index().sort_index(axis=1)


def _ordered_share(M: np.ndarray, T: float, tol: float) -> float:
    pairs = [M[1:, :] - M[:-1, :] <= tol * T, M[:, 1:] - M[:, :-1] >= -tol * T]
    total = sum(p.size for p in pairs)
    return float(sum(p.sum() for p in pairs) / total) if total else float("nan")


def shuffled_shares(g: pd.DataFrame, T: float, n: int = 1000, seed: int = 0) -> np.ndarray:
    """:func:`monotone_share` of ``n`` copies of the map with its median t* shuffled over the cells: what the
    trend rule gives a map with the same values and no trend (its ties and plateaus included). Shape (n,)."""
    rng = np.random.default_rng(seed)
    values = g["median_t"].to_numpy()
    # The grid is built once (the pivot monotone_share makes, which refuses a cell given twice) and each shuffle
    # only refills its cells: a pandas pivot per shuffle cost ~3 ms, 6 s of the smoke report's stopping section.
    grid = _stopping_grid(g)
    rows, cols = grid.index.get_indexer(g["gamma"]), grid.columns.get_indexer(g["tau0"])
    dtype = grid.to_numpy().dtype  # the pivot's: float32 values stay float32, whole numbers compare exactly
    if (rows < 0).any() or (cols < 0).any() or not np.issubdtype(dtype, np.number):
        # a cell without a γ or τ0 (NaN), or values that are not numbers: the pivot's own path
        return np.array([monotone_share(g.assign(median_t=rng.permutation(values)), T) for _ in range(n)])
    M = np.full(grid.shape, np.nan, dtype=dtype if np.issubdtype(dtype, np.floating) else np.float64)
    out = np.empty(n)
    for k in range(n):
        M[rows, cols] = rng.permutation(values)
        out[k] = _ordered_share(M, T, ORDER_TOL)
    return out


def stopping_trend_verdict(shares: Mapping[str, float], null: Mapping[str, Sequence[float]],
                           claim: Mapping[str, Any] | None = None) -> ClaimVerdict:
    """The stopping-time trend rule. ``shares``: source → :func:`monotone_share` of its map; ``null``: source →
    :func:`shuffled_shares` of it (the negative control: the same values with no trend).

    "holds": every source orders ≥ 90% of adjacent pairs as claimed and, for every source, 95% of the shuffled
    maps stay below 90% (the rule can tell a trend from ties); "inconclusive": the rule is met but shuffled maps
    meet it too; "does not hold": a source orders fewer than 90%."""
    need = _get(claim, "ordered_share", ORDERED_SHARE)
    trend_ok = bool(shares) and all(np.isfinite(v) and v >= need for v in shares.values())
    q95 = {src: float(np.quantile(np.asarray(v, dtype=float), 0.95)) for src, v in null.items()}
    control_ok = bool(q95) and all(q < need for q in q95.values())
    control = Check(
        "each map with its median t* shuffled over the cells (1000 permutations)",
        f"no trend: the shuffled maps stay below the {need:.0%} rule",
        "; ".join(f"{src}: 95% of shuffles order ≤ {q95[src]:.0%} of pairs (observed {shares[src]:.0%}, share of "
                  f"shuffles reaching it {np.mean(np.asarray(null[src]) >= shares[src]):.3f})" for src in null),
        control_ok)
    verdict = "holds" if trend_ok and control_ok else "inconclusive" if trend_ok else "does not hold"
    reason = (f"≥ {need:.0%} of adjacent cell pairs ordered as claimed in "
              + ("every map" if trend_ok else "not every map") + ": "
              + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
              + ("" if control_ok or not trend_ok else
                 "; but shuffled maps reach the rule too, so it cannot tell a trend from ties here"))
    return ClaimVerdict(verdict, reason, (control,), {"shares": dict(shares), "null_q95": q95})


def stopping_agreement_verdict(agree_share: float, claim: Mapping[str, Any] | None = None) -> ClaimVerdict:
    """The cell-by-cell extra check (outside the tally): "holds" when at least 80% of the cells agree (each
    cell's 95% bootstrap interval of the median-t* difference meets ±0.05·T), else "does not hold"."""
    need = _get(claim, "agree_share", AGREE_SHARE)
    ok = bool(agree_share >= need)
    return ClaimVerdict("holds" if ok else "does not hold",
                        f"{agree_share:.0%} of the cells agree within their intervals (rule: ≥ {need:.0%})")


# ------------------------------------------------------------------------------------------------
# SDE vs the finite network (Noci et al. 2023 Thm. 3.2, 4.2, Cor. 4.3)
# ------------------------------------------------------------------------------------------------
def unshaped_control_fails(control_ks: float, control_crit: float) -> bool:
    """The unshaped network against the shaped SDE must be far off: KS above 0.5 and three critical values."""
    return bool(control_ks > max(0.5, 3 * control_crit))


def sde_comparison_verdict(eq: Mapping[str, Any], *, control_ks: float, control_crit: float) -> ClaimVerdict:
    """Protocol ``sde``: ``eq`` is :func:`deeplimit.sde.equivalence`'s summary (``verdict`` "agrees" / "differs" /
    "inconclusive" overall, and per part ``test``, ``control`` (the SDE with γ × 1.2), ``exploded``, each with a
    ``verdict``; ``test`` and ``control`` with ``margin`` and ``ci``; ``text``); ``control_ks``, ``control_crit``:
    the unshaped network's KS against the shaped SDE and its critical value.

    "holds": equivalence within the margin, the perturbed SDE shown to differ, exploded fractions agreeing, and the
    unshaped control failing; "does not hold": the network's law shown to differ beyond the margin; otherwise
    "inconclusive" with the first part that did not decide."""
    ctrl_ok = unshaped_control_fails(control_ks, control_crit)
    if eq["verdict"] == "agrees" and ctrl_ok:
        return ClaimVerdict("holds", f"every entry's distance is below the margin {eq['test']['margin']:g} (upper "
                                     f"bound {eq['test']['ci'][1]:.3f}), the γ × 1.2 SDE is shown to differ (lower "
                                     f"bound {eq['control']['ci'][0]:.3f}) and the unshaped control fails")
    if eq["verdict"] == "differs":
        return ClaimVerdict("does not hold", "the network's law is shown to differ from the SDE's beyond the margin")
    why = ("not shown within the margin" if eq["test"]["verdict"] != "agrees" else
           "the sensitivity control did not differ: the test could not see a 20% error in γ"
           if eq["control"]["verdict"] != "differs" else
           "the exploded fractions were not shown to agree" if eq["exploded"]["verdict"] != "agrees" else
           "the unshaped control did not fail")
    return ClaimVerdict("inconclusive", f"{why} ({eq['text']})")


# ------------------------------------------------------------------------------------------------
# SDE convergence in n (Noci et al. 2023 Thm. 3.2)
# ------------------------------------------------------------------------------------------------
def sde_convergence_verdict(counts: Mapping[str, int], *, exploded: int, control_ks: Sequence[float],
                            control_crit: float) -> ClaimVerdict:
    """``counts``: how many (γ, entry) pairs got each per-pair word ("converges", "agrees", "does not
    converge", …); ``exploded``: exploded paths; ``control_ks``: the unshaped control's KS at increasing n,
    ``control_crit``: its critical value at the largest n.

    The control passes when its KS rises from the smallest to the largest n and ends above twice the critical
    value. "holds": no pair contradicts convergence, at least half converge, nothing exploded, and the control
    passes; "inconclusive": only the "at least half converge" part fails (the paths are too few to resolve the
    fall); "does not hold" otherwise."""
    ks = [float(v) for v in control_ks]
    if len(ks) < 2:
        raise DeeplimitError(f"the convergence control needs KS at two widths at least, got {len(ks)}")
    n_pairs = sum(int(v) for v in counts.values())
    ctrl_ok = bool(ks[-1] > ks[0] and ks[-1] > 2 * control_crit)
    against = int(counts.get("does not converge", 0))
    conv = int(counts.get("converges", 0))
    ok = against == 0 and conv >= n_pairs / 2 and exploded == 0 and ctrl_ok
    no_power = not ok and against == 0 and exploded == 0 and ctrl_ok
    control = Check("unshaped network vs the shaped SDE at every width",
                    "KS must not fall with n (no SDE limit): it rises and ends above twice its critical value",
                    ", ".join(f"{v:.3f}" for v in ks), ctrl_ok)
    reason = (f"of {n_pairs} (γ, entry) pairs " + "; ".join(f"{k}: {v}" for k, v in counts.items()) + "; "
              f"{exploded} exploded paths; the unshaped control {'rises' if ctrl_ok else 'does not rise'} above "
              "twice its critical value")
    return ClaimVerdict("holds" if ok else "inconclusive" if no_power else "does not hold", reason, (control,))


# ------------------------------------------------------------------------------------------------
# Depth coordinate check (TP6 §6, CompleteP's coordinate checks)
# ------------------------------------------------------------------------------------------------
def seed_consensus(whole: str, per_seed: Sequence[str]) -> str:
    """A rule's coordinate-check word: the word of all seeds together when every seed gives it, else
    "inconclusive" (the seeds disagree)."""
    return whole if all(v == whole for v in per_seed) else "inconclusive"


def coord_depth_verdict(words: Mapping[str, str], n_seeds: int, claim: Mapping[str, Any] | None = None
                        ) -> ClaimVerdict:
    """``words``: rule → its :func:`seed_consensus` word ("flat", "grows", "shrinks", "inconclusive").

    The claim rule (Depth-μP) must be flat; each control ((½, 0) at a fixed LR — a different run, not a
    relabelling — and SP) must grow. "holds": flat and every control grows; "does not hold": the claim rule grows
    or shrinks; "partly": flat but a control was not shown to grow; "inconclusive": the seeds disagree, or fewer
    than 3 seeds ran."""
    main = str((claim or {}).get("claim_rule", "depth_mup"))
    controls = [str(r) for r in ((claim or {}).get("sensitivity_control", "blocks_only"),
                                 (claim or {}).get("negative_control", "sp"))]
    missing = [r for r in (main, *controls) if r not in words]
    if missing:
        raise DeeplimitError(f"the depth coordinate check needs the words of {missing}; got {sorted(words)}")
    checks = tuple(Check(f"{r} over depth", "the change of the stream/logits grows with depth: 'grows' in every seed",
                         words[r], None if words[r] == "inconclusive" else words[r] == "grows") for r in controls)
    need = int(_get(claim, "min_seeds", MIN_SEEDS))
    if n_seeds < need:
        return ClaimVerdict("inconclusive", f"{n_seeds} seed(s) at this tier: not conclusive (quick runs {need})",
                            checks)
    dm = words[main]
    if dm == "flat" and all(c.passed for c in checks):
        return ClaimVerdict("holds", "Depth-μP flat in every seed while (½, 0) and SP are not flat in every seed",
                            checks)
    if dm in ("grows", "shrinks"):
        return ClaimVerdict("does not hold", "Depth-μP's change from init is not flat in depth", checks)
    if dm == "flat":
        return ClaimVerdict("partly", "Depth-μP is flat, but a control was not shown to fail, so the check's power "
                            "is not shown", checks)
    return ClaimVerdict("inconclusive", "the seeds disagree on whether Depth-μP is flat", checks)


# ------------------------------------------------------------------------------------------------
# Rank collapse (Noci et al. 2023 §3, Fig. 4; spec §6)
# ------------------------------------------------------------------------------------------------
def rank_collapse_verdict(*, softmax_rho: float, shaped_rho: float, no_identity_slope: float,
                          no_centring_slope: float, theory: Mapping[str, float], layer: int = 30,
                          claim: Mapping[str, Any] | None = None) -> ClaimVerdict:
    """``softmax_rho``, ``shaped_rho``: mean |ρ| at ``layer``; ``no_identity_slope``, ``no_centring_slope``: the
    fitted decay rates of log median V¹² per layer; ``theory``: their closed forms under the keys "no identity"
    (log λ²) and "no centring" (log(λ² + 4γ²)).

    The negative control (standard softmax) must collapse: mean |ρ| ≥ 0.99. "holds": it collapses, shaped stays
    ≤ 0.5 and both rates are within 5% of theory; "partly": only the first two; "does not hold" otherwise
    (a missing number — NaN — fails its comparison)."""
    collapse, bounded = _get(claim, "collapse_rho", COLLAPSE_RHO), _get(claim, "bounded_rho", BOUNDED_RHO)
    rtol = _get(claim, "rate_rtol", RATE_RTOL)
    softmax_collapses = bool(softmax_rho >= collapse)
    shaped_bounded = bool(shaped_rho <= bounded)
    no_id, no_ctr = float(theory["no identity"]), float(theory["no centring"])
    rate_ok = bool(abs(no_identity_slope - no_id) <= rtol * abs(no_id)
                   and abs(no_centring_slope - no_ctr) <= rtol * abs(no_ctr))
    verdict = ("holds" if softmax_collapses and shaped_bounded and rate_ok else
               "partly" if softmax_collapses and shaped_bounded else "does not hold")
    control = Check("standard softmax attention (no shaping)",
                    f"mean |ρ| ≥ {collapse:g} by layer {layer}: rank collapse, the failure shaping exists to prevent",
                    f"mean |ρ| = {softmax_rho:.4f} at layer {layer}", softmax_collapses)
    reason = (f"softmax {'collapses' if softmax_collapses else 'does not collapse'} (mean |ρ| ≥ {collapse:g} at "
              f"layer {layer}), shaped {'stays' if shaped_bounded else 'does not stay'} ≤ {bounded:g}, ablation "
              f"rates {'within' if rate_ok else 'not within'} {rtol:.0%} of theory")
    return ClaimVerdict(verdict, reason, (control,), {"softmax_collapses": softmax_collapses,
                                                      "shaped_bounded": shaped_bounded, "rates_within": rate_ok})
