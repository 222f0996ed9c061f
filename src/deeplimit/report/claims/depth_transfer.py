"""Depth-μP: the optimal LR transfers across depth (TP6 Figs. 10, 11)."""

from __future__ import annotations

import time

from markupsafe import Markup

from deeplimit.report.context import Context
from deeplimit.report.figures import best_loss_figure
from deeplimit.report.html import Section
from deeplimit.report.sweeps import (
    best_at,
    drift_controls,
    drift_of,
    drift_stats,
    run_experiment,
    seed_best,
    seeds_note,
    spec_settings,
    sweep_command,
    tier_cuts,
    verdict_words,
)


def depth_transfer(ctx: Context) -> list[Section]:
    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "depth-transfer")
    v = {k[0]: drift_of(an, k) for k in an.verdicts()}
    sizes = sorted(an.summary["depth"].unique())
    lo, hi = sizes[0], sizes[-1]
    dm = v.get("depth_mup", {})
    from deeplimit.transfer.analysis import paired_difference

    a, b = seed_best(an, ("depth_mup",), hi), seed_best(an, ("depth_mup",), lo)
    seeds = sorted(set(a.index) & set(b.index))
    deeper = paired_difference(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy())
    deeper_not_worse = deeper.n >= 2 and deeper.hi <= 0.02  # deeper is not worse by more than 0.02 nats
    controls = drift_controls(v, {"blocks_only": "η* shifts like L^{-1/2}: 'shifts' (or 'degrades')",
                                   "sp": "η* shifts and/or the loss degrades with depth: not 'transfers'"})
    if dm.get("verdict") == "transfers" and deeper_not_worse and all(c.passed for c in controls):
        verdict = "holds"
    elif dm.get("verdict") in ("shifts", "degrades"):
        verdict = "does not hold"
    elif dm.get("verdict") == "transfers" and deeper_not_worse:
        verdict = "partly"  # Depth-μP transfers but a control could not be shown to fail
    else:
        verdict = "inconclusive"
    reason = {"holds": "Depth-μP's whole drift interval lies within ±1 octave, deeper is not worse, and both "
                       "controls shift or degrade",
              "partly": "Depth-μP transfers and deeper is not worse, but a control's verdict was not conclusive",
              "does not hold": "Depth-μP's η* shifts (its interval lies beyond the tolerance) or its loss degrades",
              "inconclusive": "Depth-μP's drift interval straddles the ±1 octave tolerance, or deeper-not-worse "
                              "could not be shown"}[verdict] + "." + seeds_note(spec)
    measured = (f"{status.done} runs ({status.diverged} diverged) of {spec.fixed['steps']} steps, width "
                f"{spec.fixed['width']}, depths {lo}→{hi}, seeds {list(spec.axes['seed'])}. Verdicts:"
                + verdict_words(an) + Markup("<br>")
                + f"Best loss under Depth-μP: {best_at(an, ('depth_mup',), lo):.3f} at {lo} blocks, "
                  f"{best_at(an, ('depth_mup',), hi):.3f} at {hi} blocks; paired per-seed difference "
                  f"(deepest − shallowest) {deeper.text('nats')}.")
    return [Section(
        title="Depth-μP: the optimal learning rate transfers across depth (TP6 Figs. 10, 11)",
        claim=("With branches scaled by 1/√L and Adam LR by 1/√L (Depth-μP), the optimal LR stays put as depth "
               "grows and deeper is not worse (TP6 Fig. 10 top, L = 2^1…2^10, width 256); with the branch "
               "multiplier only (½, 0) the optimum shifts like L^{-1/2} (Fig. 10 middle); standard "
               "parametrization shifts and its loss degrades (Fig. 10 bottom); the ODE limit (1, 0) drifts "
               "upward in this block-depth-1 family (Fig. 11; TP6 notes its own Depth-μP shows a mild shift at "
               "small L, which is why L starts at 2 here)."),
        measured=measured, verdict=verdict, reason=reason, controls=controls,
        figures=[best_loss_figure([an], ctx.out / "figures" / "depth-transfer" / "best_loss_vs_depth.png",
                                  "best loss per seed (dots) vs depth, per rule")] + figs,
        scale_gap=(f"TP6: width 256, depths up to 2^10, ≈ 39k steps (50 epochs) on CIFAR-10 with 1000-step loss "
                   f"windows. Here: Fashion-MNIST, {tier_cuts('depth-transfer', ctx.tier)}"),
        settings=spec_settings(spec),
        stats={**drift_stats(an), "deeper_minus_shallower": deeper.to_dict()},
        tables=[("η* per depth", an.summary), ("drift per rule", an.drift)],
        command=sweep_command(ctx, "depth-transfer", name), wall_s=time.perf_counter() - t0)]
