"""|x| beats ReLU under Depth-μP (TP6 Fig. 3)."""

from __future__ import annotations

import time

from deeplimit.report.context import Context
from deeplimit.report.figures import best_loss_figure
from deeplimit.report.html import Section
from deeplimit.report.sweeps import (
    paired_best,
    run_experiment,
    seeds_note,
    spec_settings,
    sweep_command,
    tier_cuts,
)


def activation(ctx: Context) -> list[Section]:
    from deeplimit.transfer.verdict_rules import activation_verdict

    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "activation")
    depths = sorted(an.summary["depth"].unique())
    diffs = {int(L): paired_best(an, ("abs",), ("relu",), L) for L in depths}
    v = activation_verdict(diffs)
    verdict, reason = v.verdict, v.reason + seeds_note(spec)
    return [Section(
        title="|x| beats ReLU under Depth-μP (TP6 Fig. 3)",
        claim=("|x| maximises feature diversity among positively homogeneous φ and gives lower training loss "
               "than ReLU, with a gap that grows with depth (TP6 Fig. 3, L up to 2^10, CIFAR-10)."),
        measured=("Best loss over the LR grid, |x| − ReLU paired by seed: " + "; ".join(
            f"{L} blocks {d.text('nats')}" for L, d in diffs.items())
            + f" ({status.done} runs, {spec.fixed['steps']} steps, block multiplier 2^-1.5)."),
        verdict=verdict, reason=reason,
        figures=[best_loss_figure([an], ctx.out / "figures" / "activation" / "best_loss_vs_depth.png",
                                  "|x| vs ReLU: best loss per seed (dots) vs depth")] + figs,
        scale_gap=(f"TP6: CIFAR-10, width 256, L up to 2^10, ≈ 39k steps. Here: Fashion-MNIST, "
                   f"{tier_cuts('activation', ctx.tier)}"),
        settings=spec_settings(spec), stats={"abs_minus_relu": {str(L): d.to_dict() for L, d in diffs.items()}},
        tables=[("η* and best loss", an.summary)],
        command=sweep_command(ctx, "activation", name), wall_s=time.perf_counter() - t0)]
