"""μP's width coordinate check (TP5 Fig. 5; microsoft/mup's coord_check): flat under μP, growing under SP."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

from deeplimit.io import atomic_write_json, ensure_dir
from deeplimit.protocol import protocol, seed_values
from deeplimit.report.context import Context, cached
from deeplimit.report.html import Control, Section

RULES = ("mup", "sp")


def _per_seed_slopes(ctx: Context, rule: str, t: dict, out: Path) -> dict:
    """Per-seed log2 slope per doubling of width of each site's RMS change from init (library calls; the summary
    is cached with its settings, code and data)."""
    from deeplimit.diagnostics.coordinates import coord_check, log2_slopes, plot_coord_check
    from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig
    from deeplimit.train import cached_image_data

    seeds = seed_values(int(t["seeds"]), ctx.seed_set, "coord-check-width")
    settings = {"rule": rule, **t, "seed_values": seeds, "readout_zero_init": True}

    def compute() -> dict:
        x, y, _, _ = cached_image_data("fashion-mnist", None)
        widths = [int(w) for w in t["sizes"]]
        make = lambda w, d: MLPResNet(MLPResNetConfig(d_in=x.shape[1], d_out=int(y.max()) + 1, width=w, depth=d))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the readout as in the width-transfer claim (zero, mup's recommendation): the check then measures
            # the model the transfer claim trains
            df = coord_check(make, rule, x, y, widths=widths, depths=[int(t["depth"])], base_width=widths[0],
                             base_depth=int(t["depth"]), lr=float(t["lr"]), steps=int(t["steps"]), seeds=seeds,
                             train_io=True, readout_zero_init=True)
        per_site: dict[str, list[float]] = {}
        for _, g in df.groupby("seed"):
            sl = log2_slopes(g, "width")
            last = sl[sl["step"] == sl["step"].max()]
            for site, slope in zip(last["site"], last["slope"]):
                per_site.setdefault(str(site), []).append(float(slope))
        ensure_dir(out, "output folder")
        fd, tmp = tempfile.mkstemp(prefix=".coord_check_width.", suffix=".tmp.png", dir=out)  # unique: two runs
        os.close(fd)  # into one folder never share a temporary file
        plot_coord_check(df, "width", tmp)
        os.replace(tmp, out / "coord_check_width.png")
        summary = {"settings": settings, "per_seed_slopes": per_site}
        atomic_write_json(out / "coord_check_width_summary.json", summary)
        return summary

    return cached(out / "coord_check_width_summary.json", settings, compute,
                  code=ctx.stamp("diagnostics", "fashion-mnist"), fresh=ctx.fresh)


def coord_check_width(ctx: Context) -> list[Section]:
    from deeplimit.transfer.verdicts import coord_width_verdict

    t0 = time.perf_counter()
    t = ctx.settings("coord-check-width")
    claim = protocol().claim("coord-check-width")
    out = ctx.out / "coord-check-width"
    res = {rule: _per_seed_slopes(ctx, rule, t, out / rule) for rule in RULES}
    v = coord_width_verdict({r: res[r]["per_seed_slopes"] for r in RULES}, claim)
    reason = v.reason
    if int(t["seeds"]) < 3:
        verdict, reason = "inconclusive", f"{t['seeds']} seed(s) at this tier: no interval (quick runs 3)"
    else:
        verdict = v.verdict
    mup = "; ".join(f"{s} {d['slope']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]" if d["ci"][0] is not None
                    else f"{s} n/a" for s, d in v.stats[claim["claim_rule"]].items())
    return [Section(
        title="μP width coordinate check: activations' change stays O(1) in width (TP5 Fig. 5)",
        claim=("Under μP every activation's change after a few Adam steps is O(1) — flat in width; under SP the "
               "logits' change grows with width (TP5 Fig. 5; microsoft/mup's coord_check)."),
        measured=(f"log2 slope per doubling of width of the RMS change from init after {t['steps']} Adam steps at lr "
                  f"{float(t['lr']):g}, widths {list(t['sizes'])}, depth {t['depth']}, all layers trained, readout "
                  f"zero-initialised, seeds {seed_values(int(t['seeds']), ctx.seed_set, 'coord-check-width')} "
                  "(mean and 95% t interval): "
                  f"μP {mup}. Flat means the interval lies within ±{claim['margin_slope']} per doubling."),
        verdict=verdict, reason=reason,
        controls=[Control.from_check(c) for c in v.checks],
        scale_gap=(f"TP5: transformers and MLPs to width 8192. Here: MLP-ResNet on Fashion-MNIST, widths "
                   f"{list(t['sizes'])}."),
        settings=t, stats=v.stats,
        figures=[out / r / "coord_check_width.png" for r in RULES],
        command=" && ".join(
            f"deeplimit coord-check --axis width --widths {' '.join(map(str, t['sizes']))} --depth {t['depth']} "
            f"--steps {t['steps']} --seeds {t['seeds']} --lr {float(t['lr']):g} --rule {r} "
            f"--out runs/coord-check-width/{r}" for r in RULES),
        wall_s=time.perf_counter() - t0)]
