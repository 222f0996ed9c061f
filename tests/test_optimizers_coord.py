"""Coordinate checks per optimizer (SGD, Adam, AdamW, Muon) × rule (SP, μP, Depth-μP, CompleteP).

The statistic is the change of each site's activations from init after a few real steps on Fashion-MNIST (MLP-
ResNets) or Shakespeare bytes (the pre-LN transformer), as a log2 slope per doubling of width or depth: flat (≈ 0)
where the optimizers spec §1–§3 predicts transfer, growing for SP. The fast tests run small grids; the ``slow``
ones run the full sizes recorded in docs/optimizers.md (width 64 → 1024, depth 4 → 64) and, with
``DEEPLIMIT_COORD_OUT=DIR``, write their tables and figures there.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deeplimit as dl
from deeplimit.data import load_fashion_mnist
from deeplimit.diagnostics import coord_check, log2_slopes
from deeplimit.diagnostics.coordinates import plot_coord_check
from deeplimit.nn.registry import build_model

# Base LR per optimizer (Muon: the AdamW LR; its matrices get muon_lr_ratio = 8 times it, docs/optimizers.md).
LR = {"sgd": 2**-6, "adam": 2**-8, "adamw": 2**-8, "muon": 2**-8}
PLAN = {"muon": {"muon_lr_ratio": 8.0}}
OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
OUT = os.environ.get("DEEPLIMIT_COORD_OUT")


@pytest.fixture(scope="module")
def fmnist():
    x, y = load_fashion_mnist(split="train")
    return x[:2048], y[:2048]


FRAMES: dict[str, pd.DataFrame] = {}  # tag → coord-check table of the full-size runs (for the summary figures)


def slopes(make, x, y, optimizer, rule, *, axis, widths, depths, base_width, base_depth, steps=3, seeds=(0,),
           loss_fn=F.cross_entropy, tag=None, with_frame=False):
    """log2 slopes of the change from init at the last step, per site (and the table, written if OUT is set);
    with ``with_frame`` also the coord-check table, for :func:`overflowed`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule warnings (alpha=1 on a resnet, …) are expected here
        df = coord_check(make, rule, x, y, widths=widths, depths=depths, base_width=base_width,
                         base_depth=base_depth, optimizer=optimizer, lr=LR[optimizer], steps=steps, seeds=seeds,
                         batch_size=64, loss_fn=loss_fn, **PLAN.get(optimizer, {}))
    s = log2_slopes(df, axis)
    if OUT and tag:
        out = Path(OUT)
        out.mkdir(parents=True, exist_ok=True)
        df.assign(optimizer=optimizer).to_csv(out / f"{tag}.csv", index=False)
        plot_coord_check(df, axis, str(out / f"{tag}.png"), stats=("delta_rms",))
        FRAMES[tag] = df
    last = s[s["step"] == steps].set_index("site")["slope"]
    return (last, df) if with_frame else last


def mlp(w, d):
    return dl.MLPResNet(width=w, depth=d)


# ---- width (depth 2 = base depth, so Depth-μP and CompleteP equal μP here) -------------------------------------
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_width_coord_check_is_flat_under_mup_and_grows_under_sp(fmnist, optimizer):
    x, y = fmnist
    kw = dict(axis="width", widths=[64, 256], depths=[2], base_width=64, base_depth=2)
    mup = slopes(mlp, x, y, optimizer, "mup", **kw)
    assert mup[["block_last", "logits"]].abs().max() < 0.3, mup
    sp = slopes(mlp, x, y, optimizer, "sp", **kw)
    if optimizer == "sgd":  # SP + SGD drifts to the kernel regime: the features' change shrinks like n^{-1/2}
        assert sp["block_last"] < -0.25, sp
    else:  # Adam-like updates have Θ(1) entries: the SP readout's change grows with n
        assert sp["logits"] > 0.4, sp


def overflowed(df, axis, step=3, stat="delta_rms"):
    """Per site: the largest size's change went non-finite while the smallest size's stayed finite."""
    change = df[df["step"] == step].groupby(["site", axis])[stat].mean().unstack(axis)
    return ~np.isfinite(change[change.columns.max()]) & np.isfinite(change[change.columns.min()])


