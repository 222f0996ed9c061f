"""The verdict of a coordinate check: log2 slopes per doubling of width or depth, and flat / grows / shrinks.

A coordinate that keeps its size as the model grows has slope ≈ 0 per doubling (it transfers); one that grows
(SP with Adam over width: ≈ +½ to +1) or shrinks (saturated logits, a dying update) does not. The statistic is
the change from init (``delta_rms``), the one that separates parametrizations (depth-mup spec §8.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError

FLAT = 0.25  # |log2 slope| per doubling below which a coordinate counts as flat
SITES = ("input", "block_first", "block_last", "logits")
VERDICT_SITES_DEPTH = ("input", "block_last", "logits")


def log2_slopes(df: pd.DataFrame, axis: str, stat: str = "delta_rms") -> pd.DataFrame:
    """Least-squares slope of log2(seed-mean ``stat``) on log2(``axis``), per (rule, site, step).

    A slope near 0 means the coordinate is flat along ``axis`` (the check passes); ``stat`` = 0 (e.g. the
    change at t = 0), a single size or a non-finite value gives NaN.
    """
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    mean = df.groupby(["rule", "site", "step", axis], as_index=False)[stat].mean()
    out = []
    for (rule, site, step), g in mean.groupby(["rule", "site", "step"]):
        v = g[stat].to_numpy()
        if len(g) < 2 or np.any(v <= 0) or not np.all(np.isfinite(v)):
            slope = float("nan")
        else:
            slope = float(np.polyfit(np.log2(g[axis].to_numpy(float)), np.log2(v), 1)[0])
        out.append({"rule": rule, "site": site, "step": step, "slope": slope})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------------
# The verdict
# ----------------------------------------------------------------------------------------------------------
Verdict = Literal["flat", "grows", "shrinks", "inconclusive"]


def direction(slope: float, threshold: float = FLAT) -> Verdict:
    """``"flat"`` if |slope| ≤ ``threshold``, else ``"grows"``/``"shrinks"`` by its sign; NaN: ``"inconclusive"``."""
    if math.isnan(slope):
        return "inconclusive"
    if abs(slope) <= threshold:
        return "flat"
    return "grows" if slope > 0 else "shrinks"


@dataclass(frozen=True)
class CoordVerdict:
    """Flat, growing or shrinking along one axis, from the log2 slopes of the change from init at one step.

    ``verdict`` is ``"flat"`` (every judged site's |slope| ≤ ``threshold``), ``"grows"`` or ``"shrinks"``
    (the sign of the judged site with the largest |slope|, ``site``; its slope per doubling of the axis is
    ``slope``), or ``"inconclusive"`` (a slope could not be measured: activations went non-finite, or did not
    change; the ``reason`` says which). ``slopes`` maps every site → log2 slope per doubling of the axis;
    ``judged`` names the sites that decide the verdict. Under μP a width check is flat; SP with Adam grows
    (≈ +½ to +1 per doubling); a coordinate that dies out with size (e.g. saturated logits) shrinks.
    """

    verdict: Verdict
    rule: str
    axis: str
    sizes: tuple[int, ...]
    step: int
    stat: str
    slopes: dict[str, float]
    judged: tuple[str, ...]
    threshold: float
    max_abs_slope: float
    reason: str
    slope: float = math.nan  # signed log2 slope per doubling of the deciding site
    site: str = ""  # the judged site with the largest |slope|

    @property
    def flat(self) -> bool:
        return self.verdict == "flat"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        d["judged"] = list(self.judged)
        d["slopes"] = {k: (None if math.isnan(v) else round(v, 4)) for k, v in self.slopes.items()}
        d["max_abs_slope"] = None if math.isnan(self.max_abs_slope) else round(self.max_abs_slope, 4)
        d["slope"] = None if math.isnan(self.slope) else round(self.slope, 4)
        # the keys older reports read
        d["log2_slope_of_change_per_site"] = d["slopes"]
        d["final_step"] = self.step
        return d

    def line(self) -> str:
        """``verdict: grows +0.99 per doubling of width (block_last; flat is |slope| ≤ 0.25)``."""
        if self.verdict == "inconclusive":
            return f"verdict: inconclusive ({self.reason})"
        word = "flat, max |slope|" if self.verdict == "flat" else self.verdict
        return (f"verdict: {word} {self.slope:+.2f} per doubling of {self.axis} ({self.site}; flat is |slope| ≤ "
                f"{self.threshold:g})")


def coord_verdict(df: pd.DataFrame, axis: str, *, threshold: float = FLAT, stat: str = "delta_rms",
                  step: int | None = None, sites: Sequence[str] | None = None) -> CoordVerdict:
    """Judge a :func:`coord_check` table along ``axis`` (``"width"`` or ``"depth"``) at ``step`` (default: last).

    ``sites`` default: all four over width; over depth ``input``, ``block_last`` and ``logits`` — the first
    block's own change is one block's share of the stream, O(L^{-α}) by design (depth-mup spec §8.2), so it is
    reported in ``slopes``' table but does not decide the verdict.

    The verdict is ``flat`` when every judged site's |log2 slope| per doubling is ≤ ``threshold``, else
    ``grows`` or ``shrinks`` by the sign of the steepest judged site (:class:`CoordVerdict`).

    Raises a :class:`DeeplimitError` when the table cannot give a slope at all (fewer than two sizes, or only
    step 0, where the change from init is 0 by definition). A slope lost to non-finite or zero values gives
    ``"inconclusive"``, never ``"grows"`` or ``"shrinks"``.
    """
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
        raise DeeplimitError(f"threshold must be a finite positive number, got {threshold}")
    if df.empty:
        raise DeeplimitError("the coordinate-check table is empty; run coord_check first")
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    sizes = tuple(sorted(int(s) for s in df[axis].unique()))
    if len(sizes) < 2:
        raise DeeplimitError(f"a coordinate check over {axis} needs at least two {axis}s, got {list(sizes)}")
    last = int(df["step"].max())
    step = last if step is None else int(step)
    if step < 1 or step > last:
        raise DeeplimitError(f"the verdict needs a step in 1..{last} (the change from init is 0 at step 0); "
                             "train at least one step (steps >= 1)")
    rules = df["rule"].unique()
    if len(rules) != 1:
        raise DeeplimitError(f"the table mixes rules {sorted(rules)}; judge one rule at a time")
    at = df[df["step"] == step]
    if sites is None:
        # Over depth one block's share of the stream shrinks like L^-alpha by design; the stream itself
        # (block_last) and the logits are what must not move with depth.
        default = SITES if axis == "width" else VERDICT_SITES_DEPTH
        sites = [s for s in default if s in set(at["site"])]
    wanted = list(sites)
    slopes_df = log2_slopes(at, axis, stat).set_index("site")["slope"]
    missing = sorted(set(wanted) - set(slopes_df.index))
    if missing:
        raise DeeplimitError(f"sites {missing} are not in the table (it has {sorted(slopes_df.index)})")
    slopes = {s: float(slopes_df[s]) for s in SITES if s in slopes_df.index}
    slopes.update({s: float(v) for s, v in slopes_df.items() if s not in slopes})
    bad = [s for s in wanted if math.isnan(slopes[s])]
    if bad:
        sub = at[at["site"].isin(bad)]
        if not np.all(np.isfinite(sub[stat].to_numpy())):
            where = sorted({int(v) for v in sub.loc[~np.isfinite(sub[stat]), axis]})
            reason = (f"non-finite activations at {axis} {where} for {bad}: the run diverged; lower the learning "
                      "rate")
        else:
            where = sorted({int(v) for v in sub.loc[sub[stat] <= 0, axis]})
            reason = (f"no change from init at {axis} {where} for {bad}: the step did nothing; raise the learning "
                      "rate or check that the parameters train")
        return CoordVerdict("inconclusive", str(rules[0]), axis, sizes, step, stat, slopes, tuple(wanted),
                            threshold, float("nan"), reason)
    worst_site = max(wanted, key=lambda s: abs(slopes[s]))
    worst = abs(slopes[worst_site])
    verdict = direction(slopes[worst_site], threshold)
    others = [f"{s} {slopes[s]:+.2f}" for s in wanted
              if direction(slopes[s], threshold) not in ("flat", verdict)]
    reason = (f"max |log2 slope| of {stat} at step {step} is {worst:.3f} ({worst_site}, {slopes[worst_site]:+.3f} per "
              f"doubling of {axis})" + (f"; opposite trend at {', '.join(others)}" if others else ""))
    return CoordVerdict(verdict, str(rules[0]), axis, sizes, step, stat, slopes, tuple(wanted), threshold, worst,
                        reason, slopes[worst_site], worst_site)
