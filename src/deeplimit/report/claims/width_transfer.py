"""μP: the optimal learning rate transfers across width, and SP's does not (TP5)."""

from __future__ import annotations

import time

from deeplimit.protocol import protocol
from deeplimit.report.context import Context
from deeplimit.report.figures import transfer_figures
from deeplimit.report.html import Control, Section
from deeplimit.report.sweeps import (
    protocol_note,
    run_experiment,
    spec_settings,
    sweep_command,
    tier_cuts,
    transfer_words,
)


def width_transfer(ctx: Context) -> list[Section]:
    from deeplimit.transfer.verdicts import width_transfer_verdict

    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "width-transfer")
    claim = protocol().claim("width-transfer")
    v = width_transfer_verdict(an.runs, claim, size="width", group="rule")
    sizes = sorted(an.runs["width"].unique())
    return [Section(
        title="μP: the optimal learning rate transfers across width (TP5)",
        claim=("Under μP the optimal Adam LR is stable in width; under SP it shifts toward smaller LR as width "
               "grows, like 1/n (TP5 Figs. 1, 3: transformers and MLPs up to width 8192; microsoft/mup README)."),
        measured=(f"{status.done} runs ({status.diverged} diverged) of {spec.fixed['steps']} steps, depth "
                  f"{spec.fixed['depth']}, widths {sizes[0]}→{sizes[-1]}, all layers trained, readout "
                  f"{'zero-initialised' if spec.fixed.get('readout_zero_init') else 'std 1/√n₀'}, seeds "
                  f"{list(spec.axes['seed'])}. Slope of log2 η* per doubling of width (per-seed η* by a weighted "
                  "quadratic over 5 grid points; mean and 95% t interval over seeds) and transfer regret: "
                  + transfer_words(v.stats)),
        verdict=v.verdict, reason=v.reason + protocol_note(ctx, "width-transfer", spec),
        controls=[Control.from_check(c) for c in v.checks],
        figures=transfer_figures(ctx, an, "width-transfer", "width", v.stats, figs),
        scale_gap=(f"TP5: widths up to 8192, full training runs. Here: Fashion-MNIST MLP-ResNet, "
                   f"{tier_cuts('width-transfer', ctx.tier)}"),
        settings=spec_settings(spec), stats=v.stats,
        command=sweep_command(ctx, "width-transfer", name), wall_s=time.perf_counter() - t0)]
