"""Studies that train runs and measure a diagnostic along the way (one layer above :mod:`deeplimit.train`).

* :func:`feature_diversity_study` — κ̂ of trained MLP-ResNets per rule (TP6 §7, Fig. 17);
* :func:`signal_study` — per-layer gradient norms of W^V, W^Q at init, token correlation per layer, and
  attention entropy during a short training run, shaped vs Pre-/Post-LN transformers (Noci et al. 2023,
  Figs. 1 left, 2, 6).

Each validates every setting before it writes anything, writes its tables and figures atomically under
``out``, and returns its tables plus a JSON-ready ``summary`` that records the ``settings`` (so a cached
summary is reused only for the same settings). ``deeplimit feature-diversity``, ``deeplimit signal`` and the
report call these functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write, atomic_write_json, ensure_dir
from deeplimit.scaling.rules import get_rule
from deeplimit.train import TrainConfig, cached_image_data, config_from_point, train

STUDY_VERSION = 1  # bump when a study's computation changes, so cached summaries are recomputed


@dataclass
class StudyTables:
    """A study's tables (by name), its JSON-ready summary (also written to disk) and the files it wrote."""

    tables: dict[str, pd.DataFrame]
    summary: dict
    files: list[Path] = field(default_factory=list)


def _csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, index=False)
    return path


def _ints(name: str, values: Sequence[Any], lo: int, hi: int | None = None) -> list[int]:
    values = list(values)
    if not values:
        raise DeeplimitError(f"{name}: give at least one value")
    for v in values:
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)):
            bound = f"between {lo} and {hi}" if hi is not None else f"≥ {lo}"
            raise DeeplimitError(f"{name}: every value must be an integer {bound}, got {v!r}")
    return sorted(set(values))


# ------------------------------------------------------------------------------------------------------
# Feature diversity


def feature_diversity_settings(rules: Sequence[str] = ("depth_mup", "ode"), *, width: int = 128, depth: int = 64,
                               base_width: int | None = None, base_depth: int = 4, lr: float = 2**-8,
                               steps: int = 300, measure_at: Sequence[int] = (0, 100, 300),
                               activation: str = "relu", data: str = "fashion-mnist", seed: int = 0,
                               batch: int = 256) -> dict[str, Any]:
    """Validated settings of :func:`feature_diversity_study` (one :class:`TrainConfig` per rule is built, so
    every training option is checked); nothing runs."""
    rules = list(rules)
    if not rules:
        raise DeeplimitError("give at least one rule")
    for rule in rules:
        get_rule(rule)
    settings = dict(version=STUDY_VERSION, rules=rules, width=width, depth=depth, base_width=base_width or width,
                    base_depth=base_depth, lr=lr, steps=steps, activation=activation, data=data, seed=seed,
                    batch=batch)
    for cfg in _fd_configs(settings):
        if cfg.depth < 2:
            raise DeeplimitError(f"feature diversity needs depth ≥ 2 residual blocks, got {cfg.depth}")
    settings["measure_at"] = _ints("measure_at", measure_at, 0, steps)
    if not (isinstance(batch, int) and batch >= 1):
        raise DeeplimitError(f"batch must be a positive integer, got {batch!r}")
    return settings


def _fd_configs(s: dict) -> list[TrainConfig]:
    return [TrainConfig(width=s["width"], depth=s["depth"], base_width=s["base_width"], base_depth=s["base_depth"],
                        rule=rule, lr=s["lr"], steps=s["steps"], data=s["data"], seed=s["seed"], train_io=False,
                        model_kwargs={"activation": s["activation"]}) for rule in s["rules"]]


