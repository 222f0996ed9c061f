"""Depth coordinate check that sees the LR exponent (CompleteP Fig. 7 style)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write_json, ensure_dir
from deeplimit.protocol import protocol, seed_values
from deeplimit.report.context import Context, cached
from deeplimit.report.figures import replacing
from deeplimit.report.html import Control, Section

# |log2 slope| per doubling of depth below which a coordinate counts as flat: the protocol's pre-registered margin
FLAT = float(protocol().claim("coord-check")["margin_slope"])
COORD_SITES = ("block_last", "logits")  # input and readout are frozen: the stream's and logits' change decide
# one block's own change per doubling of depth (x¹'s change from init): −(α + the LR exponent) with Adam
BLOCK_SLOPE = {"depth_mup": -1.0, "blocks_only": -0.5, "sp": 0.0}


def _coord_check_rule(ctx: Context, rule: str, t: dict, out: Path) -> dict:
    """Depth coordinate check of one rule on Fashion-MNIST (library calls; summary cached with its settings)."""
    from deeplimit.diagnostics.coordinates import coord_check, coord_verdict, log2_slopes, plot_coord_check
    from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig
    from deeplimit.train import cached_image_data
    from deeplimit.transfer.verdict_rules import seed_consensus

    seeds = seed_values(int(t["seeds"]), ctx.seed_set)
    settings = {"rule": rule, **t, "sites": list(COORD_SITES), "seed_values": seeds}

    def compute() -> dict:
        x, y, _, _ = cached_image_data("fashion-mnist", None)
        depths = [int(d) for d in t["depths"]]
        if len(depths) < 2 or min(depths) < 1:
            raise DeeplimitError(f"coord-check needs at least two positive depths, got {t['depths']}")
        make = lambda w, d: MLPResNet(MLPResNetConfig(d_in=x.shape[1], d_out=int(y.max()) + 1, width=w, depth=d))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = coord_check(make, rule, x, y, widths=[t["width"]], depths=depths, base_width=t["width"],
                             base_depth=min(depths), lr=t["lr"], steps=t["steps"], seeds=seeds,
                             train_io=bool(t.get("train_io", True)))
        whole = coord_verdict(df, "depth", threshold=FLAT, sites=COORD_SITES)
        per_seed = [coord_verdict(g, "depth", threshold=FLAT, sites=COORD_SITES) for _, g in df.groupby("seed")]
        slopes = log2_slopes(df, "depth")
        last = slopes[slopes["step"] == slopes["step"].max()].set_index("site")["slope"]
        ensure_dir(out, "output folder")
        with replacing(out / "coord_check.png") as tmp:  # drawn by the diagnostics module under a unique name
            plot_coord_check(df, "depth", str(tmp))
        seed_verdicts = [v.verdict for v in per_seed]
        verdict = seed_consensus(whole.verdict, seed_verdicts)
        summary = {"settings": settings,
                   "log2_slope_of_change_per_site": {k: (None if not np.isfinite(v) else round(float(v), 3))
                                                     for k, v in last.items()},
                   "per_seed_max_abs_slope": [None if not np.isfinite(v.max_abs_slope) else round(v.max_abs_slope, 3)
                                              for v in per_seed],
                   "per_seed_verdicts": seed_verdicts, "verdict": verdict, "threshold": FLAT}
        atomic_write_json(out / "coord_check_summary.json", summary)
        return summary

    return cached(out / "coord_check_summary.json", settings, compute, code=ctx.stamp("diagnostics", "fashion-mnist"),
                  fresh=ctx.fresh)


def coord_check_depth(ctx: Context) -> list[Section]:
    from deeplimit.transfer.verdict_rules import coord_depth_verdict

    t0 = time.perf_counter()
    t = ctx.settings("coord-check")
    out = ctx.out / "coord-check"
    rules = ("depth_mup", "blocks_only", "sp")
    res = {rule: _coord_check_rule(ctx, rule, t, out / rule) for rule in rules}

    def fmt(r: str) -> str:
        sl = res[r]["log2_slope_of_change_per_site"]
        return ", ".join(f"{k} {v:+.2f}" if v is not None else f"{k} n/a" for k, v in sl.items())

    def block(r: str) -> str:
        v = res[r]["log2_slope_of_change_per_site"].get("block_first")
        return "n/a" if v is None else f"{v:+.2f} (theory {BLOCK_SLOPE[r]:+.1f})"

    v = coord_depth_verdict({r: res[r]["verdict"] for r in rules}, int(t["seeds"]), protocol().claim("coord-check"))
    # the report's rows show each control's slopes beside its word
    controls = [Control(c.name, c.expectation, f"{fmt(r)} → {res[r]['verdict']} (per-seed max |slope| "
                        f"{res[r]['per_seed_max_abs_slope']})", c.passed) for r, c in zip(rules[1:], v.checks)]
    verdict, reason = v.verdict, v.reason
    return [Section(
        title="Depth coordinate check that sees the LR exponent (CompleteP Fig. 7 / nanoGPT-mup style)",
        claim=("Under Depth-μP the residual stream and logits change by O(1) after training, flat in depth; "
               "with the branch multiplier alone (½, 0) — no 1/√L on Adam's LR — the change grows with depth, "
               "and under SP it blows up (TP6 §6; CompleteP's coordinate checks)."),
        measured=(f"log2 slope per doubling of depth of RMS change from init after {t['steps']} Adam steps at "
                  f"lr {t['lr']:g} (input and readout frozen, {t['seeds']} seeds) — Depth-μP: {fmt('depth_mup')} "
                  f"({res['depth_mup']['verdict']}); (½, 0): {fmt('blocks_only')} ({res['blocks_only']['verdict']}); "
                  f"SP: {fmt('sp')} ({res['sp']['verdict']}). Flat means |slope| ≤ {FLAT} on "
                  f"{', '.join(COORD_SITES)} in every seed. One block's own change (block_first) per doubling: "
                  + "; ".join(f"{r} {block(r)}" for r in rules) + "."),
        verdict=verdict, reason=reason, controls=controls,
        scale_gap=("CompleteP's checks: width 256, depths 2–64, 10 AdamW steps at lr 1e-3 on Shakespeare. Here: "
                   f"MLP-ResNet width {t['width']} on Fashion-MNIST, depths {t['depths']}, {t['steps']} steps at a "
                   f"larger lr {t['lr']:g}, so that the change from init is large enough for the LR exponent of "
                   "the (½, 0) rule to show in so few steps."),
        settings=t, stats={r: {k: v for k, v in res[r].items() if k != "settings"} for r in rules},
        figures=[out / r / "coord_check.png" for r in rules],
        command=" && ".join(
            f"deeplimit coord-check --axis depth --depths {' '.join(map(str, t['depths']))} --width {t['width']} "
            f"--steps {t['steps']} --seeds {t['seeds']} --lr {t['lr']:g} --rule {r}"
            + (" --freeze-io" if not t.get("train_io", True) else "") + f" --out runs/coord-check/{r}"
            for r in rules),
        wall_s=time.perf_counter() - t0)]
