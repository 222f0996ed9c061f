"""μP: the optimal LR transfers across width (TP5)."""

from __future__ import annotations

import time

from deeplimit.report.context import Context
from deeplimit.report.html import Control, Section
from deeplimit.report.sweeps import (
    drift_of,
    drift_stats,
    run_experiment,
    seeds_note,
    spec_settings,
    sweep_command,
    tier_cuts,
    verdict_words,
)


def width_transfer(ctx: Context) -> list[Section]:
    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "width-transfer")
    d = {k[0]: drift_of(an, k) for k in an.verdicts()}
    mup, sp = d.get("mup", {}).get("verdict"), d.get("sp", {}).get("verdict", "inconclusive")
    control = Control("SP over width", "η* shifts toward smaller LR as width grows: 'shifts' (or 'degrades')",
                      d.get("sp", {}).get("verdict_text", "not run"),
                      None if sp == "inconclusive" else sp in ("shifts", "degrades"))
    verdict = ("holds" if mup == "transfers" and control.passed else
               "partly" if mup == "transfers" else "does not hold" if mup in ("shifts", "degrades")
               else "inconclusive")
    reason = {"holds": "μP's whole drift interval lies within ±1 octave and SP shifts",
              "partly": "μP transfers, but SP's shift could not be shown at this size range",
              "does not hold": "μP's η* shifts (its interval lies beyond the tolerance) or its loss degrades",
              "inconclusive": "μP's drift interval straddles the ±1 octave tolerance"}[verdict] + "." + \
        seeds_note(spec)
    return [Section(
        title="μP: the optimal learning rate transfers across width (TP5)",
        claim=("Under μP the optimal Adam LR is stable in width; under SP it shifts toward smaller LR as width "
               "grows (TP5 Fig. 1/3: transformers and MLPs up to width 8192; microsoft/mup README)."),
        measured=(f"{status.done} runs of {spec.fixed['steps']} steps, depth {spec.fixed['depth']}, widths "
                  f"{list(spec.axes['width'])}, seeds {list(spec.axes['seed'])}. Verdicts:" + verdict_words(an)),
        verdict=verdict, reason=reason, controls=[control], figures=figs,
        scale_gap=(f"TP5: widths up to 8192, full training runs. Here: Fashion-MNIST MLP-ResNet, "
                   f"{tier_cuts('width-transfer', ctx.tier)}"),
        settings=spec_settings(spec), stats=drift_stats(an),
        tables=[("η* per width", an.summary), ("drift per rule", an.drift)],
        command=sweep_command(ctx, "width-transfer", name), wall_s=time.perf_counter() - t0)]