def grows(s, over):
    """Growing with depth: slope > 0.8, or no slope because the large depths overflowed (SP, TP6 Fig. 20) — a NaN
    slope for any other reason (no change from init, a single size) is not growth."""
    return (s > 0.8) | (s.isna() & over.reindex(s.index, fill_value=False))


def test_a_nan_slope_grows_only_when_the_large_depths_overflowed():
    """No change from init also gives a NaN slope (log of 0): that is not growth; an overflow at depth is."""
    def frame(deep):
        return pd.DataFrame({"site": ["logits"] * 2, "depth": [8, 32], "step": [3, 3], "delta_rms": [0.5, deep]})
    nan = pd.Series({"logits": float("nan")})
    assert grows(nan, overflowed(frame(float("inf")), "depth")).all()
    assert not grows(nan, overflowed(frame(0.0), "depth")).any()
    assert not grows(nan, overflowed(frame(float("nan")).assign(delta_rms=float("nan")), "depth")).any()
    assert grows(pd.Series({"logits": 1.0}), overflowed(frame(2.0), "depth")).all()
    assert not grows(pd.Series({"logits": 0.5}), overflowed(frame(0.7), "depth")).any()


# ---- depth (width 64 = base width) ------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_depth_coord_check_is_flat_under_depth_mup_and_completep_and_grows_under_sp(fmnist, optimizer):
    x, y = fmnist
    kw = dict(axis="depth", widths=[64], depths=[8, 32], base_width=64, base_depth=4)
    dm = slopes(mlp, x, y, optimizer, "depth_mup", **kw)
    assert dm[["block_last", "logits"]].abs().max() < 0.3, dm
    cp = slopes(mlp, x, y, optimizer, "completep", **kw)
    # α = 1: the stream's change converges to flat from below, slowly at small L (depth-mup spec §8.2), never grows
    assert cp[["block_last", "logits"]].max() < 0.3 and cp[["block_last", "logits"]].min() > -0.9, cp
    sp, frame = slopes(mlp, x, y, optimizer, "sp", with_frame=True, **kw)
    assert grows(sp[["block_last", "logits"]], overflowed(frame, "depth")).all(), sp


# ---- the byte transformer over depth ---------------------------------------------------------------------------
class ByteLM(nn.Module):
    """The pre-LN byte transformer seen by coord_check: float token ids in, (tokens × vocab) logits out.

    The inner model sits under ``module`` (a wrapper name, as DDP's), so its plan names are the model's own.
    """

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.module = build_model("transformer", width=width, depth=depth, n_heads=4)

    input = property(lambda self: self.module.tok)
    blocks = property(lambda self: self.module.blocks)
    readout = property(lambda self: self.module.readout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.long())


def lm_loss(logits, y):
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


@pytest.fixture(scope="module")
def bytes_batch():
    from deeplimit.data.text import load_text_corpus

    data = load_text_corpus("stdlib")[: 256 * 33]  # CPython's sources: always available
    seq = torch.frombuffer(bytearray(data), dtype=torch.uint8).long().reshape(256, 33)
    return seq[:, :-1].float(), seq[:, 1:]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_transformer_depth_coord_check_is_flat_under_completep_and_grows_under_mup(bytes_batch, optimizer):
    x, y = bytes_batch
    kw = dict(axis="depth", widths=[32], depths=[2, 8], base_width=32, base_depth=2, loss_fn=lm_loss)
    cp = slopes(ByteLM, x, y, optimizer, "completep", **kw)
    assert cp[["block_last", "logits"]].abs().max() < 0.3, cp
    no_depth_rule = slopes(ByteLM, x, y, optimizer, "mup", **kw)
    assert no_depth_rule["block_last"] > cp["block_last"] + 0.3, (no_depth_rule, cp)


# ---- full sizes (docs/optimizers.md) ----------------------------------------------------------------------------
RULES = ("sp", "mup", "depth_mup", "completep")


