"""Depth-μP: the optimal LR transfers across depth, and the ODE rule's does not (TP6 Figs. 10, 11)."""

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


def depth_transfer(ctx: Context) -> list[Section]:
    from deeplimit.transfer.verdicts import depth_transfer_verdict

    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "depth-transfer")
    claim = protocol().claim("depth-transfer")
    v = depth_transfer_verdict(an.runs, claim, size="depth", group="rule", base_depth=spec.fixed["base_depth"])
    sizes = sorted(an.runs["depth"].unique())
    measured = (f"{status.done} runs ({status.diverged} diverged) of {spec.fixed['steps']} steps, width "
                f"{spec.fixed['width']}, depths {sizes[0]}→{sizes[-1]}, seeds {list(spec.axes['seed'])}. "
                f"Slope of log2 η* per doubling of depth (per-seed η* by a weighted quadratic over 5 grid points; "
                f"mean and 95% t interval over seeds) and transfer regret: " + transfer_words(v.stats)
                + f" Best loss under Depth-μP, deepest − shallowest, paired by seed: "
                  f"{v.stats['deeper_minus_shallower']['text']}.")
    return [Section(
        title="Depth-μP: the optimal learning rate transfers across depth (TP6 Figs. 10, 11)",
        claim=("With branches scaled by 1/√L and Adam LR by 1/√L (Depth-μP), the optimal LR stays put as depth "
               "grows and deeper is not worse (TP6 Fig. 10 top, L = 2^1…2^10, width 256); the ODE rule (1, 0) — "
               "branch multiplier 1/L — does not transfer: its optimal LR grows with depth (Fig. 11); SP shifts "
               "and degrades (Fig. 10 bottom)."),
        measured=measured, verdict=v.verdict, reason=v.reason + protocol_note(ctx, "depth-transfer", spec),
        controls=[Control.from_check(c) for c in v.checks],
        figures=transfer_figures(ctx, an, "depth-transfer", "depth", v.stats, figs),
        scale_gap=(f"TP6: width 256, depths up to 2^10, ≈ 39k steps (50 epochs) on CIFAR-10 with 1000-step loss "
                   f"windows. Here: Fashion-MNIST, {tier_cuts('depth-transfer', ctx.tier)}"),
        settings=spec_settings(spec), stats=v.stats,
        command=sweep_command(ctx, "depth-transfer", name), wall_s=time.perf_counter() - t0)]
