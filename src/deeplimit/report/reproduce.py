"""``deeplimit reproduce``: both papers' key results at CPU scale, as one self-contained HTML report.

Every section calls the library (the SDE studies, the sweep engine with its workers, the diagnostics and the
trained-run studies — never the CLI), compares the measurement with the paper's claim by a rule written in code (in
the claim's module), and says whether it holds. A section that crashes is reported as "failed" (with its error), the
other sections still run, and :func:`reproduce` lists it in :attr:`Report.failed` (``deeplimit reproduce`` then
exits non-zero). Results are cached: sweeps live in one Optuna storage (``<out>/sweeps.db``) and the other sections
write a JSON summary under ``<out>/<section>/`` that records its settings — it is reused only for the same settings,
the same code and (for a trained summary) the same data. Re-running resumes; a killed run loses at most the trials
in flight. One run at a time writes a tier's folder (:mod:`deeplimit.report.lock`); the HTML escapes every text that
is not markup of our own and embeds only the figures each section wrote (:mod:`deeplimit.report.html`).

This module is the driver: the section registry :data:`SECTIONS`, the sections not run at a tier, the
re-run command and :func:`reproduce`. Each claim lives in its own module under
:mod:`deeplimit.report.claims`; the run's context, settings and summary cache in
:mod:`deeplimit.report.context`; the sweep plumbing in :mod:`deeplimit.report.sweeps`.

Settings of the non-sweep sections (:data:`SECTION_SETTINGS`) can be changed per run with ``overrides``
(``deeplimit reproduce --set stopping.paths=64``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from markupsafe import Markup

from deeplimit.errors import DeeplimitError
from deeplimit.io import ensure_dir
from deeplimit.protocol import SEED_SETS, protocol
from deeplimit.report.claims.activation import activation
from deeplimit.report.claims.block_depth import block_depth
from deeplimit.report.claims.convergence import sde_convergence
from deeplimit.report.claims.coord_check import coord_check_depth
from deeplimit.report.claims.coord_check_width import coord_check_width
from deeplimit.report.claims.depth_transfer import depth_transfer
from deeplimit.report.claims.feature_diversity import feature_diversity
from deeplimit.report.claims.muon import muon_transfer
from deeplimit.report.claims.oracle import oracle_claim, oracle_lm_claim, oracle_lm_mup_claim, oracle_width_claim
from deeplimit.report.claims.rank_collapse import rank_collapse
from deeplimit.report.claims.sde import sde_comparisons
from deeplimit.report.claims.shaped_vs_preln import shaped_vs_preln
from deeplimit.report.claims.stopping import _monotone_share as _monotone_share  # re-exported for the tests
from deeplimit.report.claims.stopping import _shuffled_shares as _shuffled_shares
from deeplimit.report.claims.stopping import stopping
from deeplimit.report.claims.transformer_depth import transformer_depth
from deeplimit.report.claims.width_transfer import width_transfer
from deeplimit.report.context import SECTION_SETTINGS, Context, cached, check_settings
from deeplimit.report.html import Section, render
from deeplimit.report.lock import output_lock
from deeplimit.report.sweeps import run_experiment, run_sweep, spec_words
from deeplimit.runtime import set_threads
from deeplimit.secrets import redact_text, redact_url
from deeplimit.transfer.experiments import EXPERIMENT_TIERS as TIERS  # the one definition of the tiers

__all__ = ["SECTIONS", "SECTION_SETTINGS", "NOT_AT_TIER", "TIERS", "Context", "Report", "check_overrides",
           "reproduce", "rerun_command", "not_run_text", "run_experiment",
           # the sections, each from its claim module
           "sde_comparisons", "rank_collapse", "stopping", "depth_transfer", "activation", "block_depth",
           "width_transfer", "coord_check_depth", "feature_diversity", "transformer_depth", "shaped_vs_preln",
           "sde_convergence", "muon_transfer", "oracle_claim", "oracle_lm_claim", "oracle_lm_mup_claim",
           "oracle_width_claim"]

# The names the tests and older callers import from here (the helpers now live in their own modules).
_cached, _run_sweep = cached, run_sweep

# Sections a tier does not run (shown as "not run at this tier", never as a weak verdict): the tier that runs
# them, and why this one does not, in terms of scale only. The text the report shows (:func:`not_run_text`)
# states the grid each tier would run and the cost, both computed from the tiers' specs; no result of an
# earlier run is written here (they are in docs/reproduce.md and docs/optimizers.md).
NOT_AT_TIER: dict[str, dict[str, str]] = {
    "muon-transfer": {"quick": "full", "standard": "full"},
}
# Every other claim the protocol's tier list leaves out of a tier (protocol.toml [tiers]) is run by the first of
# standard and full that decides it.
for _key in ("sde", "rank-collapse", "stopping", "depth-transfer", "activation", "block-depth", "width-transfer",
             "coord-check", "coord-check-width", "feature-diversity", "transformer-depth", "shaped-vs-preln",
             "sde-convergence", "oracle", "oracle-lm", "oracle-lm-mup", "oracle-width"):
    for _tier in ("quick", "standard"):
        if not protocol().decides(_key, _tier):
            NOT_AT_TIER.setdefault(_key, {})[_tier] = next(t for t in ("standard", "full")
                                                           if protocol().decides(_key, t))
_WHY_NOT = {
    "block-depth": "its grid is too shallow and too short to tell block depth 2's drift from block depth 1's",
    "transformer-depth": "its models are too small and too briefly trained for their LR optima to be told apart",
    "muon-transfer": "its sweeps are too costly for this tier's time budget",
    "oracle": "its held-out groups (8× the data budget, 8–16× the depth) cost more than this tier's budget",
    "oracle-lm": ("its held-out groups (8× the token budget, 8× the depth of a byte-level transformer) cost more than "
                  "this tier's budget"),
    "oracle-width": "its held-out groups (widths 512 and 1024 at 512 steps) cost more than this tier's budget",
    "shaped-vs-preln": ("its ±0.05 nats/byte margin needs longer training than this tier's budget allows (the paper "
                        "compares the models after 100K steps)"),
}
_WHY_NOT["oracle-lm-mup"] = _WHY_NOT["oracle-lm"]  # the same design under another rule: the same cost
# Where one tier's reason differs from another's (protocol 1.5: standard runs a transformer-depth grid of its own,
# and neither that grid nor the longer one it replaced decides the claim).
_WHY_NOT_AT = {
    ("transformer-depth", "standard"): ("over 2 → 8 layers at 400 steps its slope intervals are too wide for the "
                                        "±0.25 margin, and over 2 → 16 layers μP's η* cannot be told from "
                                        "CompleteP's; separating the rules needs deeper models trained longer"),
}


def not_run_text(key: str, tier: str) -> str:
    """Why section ``key`` is not run at ``tier``: the grid this tier would run, the tier that runs it, and what
    that costs (runs × steps), computed from the specs."""
    runner = NOT_AT_TIER[key][tier]
    if key == "muon-transfer":
        from deeplimit.report.claims.muon import MUON_GRIDS, muon_specs

        specs = muon_specs(runner)
        runs, steps = sum(len(s) for s in specs), sorted({int(s.fixed["steps"]) for s in specs})
        span = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"
        return (f"not run at this tier: {_WHY_NOT[key]}; it runs at --{runner}: its {len(MUON_GRIDS[runner])} "
                f"sweeps, {runs} runs of {span} steps in all.")
    from deeplimit.transfer.oracle_grids import ORACLE_CLAIMS

    if key in ORACLE_CLAIMS:
        from deeplimit.report.claims.oracle import oracle_specs_words

        return f"not run at this tier: {_WHY_NOT[key]}; it runs at --{runner}: {oracle_specs_words(runner, key)}."
    from deeplimit.transfer.experiments import EXPERIMENTS
    from deeplimit.transfer.experiments import experiment as build

    why = _WHY_NOT_AT.get((key, tier)) or _WHY_NOT.get(
        key, f"the {tier} tier decides the headline claims only (protocol {protocol().version}, [tiers])")
    if key not in EXPERIMENTS:  # a study, not a sweep: its settings at the tier that runs it
        return f"not run at this tier: {why}; it runs at --{runner} with {SECTION_SETTINGS[key](runner)}."
    here, there = build(key, tier), build(key, runner)
    return (f"not run at this tier: {why} (this tier's grid: {spec_words(here)}); it runs at --{runner}: "
            f"{spec_words(there)}, {len(there)} runs of {there.fixed['steps']} steps.")


SECTIONS: dict[str, Callable[[Context], list[Section]]] = {
    "sde": sde_comparisons,
    "rank-collapse": rank_collapse,
    "stopping": stopping,
    "depth-transfer": depth_transfer,
    "activation": activation,
    "block-depth": block_depth,
    "width-transfer": width_transfer,
    "coord-check": coord_check_depth,
    "coord-check-width": coord_check_width,
    "feature-diversity": feature_diversity,
    "transformer-depth": transformer_depth,
    "shaped-vs-preln": shaped_vs_preln,
    "sde-convergence": sde_convergence,
    "muon-transfer": muon_transfer,
    "oracle": oracle_claim,
    "oracle-lm": oracle_lm_claim,
    "oracle-lm-mup": oracle_lm_mup_claim,
    "oracle-width": oracle_width_claim,
}


@dataclass
class Report:
    """What :func:`reproduce` wrote: the HTML ``path``, every section, and the keys of the sections that failed."""

    path: Path
    sections: list[Section]
    failed: list[str]


def check_overrides(overrides: dict[str, dict[str, Any]] | None, tier: str = "smoke") -> dict[str, dict[str, Any]]:
    """Refuse ``--set`` overrides of unknown sections or keys and values of the wrong kind, before any work."""
    return check_settings(overrides, tier, sweep_sections=SECTIONS)


def rerun_command(key: str, tier: str, out: str | Path, workers: int) -> str:
    """The one-line command that re-runs section ``key`` from scratch (caches ignored)."""
    flag = "" if tier == "quick" else f" --{tier}"
    return f"deeplimit reproduce{flag} --only {key} --fresh --out {out} --workers {workers}"


def _verdict_line(new: list[Section]) -> str:
    """The progress line's verdicts for one key: every section it produced, extra checks marked as such (a key
    such as ``stopping`` yields the claim and a check outside the tally; printing only the last section's verdict
    read "stopping: does not hold" while the claim held)."""
    return "; ".join(s.verdict if s.counted else f"{s.verdict} (extra check, outside the tally)" for s in new)


def reproduce(out: str | Path = "runs/reproduce", tier: str = "quick", *, workers: int = 2, storage: str | None = None,
              only: list[str] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
              progress: bool = False, fresh: bool = False, seed_set: str = "confirmation") -> Report:
    """Run every section (or ``only`` those) and write ``<out>/<tier>/report.html`` and ``report.json``.

    A section that raises is shown as "failed" with its error and listed in :attr:`Report.failed`; the other
    sections still run. ``overrides`` change the settings of non-sweep sections (:data:`SECTION_SETTINGS`).
    ``fresh`` ignores every cache (sweeps run under a new name; summaries are recomputed). Cached results are
    reused only for the same settings *and* the same code (a fingerprint of the source files they depend on,
    :mod:`deeplimit.report.provenance`). ``progress`` shows a bar over the sections on stderr. ``seed_set``:
    "confirmation" (the protocol's deciding seeds) or "pilot" (tuning; every verdict then says it is exploratory).
    """
    from tqdm.auto import tqdm

    from deeplimit.report.provenance import provenance

    if tier not in TIERS:
        raise DeeplimitError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    if not (isinstance(workers, int) and workers >= 1):
        raise DeeplimitError(f"workers must be a positive integer, got {workers!r}")
    if seed_set not in SEED_SETS:
        raise DeeplimitError(f"unknown seed set {seed_set!r}; choose one of {', '.join(SEED_SETS)}")
    unknown = sorted(set(only or []) - set(SECTIONS))
    if unknown:
        raise DeeplimitError(f"unknown section(s) {unknown}; choose from {sorted(SECTIONS)}")
    overrides = check_overrides(overrides, tier)
    root = ensure_dir(out, "output folder")
    out = ensure_dir(root / tier, "output folder")
    with output_lock(out):  # a second run into this folder stops here, with a one-line error
        set_threads(1)
        prov = provenance()
        ctx = Context(out, tier, workers, storage or f"sqlite:///{(out / 'sweeps.db').resolve()}", overrides, progress,
                      fresh=fresh, code=prov["code"], seed_set=seed_set)
        sections: list[Section] = []
        failed: list[str] = []
        t_all = time.perf_counter()
        keys = [k for k in SECTIONS if not only or k in only]
        bar = tqdm(keys, disable=not progress, desc=f"reproduce ({tier})", unit="section", dynamic_ncols=True)
        for key in bar:
            bar.set_postfix_str(key)
            t0 = time.perf_counter()
            before = len(sections)
            skip = not_run_text(key, tier) if tier in NOT_AT_TIER.get(key, {}) else ""
            try:
                if skip:
                    sections.append(Section(title=f"{key} (not run at the {tier} tier)", claim="(not run at this tier)",
                                            verdict="not run at this tier", reason=skip))
                else:
                    sections += SECTIONS[key](ctx)
                verdict = _verdict_line(sections[before:])
            except Exception as exc:  # a crashed section is reported as failed, never silently dropped
                error = redact_text("".join(traceback.format_exception(exc))[-3000:], ctx.storage)
                sections.append(Section(title=key, claim="(the section crashed before it could measure anything)",
                                        verdict="failed", error=error, wall_s=time.perf_counter() - t0))
                failed.append(key)
                first = redact_text(str(exc), ctx.storage).splitlines()[0] if str(exc) else type(exc).__name__
                verdict = f"FAILED: {first}"
            for s in sections[before:]:
                s.key = key
                s.rerun = rerun_command(key, tier, root, workers)
                if not s.settings and key in SECTION_SETTINGS:
                    s.settings = ctx.settings(key)
            if progress:
                bar.write(f"[reproduce] {key}: {verdict} ({time.perf_counter() - t0:.0f} s)")
        bar.close()
        wall = time.perf_counter() - t_all
        prov.update(tier=tier, wall_s=round(wall, 1), workers=workers, storage=redact_url(ctx.storage),
                    only=list(only or []), fresh=fresh, overrides=overrides, seed_set=seed_set,
                    protocol=protocol().to_dict())
        # markup from these literals only; every value is escaped by Markup.format
        intro = Markup(
            "Tier <b>{}</b> on {} thread(s) per process and {} sweep workers; total {:.0f} s. Each section states "
            "the paper's claim, what this run measured, a verdict computed by a rule in "
            "<code>deeplimit/report/claims/</code> (95% intervals over ≥ 3 seeds decide; one seed is never "
            "conclusive), its negative controls, its scale gap to the paper and its settings; a section that crashed "
            "is marked <b>failed</b>, one without power at this tier <b>not run at this tier</b>. Machine-readable: "
            "<code>report.json</code> beside this file. Tables are under <code>{}/tables</code>; sweeps are cached "
            "in <code>{}</code>, keyed by their settings and a fingerprint of the code."
        ).format(tier, torch.get_num_threads(), workers, wall, out, redact_url(ctx.storage))
        path = render(sections, "deeplimit: both papers' key results at CPU scale", intro, out / "report.html",
                      provenance=prov)
    return Report(path, sections, failed)
