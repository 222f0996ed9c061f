"""The frozen protocol of ``deeplimit reproduce`` (``deeplimit/protocol.toml``), read once and checked.

The protocol states, for every claim the report tests, the statistic, the values the claim and its alternative
predict, the pre-registered margins and, per tier, the sizes, steps, LR grid and number of seeds. Seeds come in two
disjoint sets: *pilot* seeds (settings are tuned on these only) and *confirmation* seeds (verdicts are decided on
these only). The report records the protocol's version and SHA-256 in ``report.json`` and says on a section when the
run's settings differ from the protocol's.

Data, not code: this module imports nothing of deeplimit but its errors, so every layer can read it.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from deeplimit.errors import DeeplimitError

__all__ = ["Protocol", "protocol", "SEED_SETS", "LR_SEARCHES", "seed_values"]

SEED_SETS = ("confirmation", "pilot")
# A tier's LR search (optional key ``lr_search``): "grid" (the default) runs the ``log2_lr`` grid once;
# "two-pass" runs it, then ``refine_step``-octave points within ``refine_half_width`` octaves of each
# (rule, size, seed) optimum (deeplimit.transfer.optimum.second_pass_points).
LR_SEARCHES = ("grid", "two-pass")
# A tier's optional ``diverge_patience``: its runs stop once the loss has stayed above the step-0 loss for that
# many steps after the warm-up (status "diverged"); left out, every run trains all its steps.


@dataclass(frozen=True)
class Protocol:
    """The parsed protocol: ``version``, ``sha256`` of the file's bytes, the seed sets and the claims."""

    version: str
    sha256: str
    seeds: dict[str, list[int]]
    claims: dict[str, dict[str, Any]]
    tiers: dict[str, list[str]]

    def claim(self, name: str) -> dict[str, Any]:
        """The entry of claim ``name`` (``depth-transfer``, ``width-transfer``, …) without its tiers."""
        if name not in self.claims:
            raise DeeplimitError(f"the protocol has no claim {name!r}; claims: {', '.join(sorted(self.claims))}")
        return {k: v for k, v in self.claims[name].items() if k != "tiers"}

    def tier(self, name: str, tier: str) -> dict[str, Any]:
        """Claim ``name``'s settings at ``tier`` (sizes, steps, grid, number of seeds…)."""
        tiers = self.claims.get(name, {}).get("tiers", {})
        if tier not in tiers:
            raise DeeplimitError(f"the protocol sets no {tier!r} tier for claim {name!r}; tiers: "
                                 f"{', '.join(sorted(tiers)) or 'none'}")
        return dict(tiers[tier])

    def has_tier(self, name: str, tier: str) -> bool:
        return tier in self.claims.get(name, {}).get("tiers", {})

    def decides(self, name: str, tier: str) -> bool:
        """Whether ``tier`` decides claim ``name`` (a tier the protocol does not list — smoke, full — runs all)."""
        return tier not in self.tiers or name in self.tiers[tier]

    def to_dict(self) -> dict[str, Any]:
        """What report.json records: enough to tell which protocol decided the verdicts."""
        return {"version": self.version, "sha256": self.sha256, "file": "deeplimit/protocol.toml",
                "seeds": self.seeds, "tiers": self.tiers}


def _check(data: dict[str, Any]) -> None:
    seeds = data.get("seeds", {})
    pilot, confirmation = seeds.get("pilot", []), seeds.get("confirmation", [])
    if not pilot or not confirmation:
        raise DeeplimitError("protocol.toml needs [seeds] pilot and confirmation lists")
    if set(pilot) & set(confirmation):
        raise DeeplimitError(f"protocol.toml: pilot and confirmation seeds overlap in "
                             f"{sorted(set(pilot) & set(confirmation))}; a seed that tuned settings never decides")
    for name, claim in data.get("claims", {}).items():
        own = set(claim.get("confirmation_seeds", ()))
        if own & set(pilot):
            raise DeeplimitError(f"protocol.toml: claims.{name}.confirmation_seeds overlap the pilot seeds in "
                                 f"{sorted(own & set(pilot))}")
    for tier, names in data.get("tiers", {}).items():
        unknown = sorted(set(names) - set(data.get("claims", {})))
        if unknown:
            raise DeeplimitError(f"protocol.toml: tiers.{tier} names claims that do not exist: {unknown}")
    for name, claim in data.get("claims", {}).items():
        for tier, t in claim.get("tiers", {}).items():
            n = t.get("seeds", 0)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(confirmation):
                raise DeeplimitError(f"protocol.toml: claims.{name}.tiers.{tier}.seeds = {n!r}; it must be a whole "
                                     f"number from 1 to {len(confirmation)} (the listed confirmation seeds)")
            _check_lr_search(f"claims.{name}.tiers.{tier}", t)
            patience = t.get("diverge_patience")
            if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
                raise DeeplimitError(f"protocol.toml: claims.{name}.tiers.{tier}.diverge_patience = {patience!r}; it "
                                     "must be a positive whole number of steps (or left out: no early stop)")