def summary_figure(panels: list[tuple[str, str, str, list[str]]], title: str, path: Path) -> None:
    """One panel per (axis, site, label, tags): the change from init of ``site`` at the last step vs size, log-log,
    one line per rule (mean ± s.e. over seeds). Flat lines transfer; SP lines climb or stop (overflow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (axis, site, label, tags) in zip(axes[0], panels):
        for tag in tags:
            df = FRAMES[tag]
            last = df[(df["step"] == df["step"].max()) & (df["site"] == site)]
            g = last.groupby(axis)["delta_rms"]
            m, e = g.mean(), g.sem().fillna(0)
            ok = m[(m > 0) & (m < float("inf"))]
            ax.errorbar(ok.index, ok.values, yerr=e[ok.index].values, marker="o", ms=3, capsize=2,
                        label=df["rule"].iloc[0])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(f"RMS change of {site} after {int(FRAMES[tags[0]]['step'].max())} steps", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_full_size_coord_checks(fmnist, optimizer):
    x, y = fmnist
    rows = []
    for rule in ("sp", "mup"):
        s = slopes(mlp, x, y, optimizer, rule, axis="width", widths=[64, 128, 256, 512, 1024], depths=[2],
                   base_width=64, base_depth=2, seeds=(0, 1), tag=f"coord_width_{optimizer}_{rule}")
        rows.append({"optimizer": optimizer, "rule": rule, "axis": "width 64-1024", **s.round(3).to_dict()})
    over = {}
    for rule in RULES:
        s, frame = slopes(mlp, x, y, optimizer, rule, axis="depth", widths=[64], depths=[4, 8, 16, 32, 64],
                          base_width=64, base_depth=4, seeds=(0, 1), tag=f"coord_depth_{optimizer}_{rule}",
                          with_frame=True)
        over[rule] = overflowed(frame, "depth")
        rows.append({"optimizer": optimizer, "rule": rule, "axis": "depth 4-64", **s.round(3).to_dict()})
    table = pd.DataFrame(rows)
    if OUT:
        table.to_csv(Path(OUT) / f"coord_slopes_{optimizer}.csv", index=False)
        summary_figure([("width", "logits", "width 64→1024 (depth 2)",
                         [f"coord_width_{optimizer}_{r}" for r in ("sp", "mup")]),
                        ("depth", "block_last", "depth 4→64 (width 64)",
                         [f"coord_depth_{optimizer}_{r}" for r in RULES])],
                       f"{optimizer}: coordinate check on Fashion-MNIST MLP-ResNets",
                       Path(OUT) / f"coord_{optimizer}.png")
    width = table[table["axis"].str.startswith("width")].set_index("rule")
    depth = table[table["axis"].str.startswith("depth")].set_index("rule")
    assert abs(width.loc["mup", "logits"]) < 0.3 and abs(width.loc["mup", "block_last"]) < 0.3, table
    if optimizer == "sgd":
        assert width.loc["sp", "block_last"] < -0.25, table
    else:
        assert width.loc["sp", "logits"] > 0.4, table
    assert abs(depth.loc["depth_mup", "block_last"]) < 0.3, table
    assert grows(depth.loc[["sp"], "block_last"].set_axis(["block_last"]), over["sp"]).all(), table


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_full_size_transformer_depth_coord_check(bytes_batch, optimizer):
    x, y = bytes_batch
    rows = []
    for rule in ("mup", "depth_mup", "completep"):
        s = slopes(ByteLM, x, y, optimizer, rule, axis="depth", widths=[64], depths=[2, 4, 8, 16, 32], base_width=64,
                   base_depth=2, seeds=(0, 1), loss_fn=lm_loss, tag=f"coord_transformer_{optimizer}_{rule}")
        rows.append({"optimizer": optimizer, "rule": rule, "axis": "depth 2-32", **s.round(3).to_dict()})
    table = pd.DataFrame(rows).set_index("rule")
    if OUT:
        table.to_csv(Path(OUT) / f"coord_slopes_transformer_{optimizer}.csv")
        summary_figure([("depth", "block_last", "depth 2→32 (width 64)",
                         [f"coord_transformer_{optimizer}_{r}" for r in ("mup", "depth_mup", "completep")])],
                       f"{optimizer}: byte transformer", Path(OUT) / f"coord_transformer_{optimizer}.png")
    assert abs(table.loc["completep", "block_last"]) < 0.3, table
