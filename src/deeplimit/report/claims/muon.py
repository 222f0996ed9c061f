"""Beyond Adam: Muon LR transfer and the weight-decay timescale (optimizers spec; docs/optimizers.md)."""

from __future__ import annotations

import time
from pathlib import Path

from markupsafe import Markup

from deeplimit.io import ensure_dir
from deeplimit.report.context import Context
from deeplimit.report.html import Control, Section
from deeplimit.report.sweeps import (
    run_sweep,
    spec_settings,
)

# Grids of transfer.optimizers.GRIDS run per tier: smoke one tiny sweep (CI), full the recorded evidence runs of
# docs/optimizers.md (≈ 1 h 45 min on two workers); quick and standard are listed in NOT_AT_TIER (their cost).
MUON_GRIDS = {"smoke": ("muon-depth-transfer",),
              "full": ("muon-depth-transfer", "muon-width-transfer", "muon-transformer-depth",
                           "weight-decay-timescale", "weight-decay-constant",
                           "weight-decay-hidden-timescale", "weight-decay-hidden-constant")}
# Rows whose prediction is a shift (or a drift under a constant λ): the section's negative controls, or — when
# their runs are a relabelling of another row's — calibrations of the estimator, never evidence.
MUON_CONTROLS = {("muon_depth_transfer", "blocks_only"): "Muon without the depth factor m_L^{α−1} (rule (½, 0))",
                 ("muon_width_transfer", "sp"): "SP with Muon over width",
                 ("weight_decay_width_constant", "mup"): "one constant λ for every tensor over width",
                 ("weight_decay_hidden_constant", "mup"): "one constant λ on the hidden matrices over width"}


def muon_specs(tier: str) -> list:
    """The specs of the grids the section runs at ``tier`` (smoke: the smoke grids, else the standard ones)."""
    from deeplimit.transfer import optimizers as O

    return [O.GRIDS[grid][1]("smoke" if tier == "smoke" else "standard") for grid in MUON_GRIDS[tier]]


def muon_transfer(ctx: Context) -> list[Section]:
    """Muon LR transfer over depth and width and weight-decay transfer over width (issue 14), decided row by row
    on the slope statistic by :func:`deeplimit.transfer.optimizer_verdicts.section_rows`: "holds" when every
    evidence row is decided as predicted and every calibration rejects transfer, "partly" when the decided rows
    agree and the rest are undecided, "does not hold" when an evidence row contradicts its prediction. Rows
    predicted to shift are shown as controls; a row that relabels another row's runs (Muon's ``blocks_only``
    with U, V frozen; the hidden-only constant λ) is a calibration and never counted."""
    from deeplimit.transfer import optimizer_verdicts as V
    from deeplimit.transfer import optimizers as O

    t0 = time.perf_counter()
    tables, specs, names = {}, {}, []
    for grid in MUON_GRIDS[ctx.tier]:
        key, build = O.GRIDS[grid]
        spec = build("smoke" if ctx.tier == "smoke" else "standard")
        name, _, tables[key] = run_sweep(ctx, grid, spec)
        specs[key] = spec
        names.append((grid, name))
    analyses = O.analyses(tables)  # bootstrapped once: the rows and the figures both read it
    thresholds = O.thresholds(tables)
    rows = V.section_rows(analyses, thresholds)
    verdict = V.section_verdict(rows)
    figs_dir = ensure_dir(ctx.out / "figures" / "muon-transfer", "output folder")
    figures = [Path(O.plot_transfer({k: an}, str(figs_dir / f"{k}.png"), title=specs[k].description))
               for k, an in analyses.items()]
    if thresholds:
        figures.append(Path(O.plot_decay_thresholds(
            tables, thresholds, str(figs_dir / "weight_decay_hidden.png"),
            title="hidden-only weight decay over width: where the decay starts to cost")))
    controls, decided = [], []
    for _, r in rows.iterrows():
        agrees = V.agreement(r["agrees"])
        what = f"{r['verdict']}: {V.slope_words(r)}"
        key = (r["experiment"], r["rule"])
        if r["role"] == "calibration":
            controls.append(Control(f"{MUON_CONTROLS.get(key, ' / '.join(key))} — calibration, not evidence",
                                    f"{r['why']}; the estimator must reject transfer: 'shifts'", what,
                                    V.agreement(r["calibration_passed"])))
        elif key in MUON_CONTROLS:
            moves = "decay threshold" if r["experiment"] in O.THRESHOLD_EXPERIMENTS else "optimum"
            controls.append(Control(MUON_CONTROLS[key], f"its {moves} moves: '{r['expected']}'", what, agrees))
        elif agrees is not None:
            decided.append(f"{r['experiment']} / {r['rule']}")
    seeds = sorted({len(s.axes["seed"]) for s in specs.values()})
    reason = {"holds": "every evidence row was decided as predicted and every calibration rejected transfer",
              "partly": "the decided evidence rows agree with the predictions; the others' slope intervals are "
                        "not decided at this budget, or a calibration did not reject transfer",
              "does not hold": "a decided row contradicts its prediction",
              "inconclusive": "no row could be decided at this budget"}[verdict]
    if seeds == [1]:
        reason += " (one seed: every interval is undecided by construction)"
    return [Section(
        title="Beyond Adam: Muon LR transfer over depth and width, weight decay as a timescale (issue 14)",
        claim=("Muon's hidden matrices get the spectral LR scale √(fan_out/fan_in) and the rule's depth factor "
               "m_L^{α−1}, so the optimal base LR transfers over depth (Depth-μP, CompleteP on transformers) and "
               "width (μP); without the depth factor it shifts like L^{-1/2}. Weight decay held as an EMA "
               "timescale τ = 1/(η·λ) keeps its optimum over width, a constant λ does not (Wang & Aitchison "
               "2024); with decay on the hidden matrices alone, where decay starts to cost stays put in τ and "
               "moves +1 octave per width doubling in λ. "
               "These are deeplimit's predictions from the optimizers spec, not results of the two papers."),
        measured=Markup("<br>").join(V.section_lines(rows)),
        verdict=verdict, reason=reason, controls=controls, figures=figures,
        scale_gap=("Fashion-MNIST MLP-ResNets at width 64 (depth 4→64) and 64→512 (width), a byte transformer at "
                   "width 64 (depth 1→8), 300–400 steps, 3 seeds at the full tier; no published Muon "
                   "depth-transfer result exists to compare with."),
        settings={grid: spec_settings(specs[O.GRIDS[grid][0]]) for grid, _ in names},
        stats={"rows": rows.to_dict(orient="records")},  # report.json makes NaN null
        tables=[("verdict per experiment and rule", rows)],
        command=" ; ".join(f"deeplimit sweep create --name {n} --run-dir runs/{g} --grid {g} --set tier="
                           f"{'smoke' if ctx.tier == 'smoke' else 'standard'}" for g, n in names),
        wall_s=time.perf_counter() - t0)]