def _check_lr_search(where: str, t: dict[str, Any]) -> None:
    """The optional LR-search keys of one claim tier: ``lr_search``, ``refine_step``, ``refine_half_width``."""
    search = t.get("lr_search", "grid")
    if search not in LR_SEARCHES:
        raise DeeplimitError(f"protocol.toml: {where}.lr_search = {search!r}; choose one of {', '.join(LR_SEARCHES)}")
    keys = [k for k in ("refine_step", "refine_half_width") if k in t]
    if search != "two-pass":
        if keys:
            raise DeeplimitError(f"protocol.toml: {where} sets {', '.join(keys)} without lr_search = \"two-pass\"; "
                                 "add it or drop them")
        return
    grid = t.get("log2_lr")
    if not (isinstance(grid, list) and len(grid) == 3):
        raise DeeplimitError(f"protocol.toml: {where} has lr_search = \"two-pass\" but no log2_lr = [start, stop, "
                             "step] coarse grid; add one")
    step, half = t.get("refine_step", 0.5), t.get("refine_half_width", 1.0)
    for name, v in (("refine_step", step), ("refine_half_width", half)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise DeeplimitError(f"protocol.toml: {where}.{name} = {v!r}; it must be a positive number of octaves")
    if not step < grid[2]:
        raise DeeplimitError(f"protocol.toml: {where}.refine_step = {step!r} is not finer than the coarse grid's "
                             f"step {grid[2]!r}; use e.g. refine_step = {grid[2] / 2:g}")
    if half < step:
        raise DeeplimitError(f"protocol.toml: {where}.refine_half_width = {half!r} is below refine_step = {step!r}: "
                             "the second pass would add no point; make it at least refine_step")


@lru_cache(maxsize=1)
def protocol() -> Protocol:
    """The protocol shipped with the package (parsed once per process)."""
    raw = resources.files("deeplimit").joinpath("protocol.toml").read_bytes()
    data = tomllib.loads(raw.decode("utf-8"))
    _check(data)
    return Protocol(version=str(data["version"]), sha256=hashlib.sha256(raw).hexdigest(),
                    seeds={k: [int(s) for s in v] for k, v in data["seeds"].items()}, claims=data.get("claims", {}),
                    tiers={k: list(v) for k, v in data.get("tiers", {}).items()})


def seed_values(n: int, seed_set: str = "confirmation", claim: str | None = None) -> list[int]:
    """The first ``n`` seeds of ``seed_set`` ("confirmation" decides verdicts; "pilot" tunes settings).

    A claim re-confirmed after a protocol change names its own unseen confirmation seeds
    (``claims.<name>.confirmation_seeds``): the seeds that showed the old verdict never decide the new one."""
    if seed_set not in SEED_SETS:
        raise DeeplimitError(f"unknown seed set {seed_set!r}; choose one of {', '.join(SEED_SETS)}")
    own = protocol().claims.get(claim or "", {}).get("confirmation_seeds") if seed_set == "confirmation" else None
    values = [int(v) for v in own] if own else protocol().seeds[seed_set]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
        raise DeeplimitError(f"{n!r} seeds asked for; give a whole number from 1 to 10000")
    # past the listed seeds the set continues one by one (pilot 5, 6, …; confirmation 1005, 1006, …): the two
    # sets stay disjoint as long as the pilot set has fewer than 1000 seeds
    return [*values[:n], *range(values[-1] + 1, values[-1] + 1 + max(0, n - len(values)))]