def feature_diversity_study(rules: Sequence[str] = ("depth_mup", "ode"), *, out: str | Path | None = None,
                            progress: bool = False, **kwargs: Any) -> StudyTables:
    """Train one MLP-ResNet per rule (input and readout frozen, TP6's protocol) and measure the residual-stream
    distances d(Δu) and κ̂ = 1 − slope at the steps ``measure_at`` on a held-out batch of ``batch`` examples.

    Keyword settings as :func:`feature_diversity_settings`. Tables ``distances`` (``u, j, du, d, rms_ref,
    depth, rule, step``) and ``kappa`` (``u, slope, kappa, points, rule, step``); with ``out`` also
    ``distances.csv``, ``kappa.csv``, ``feature_diversity.png`` and ``feature_diversity.json``.
    """
    from deeplimit.diagnostics.feature_diversity import KappaProbe, plot_feature_diversity

    s = feature_diversity_settings(rules, **kwargs)
    _, _, xte, _ = cached_image_data(s["data"], None)  # bad data fails here, before anything is written
    if len(xte) == 0:
        raise DeeplimitError(f"dataset {s['data']!r} has no held-out split to measure on; use fashion-mnist, "
                             "digits or an .npz file")
    held_out = xte[: s["batch"]]
    out_dir = ensure_dir(out, "output folder") if out is not None else None
    dist, kap = [], []
    for cfg in _fd_configs(s):
        probe = KappaProbe(held_out, s["measure_at"], rule=cfg.rule)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rule warnings (spec §9) are expected for the ODE rule
            train(cfg, hook=probe, progress=progress)
        dist += probe.distances
        kap += probe.kappas
    tables = {"distances": pd.concat(dist, ignore_index=True), "kappa": pd.concat(kap, ignore_index=True)}
    half = tables["kappa"][tables["kappa"]["u"] == 0.5]
    summary = {"settings": s, "kappa_at_u_half": {f"{r} step {t}": float(k) for r, t, k in
                                                  zip(half["rule"], half["step"], half["kappa"])},
               **{name: df.to_dict(orient="records") for name, df in tables.items()}}
    res = StudyTables(tables, summary)
    if out_dir is not None:
        res.files = [_csv(tables["distances"], out_dir / "distances.csv"), _csv(tables["kappa"], out_dir / "kappa.csv"),
                     Path(plot_feature_diversity(tables["distances"], str(out_dir / "feature_diversity.png"),
                                                 f"feature diversity, width {s['width']}, {s['depth']} blocks")),
                     atomic_write_json(out_dir / "feature_diversity.json", summary)]
    return res


# ------------------------------------------------------------------------------------------------------
# Signal propagation in transformers


def signal_settings(variants: Sequence[str] = ("shaped", "softmax", "pre_ln", "post_ln"), *,
                    residual_gamma: float = 2**-1.5, width: int = 64, depth: int = 12, data: str = "shakespeare",
                    seeds: Sequence[int] = (0, 1, 2), train_steps: int = 200, lr: float = 2**-7) -> dict[str, Any]:
    """Validated settings of :func:`signal_study`; nothing runs."""
    from deeplimit.diagnostics.signal import SIGNAL_VARIANTS

    variants = list(variants)
    unknown = [v for v in variants if v not in SIGNAL_VARIANTS]
    if unknown or not variants:
        raise DeeplimitError(f"unknown variant(s) {unknown}; choose from {', '.join(SIGNAL_VARIANTS)}")
    if not (isinstance(residual_gamma, (int, float)) and math.isfinite(residual_gamma) and 0 < residual_gamma <= 1):
        raise DeeplimitError(f"residual_gamma must be a number in (0, 1], got {residual_gamma!r}")
    if not (isinstance(train_steps, int) and train_steps >= 0):
        raise DeeplimitError(f"train_steps must be an integer ≥ 0 (0 skips the entropy run), got {train_steps!r}")
    s = dict(version=STUDY_VERSION, variants=variants, residual_gamma=float(residual_gamma), width=width,
             depth=depth, data=data, seeds=_ints("seeds", seeds, 0), train_steps=train_steps, lr=lr)
    TrainConfig(model="transformer", width=width, depth=depth, lr=lr, data=data)  # checks width, depth, lr, data
    return s


