"""Block depth 2 breaks depth transfer (TP6 §9, Figs. 4–6)."""

from __future__ import annotations

import time

from deeplimit.report.context import Context
from deeplimit.report.html import Control, Section
from deeplimit.report.sweeps import (
    protocol_note,
    run_experiment,
    seeds_note,
    spec_settings,
    sweep_command,
    tier_cuts,
    transfer_words,
)


def block_depth(ctx: Context) -> list[Section]:
    from deeplimit.protocol import protocol
    from deeplimit.transfer.verdicts import block_depth_verdict

    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "block-depth")
    v = block_depth_verdict(an.runs, protocol().claim("block-depth"))
    diff = v.stats.get("abs_slope_k2_minus_k1", {}).get("text", "n/a")
    return [Section(
        title="Block depth 2 breaks depth transfer (TP6 §9, Figs. 4–6)",
        claim=("With two matrices per residual branch the optimal LR moves with the number of blocks even under "
               "Depth-μP (TP6 Figs. 4–6); TP6 calls the fix 'missing hyperparameters' and does not claim "
               "a specific direction at small L."),
        measured=(f"{status.done} runs. Slope of log2 η* per doubling of depth (per-seed η*, mean and 95% t interval) "
                  "and transfer regret: " + transfer_words({f"block depth {k[-1]}": s for k, s in v.stats.items()
                                                           if k.startswith("block_depth_")})
                  + f" Paired per-seed |slope₂| − |slope₁| = {diff}."),
        verdict=v.verdict, reason=v.reason + "." + seeds_note(spec) + protocol_note(ctx, "block-depth", spec),
        controls=[Control.from_check(c) for c in v.checks], figures=figs,
        scale_gap=(f"TP6: CIFAR-10, width 256, L up to 2^10. Here: Fashion-MNIST, "
                   f"{tier_cuts('block-depth', ctx.tier)}"),
        settings=spec_settings(spec), stats=v.stats,
        command=sweep_command(ctx, "block-depth", name), wall_s=time.perf_counter() - t0)]
