"""CompleteP: LR transfer over depth for Pre-LN byte transformers."""

from __future__ import annotations

import time

import numpy as np

from deeplimit.report.context import Context
from deeplimit.report.figures import transfer_figures
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
    from deeplimit.protocol import protocol
    from deeplimit.transfer.verdicts import transformer_depth_verdict

    t0 = time.perf_counter()
    spec, status, an, figs, name = run_experiment(ctx, "transformer-depth")
    _, bigram = bigram_entropy(spec.fixed["data"])
    best = float(an.summary["best_loss"].min())
    v = transformer_depth_verdict(an.runs, protocol().claim("transformer-depth"), learned=best < bigram - 0.1)
    return [Section(
        title="CompleteP: LR transfer over depth for Pre-LN byte transformers",
        claim=("CompleteP (α = 1) gives depth-wise LR transfer for pre-LN transformers (CompleteP paper, GPT-2 "
               "style models up to 1.9B parameters); α = ½ is brittle there (TP6 §10.3); μP without depth "
               "scaling drifts."),
        measured=(f"{status.done} runs ({status.diverged} diverged). Slope of log2 η* per doubling of depth "
                  "(per-seed η*, mean and 95% t interval over seeds) and transfer regret: " + transfer_words(v.stats)
                  + f" Best loss {best:.3f} nats/byte vs the corpus's bigram entropy {bigram:.3f}."),
        verdict=v.verdict, reason=v.reason + "." + seeds_note(spec) + protocol_note(ctx, "transformer-depth", spec),
        controls=[Control.from_check(c) for c in v.checks],
        figures=transfer_figures(ctx, an, "transformer-depth", "depth", v.stats, figs, best=False),
        scale_gap=(f"CompleteP: GPT-2-style models, width ≥ 256, depths to 128+, billions of tokens. Here: "
                   f"width 64 byte-level LM on {spec.fixed['data']}, {tier_cuts('transformer-depth', ctx.tier)}"),
        settings=spec_settings(spec), stats={**v.stats, "best_loss": best, "bigram_entropy": bigram},
        command=sweep_command(ctx, "transformer-depth", name), wall_s=time.perf_counter() - t0)]