def _entropy_config(s: dict, variant: str) -> TrainConfig:
    from deeplimit.diagnostics.signal import SIGNAL_VARIANTS

    return config_from_point({"model": "transformer", "rule": "mup", "width": s["width"],
                              "depth": min(s["depth"], 6), "lr": s["lr"], "steps": s["train_steps"],
                              "optimizer": "adamw", "batch_size": 16, "seq_len": 64, "data": s["data"],
                              "warmup_frac": 0.05, "entropy_every": max(1, s["train_steps"] // 10),
                              "min_window": 20, **SIGNAL_VARIANTS[variant]})


def signal_study(variants: Sequence[str] = ("shaped", "softmax", "pre_ln", "post_ln"), *,
                 out: str | Path | None = None, progress: bool = False, **kwargs: Any) -> StudyTables:
    """Gradient norms of W^V and W^Q per layer at init and token correlation per layer (one batch of 8×64 bytes
    per seed), then mean attention entropy per layer during ``train_steps`` of training (shaped and Pre-LN;
    Post-LN and softmax are skipped there). Keyword settings as :func:`signal_settings`.

    Tables ``grad_norms``, ``token_correlation`` and ``attention_entropy``; ``summary`` holds the last-over-first
    layer gradient ratios and mean |ρ| at the last layer.
    """
    from tqdm.auto import tqdm

    from deeplimit.data import ByteCorpus
    from deeplimit.diagnostics.signal import (
        SIGNAL_VARIANTS,
        grad_norms_at_init,
        plot_entropy,
        plot_grad_norms,
        plot_token_correlation,
        token_correlation_vs_layer,
    )
    from deeplimit.nn.transformer import TransformerConfig, TransformerLM
    from deeplimit.scaling.apply import parametrize

    s = signal_settings(variants, **kwargs)
    entropy_cfgs = {v: _entropy_config(s, v) for v in s["variants"] if v not in ("post_ln", "softmax")
                    } if s["train_steps"] else {}
    corpus = ByteCorpus.load(s["data"])
    out_dir = ensure_dir(out, "output folder") if out is not None else None
    grads, corr = [], []
    jobs = [(v, seed) for v in s["variants"] for seed in s["seeds"]]
    for variant, seed in tqdm(jobs, disable=not progress, desc="signal: variants × seeds at init", leave=False):
        idx, tgt = corpus.get_batch("train", 8, 64, torch.Generator().manual_seed(seed))
        model = TransformerLM(TransformerConfig(width=s["width"], depth=s["depth"],
                                                residual_gamma=s["residual_gamma"], **SIGNAL_VARIANTS[variant]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parametrize(model, "mup", base_width=s["width"], base_depth=s["depth"], seed=seed)
        c = token_correlation_vs_layer(model, idx)
        c["variant"], c["seed"] = variant, seed
        corr.append(c)
        g = grad_norms_at_init(model, idx, tgt)
        g["variant"], g["seed"] = variant, seed
        grads.append(g)
    tables = {"grad_norms": pd.concat(grads, ignore_index=True),
              "token_correlation": pd.concat(corr, ignore_index=True)}
    ratio = {}
    for (v, p), g in tables["grad_norms"].groupby(["variant", "param"]):
        per_layer = g.groupby("layer")["grad_norm"].mean()
        ratio[f"{v} {p}"] = float(per_layer.iloc[-1] / per_layer.iloc[0])
    tc = tables["token_correlation"]
    last = tc[tc["layer"] == tc["layer"].max()].groupby("variant")["mean_abs_rho"].mean()
    summary = {"settings": s, "grad_norm_last_over_first_layer": ratio,
               "mean_abs_rho_at_last_layer": {k: round(float(v), 4) for k, v in last.items()}}
    rows = []
    for variant, cfg in entropy_cfgs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = train(cfg, progress=progress)
        rows += [{**r, "variant": variant} for r in res.rows if r["metric"] == "attn_entropy"]
    if entropy_cfgs:
        tables["attention_entropy"] = pd.DataFrame(rows)
    out_tables = StudyTables(tables, summary)
    if out_dir is not None:
        files = [_csv(df, out_dir / f"{name}.csv") for name, df in tables.items()]
        files.append(Path(plot_token_correlation(tables["token_correlation"], out_dir / "token_correlation.png")))
        files.append(Path(plot_grad_norms(tables["grad_norms"], out_dir / "grad_norms.png")))
        if "attention_entropy" in tables:
            files.append(Path(plot_entropy(tables["attention_entropy"], out_dir / "attention_entropy.png")))
        files.append(atomic_write_json(out_dir / "signal.json", summary))
        out_tables.files = files
    return out_tables


__all__ = ["StudyTables", "feature_diversity_settings", "feature_diversity_study", "signal_settings",
           "signal_study"]
