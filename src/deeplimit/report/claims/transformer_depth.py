"""CompleteP: LR transfer over depth for Pre-LN byte transformers."""

from __future__ import annotations

import time

import numpy as np

from deeplimit.report.context import Context
from deeplimit.report.html import Section
from deeplimit.report.sweeps import (
    drift_controls,
    drift_of,
    drift_stats,
    run_experiment,
    seeds_note,
    spec_settings,
    sweep_command,
    tier_cuts,
    verdict_words,
)


def bigram_entropy(data: str) -> tuple[float, float]:
    """(unigram, bigram conditional) entropy in nats/byte of the training split: the levels a model that
    learned nothing beyond byte frequencies, resp. the previous byte, would reach."""
    from deeplimit.data import ByteCorpus

    corpus = ByteCorpus.load(data)
    tokens = np.asarray(corpus.split("train") if hasattr(corpus, "split") else corpus.train, dtype=np.int64)
    pairs = np.bincount(tokens[:-1] * 256 + tokens[1:], minlength=256 * 256).reshape(256, 256).astype(float)
    p = pairs / pairs.sum()
    row = p.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h2 = -np.nansum(p * np.log(np.where(p > 0, p / np.where(row > 0, row, 1), 1)))
        u = row[:, 0][row[:, 0] > 0]
    return float(-(u * np.log(u)).sum()), float(h2)


def transformer_depth(ctx: Context) -> list[Section]:
    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "transformer-depth")
    d = {k[0]: drift_of(an, k) for k in an.verdicts()}
    words = {k: v.get("verdict") for k, v in d.items()}
    controls = drift_controls(d, {
        "depth_mup": "α = ½ is brittle for transformers (TP6 §10.3): η* shifts or the loss degrades with depth",
        "mup": "μP without depth scaling: η* shifts or the loss degrades with depth"})
    _, bigram = bigram_entropy(spec.fixed["data"])
    best = float(an.summary["best_loss"].min())
    learned = best < bigram - 0.1
    if not learned:
        verdict = "inconclusive"
        reason = (f"no power: the best loss of any rule at any depth ({best:.3f} nats/byte) is not clearly "
                  f"below the corpus's bigram entropy ({bigram:.3f}), so the LR optima measure noise")
    elif words.get("completep") == "transfers" and all(c.passed for c in controls):
        verdict, reason = "holds", "CompleteP's drift interval lies within ±1 octave and the other rules shift"
    elif words.get("completep") == "transfers":
        verdict, reason = "partly", "CompleteP transfers, but another rule was not shown to shift"
    elif words.get("completep") in ("shifts", "degrades"):
        verdict, reason = "does not hold", "CompleteP's η* shifts or its loss degrades with depth"
    else:
        verdict, reason = "inconclusive", "CompleteP's drift interval straddles the ±1 octave tolerance"
    return [Section(
        title="CompleteP: LR transfer over depth for Pre-LN byte transformers",
        claim=("CompleteP (α = 1) gives depth-wise LR transfer for pre-LN transformers (CompleteP paper, GPT-2 "
               "style models up to 1.9B parameters); α = ½ is brittle there (TP6 §10.3); μP without depth "
               "scaling drifts."),
        measured=("drift of log2 η* across depths: " + ", ".join(
            f"{k} {v.get('drift', np.nan):+.2f} {v.get('drift_ci', '')}" for k, v in d.items())
            + f"; best loss {best:.3f} nats/byte vs bigram entropy {bigram:.3f}.{verdict_words(an)}"),
        verdict=verdict, reason=reason + "." + seeds_note(spec), controls=controls, figures=figs,
        scale_gap=(f"CompleteP: GPT-2-style models, width ≥ 256, depths to 128+, billions of tokens. Here: "
                   f"width 64 byte-level LM on {spec.fixed['data']}, {tier_cuts('transformer-depth', ctx.tier)}"),
        settings=spec_settings(spec), stats={**drift_stats(an), "best_loss": best, "bigram_entropy": bigram},
        tables=[("η* per depth", an.summary), ("drift", an.drift)],
        command=sweep_command(ctx, "transformer-depth", name), wall_s=time.perf_counter() - t0)]
