"""The transfer oracle predicts η* at 8× the data budget and 8–16× the depth or width (issue 24; ``deeplimit
predict``).

One module for the protocol's oracle claims: ``oracle`` (the MLP-ResNet over depth, standard tier), ``oracle-width``
(the μP MLP-ResNet over width, standard tier), ``oracle-lm`` and ``oracle-lm-mup`` (the byte-level LM under
CompleteP and under μP, full tier). The claim's name
picks its protocol entry, the size that extrapolates (depth or width), its sweeps
(:func:`deeplimit.transfer.oracle_grids.oracle_claim_specs`), its texts (:data:`TEXTS`) and its output files.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from deeplimit.io import atomic_save, ensure_dir
from deeplimit.protocol import protocol
from deeplimit.report.context import Context
from deeplimit.report.html import Control, Section
from deeplimit.report.sweeps import run_sweep, spec_settings

# Per claim: the section's title, the claim in words, and the scale gap's fixed part (what issue 24 asks that the
# claim does not run). The numbers of a tier's grid are added from the protocol (:func:`oracle_specs_words`).
TEXTS: dict[str, dict[str, str]] = {
    "oracle": {
        "title": "The transfer oracle predicts η* at 8× the data budget and 8–16× the depth (issue 24)",
        "claim": ("Fit η* = a·depth^b·samples^c on small runs and forecast η* at 8× the largest fitted data budget "
                  "and at 8–16× the depth, on held-out runs the fit never saw: mean |log2 error| ≤ 0.5, regret ≤ "
                  "0.5% of the loss, 80% intervals covering ≥ 80% of held-out points (issue 24, after Bjorck et al. "
                  "2025 and the μP/Depth-μP transfer laws); the naive forecast (reuse the base η*) beside it."),
        "gap": ("Issue 24 asks for 8–16× width or depth and 8× the tokens on an LM and the MLP-ResNet; here the "
                "Fashion-MNIST MLP-ResNet only (the byte-level LM is the oracle-lm section; B* is not run)"),
    },
    "oracle-lm": {
        "title": "The transfer oracle predicts the byte-level LM's η* at 8× the tokens and 8× the depth (issue 24)",
        "claim": ("Fit η* = a·depth^b·samples^c on small runs of a CompleteP Pre-LN byte-level transformer and "
                  "forecast η* at 8× the largest fitted token budget and at 8× the largest fitted depth, on held-out "
                  "runs the fit never saw: mean |log2 error| ≤ 0.5, regret ≤ 0.5% of the loss, 80% intervals "
                  "covering ≥ 80% of held-out points (issue 24, after Bjorck et al. 2025 and CompleteP's depth-wise "
                  "transfer); the naive forecast (reuse the base η*) beside it."),
        "gap": ("Issue 24 asks for 8–16× width or depth and 8× the tokens on the byte-level LM under CompleteP and "
                "μP, with batch size as an axis; here CompleteP only at one batch size (μP, the batch axis, B* and "
                "width extrapolation are not run), on a width-64 model with 64-byte sequences"),
    },
    "oracle-lm-mup": {
        "title": "The transfer oracle predicts the μP byte-level LM's η* at 8× the tokens and 8× the depth (issue 24)",
        "claim": ("Fit η* = a·depth^b·samples^c on small runs of a μP Pre-LN byte-level transformer — no depth rule, "
                  "so η* drifts with depth — and forecast η* at 8× the largest fitted token budget and at 8× the "
                  "largest fitted depth, on held-out runs the fit never saw: mean |log2 error| ≤ 0.5, regret ≤ 0.5% "
                  "of the loss, 80% intervals covering ≥ 80% of held-out points (issue 24); the naive forecast "
                  "(reuse the base η*) beside it."),
        "gap": ("Issue 24 asks for 8–16× width or depth and 8× the tokens on the byte-level LM under CompleteP and "
                "μP, with batch size as an axis; here μP at one batch size (CompleteP is the oracle-lm section; "
                "the batch axis and B* are not run), on a width-64 model with 64-byte sequences"),
    },
    "oracle-width": {
        "title": "The transfer oracle predicts the μP MLP-ResNet's η* at 4–8× the largest fitted width (issue 24)",
        "claim": ("Fit η* = a·width^b·samples^c on small runs of a μP MLP-ResNet and forecast η* at 4× and 8× the "
                  "largest fitted width (16× and 32× the smallest), on held-out runs the fit never saw: mean |log2 "
                  "error| ≤ 0.5, regret ≤ 0.5% of the loss, 80% intervals covering ≥ 80% of held-out points "
                  "(issue 24, after μP's width transfer, Tensor Programs V); the naive forecast (reuse the nearest "
                  "fitted group's η*) and the fit with the width exponent held at 0 (μP's promise) beside it."),
        "gap": ("Issue 24 asks for 8–16× width or depth and 8× the tokens on an LM and the MLP-ResNet; here the "
                "Fashion-MNIST MLP-ResNet at depth 2, width extrapolated at one data budget (the budget "
                "extrapolation is the oracle section's; B* is not run)"),
    },
}


def _size(claim: str) -> str:
    """The model size claim ``claim`` extrapolates: ``"depth"`` or ``"width"``."""
    from deeplimit.transfer.oracle_grids import ORACLE_CLAIMS

    return ORACLE_CLAIMS[claim].size


def oracle_specs_words(tier: str, claim: str = "oracle") -> str:
    """The claim's grid at ``tier`` in words (fitted and held-out groups, LR grid, seeds, runs × steps)."""
    from deeplimit.transfer.oracle_grids import ORACLE_CLAIMS, oracle_claim_groups, oracle_claim_specs

    fitted, held = oracle_claim_groups(tier, claim=claim)
    specs = oracle_claim_specs(tier, claim=claim)
    t = protocol().tier(claim, tier)
    lrs = next(iter(specs.values())).axes["log2_lr"]
    runs = sum(len(s) for s in specs.values())
    bs = int(t["batch_size"])
    steps = sorted(round(sm / bs) for _, sm in fitted + held)
    size = _size(claim)
    shape = f"width {t['width']}" if size == "depth" else f"depth {t['depth']}"
    extra = "".join(f", {k} {t[k]}" for k in ORACLE_CLAIMS[claim].extra)
    return (f"fitted ({size}, samples) {fitted}, held out {held}; batch {bs}, {shape}{extra}; "
            f"{len(lrs)} LRs 2^{lrs[0]:g}…2^{lrs[-1]:g}; {t['seeds']} seed(s); {runs} runs of {steps[0]}–{steps[-1]} "
            "steps")


def _runs(ctx: Context, key: str) -> tuple[dict, pd.DataFrame, int]:
    """Run (or resume) the claim's sweeps; one row per run (column ``loss``: the window loss, +∞ diverged)."""
    from deeplimit.transfer.oracle_grids import oracle_claim_specs
    from deeplimit.transfer.oracle_verdict import runs_table

    specs = oracle_claim_specs(ctx.tier, seed_set=ctx.seed_set, claim=key)
    sweeps, done = [], 0
    for part, spec in specs.items():
        _, status, table = run_sweep(ctx, f"{key}-{part}", spec)
        done += status.done
        sweeps.append((table, spec.metric))
    runs = runs_table(sweeps)
    ensure_dir(ctx.out / "tables", "output folder")
    atomic_save(_runs_csv(ctx, key), lambda fh: runs.to_csv(fh, index=False))
    return specs, runs, done


def _runs_csv(ctx: Context, key: str) -> Path:
    """Where claim ``key``'s table of runs is written (and what its ``deeplimit predict`` command reads)."""
    return ctx.out / "tables" / f"{key.replace('-', '_')}_runs.csv"


def _figure(ctx: Context, val: dict, key: str) -> Path:
    """Held-out groups: each seed's measured log2 η̂* (dots), the oracle's forecast with its 80% per-seed
    interval, the naive forecast (×); the fitted groups' η̂* beside them, on one axis per group label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplimit.plotting import tight_layout
    from deeplimit.report.figures import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    size = _size(key)
    fitted = val.get("fitted_groups", [])
    labels = [f"{size[0]}{int(g[size])}\nn{int(g['samples'])}" for g in fitted]
    for i, g in enumerate(fitted):
        if g.get("log2_lr") is not None:
            ax.scatter([i], [g["log2_lr"]], color="0.55", marker="s", s=22,
                       label="fitted group η̂* (seed mean)" if i == 0 else None)
    base = len(fitted)
    rows = pd.DataFrame(val.get("rows", []))
    for j, g in enumerate(val.get("groups", [])):
        xpos = base + j
        labels.append(f"{size[0]}{int(g[size])}\nn{int(g['samples'])}\n(held out)")
        if len(rows):
            sel = rows[(rows[size] == g[size]) & (rows["samples"] == g["samples"])]
            meas = pd.to_numeric(sel["measured_log2_lr"], errors="coerce").dropna()
            ax.scatter([xpos] * len(meas), meas, color="k", s=16, zorder=3,
                       label="held-out η̂* (per seed)" if j == 0 else None)
        p, lo, hi = g["predicted_log2_lr"], g["lo"], g["hi"]
        ax.errorbar([xpos + 0.15], [p], yerr=[[p - lo], [hi - p]], fmt="o", color="tab:blue", capsize=4,
                    label=f"oracle, {100 * val['level']:g}% per-seed interval" if j == 0 else None)
        if g.get("naive_log2_lr") is not None:
            ax.scatter([xpos - 0.15], [g["naive_log2_lr"]], color="tab:red", marker="x", s=40,
                       label="naive (nearest fitted group's η̂*)" if j == 0 else None)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.axvline(base - 0.5, color="0.8", lw=1)
    ax.set_ylabel("log2 η*")
    ax.set_title(f"transfer oracle ({key}): fitted vs held-out groups ({ctx.tier})", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    tight_layout(fig)
    return save_figure(fig, ensure_dir(ctx.out / "figures" / key, "output folder") / "oracle_heldout.png")


def _table(val: dict, size: str) -> pd.DataFrame:
    rows = []
    for g in val.get("groups", []):
        rows.append({size: int(g[size]), "samples": int(g["samples"]),
                     "measured log2 η̂* (seed mean)": g["measured_log2_lr"],
                     "oracle log2 η*": g["predicted_log2_lr"],
                     f"{100 * val['level']:g}% per-seed interval": f"[{g['lo']:+.2f}, {g['hi']:+.2f}]",
                     "naive log2 η*": g["naive_log2_lr"],
                     "regret oracle / naive": f"{100 * g['regret_oracle']:.2f}% / {100 * g['regret_naive']:.2f}%"})
    return pd.DataFrame(rows)


def oracle_claim(ctx: Context) -> list[Section]:
    """The ``oracle`` claim (the MLP-ResNet): :func:`oracle_section`."""
    return oracle_section(ctx, "oracle")


def oracle_lm_claim(ctx: Context) -> list[Section]:
    """The ``oracle-lm`` claim (the byte-level LM): :func:`oracle_section`."""
    return oracle_section(ctx, "oracle-lm")


def oracle_lm_mup_claim(ctx: Context) -> list[Section]:
    """The ``oracle-lm-mup`` claim (the byte-level LM under μP): :func:`oracle_section`."""
    return oracle_section(ctx, "oracle-lm-mup")


def oracle_width_claim(ctx: Context) -> list[Section]:
    """The ``oracle-width`` claim (the μP MLP-ResNet over width): :func:`oracle_section`."""
    return oracle_section(ctx, "oracle-width")


def oracle_section(ctx: Context, key: str) -> list[Section]:
    """Run oracle claim ``key``'s sweeps at ``ctx.tier``, fit the oracle on the fitted groups, score it on the
    held-out ones (:func:`deeplimit.transfer.oracle_verdict.heldout_validation`) and decide by the protocol's
    rule (:func:`~deeplimit.transfer.oracle_verdict.oracle_verdict`); one section."""
    from deeplimit.errors import DeeplimitError
    from deeplimit.transfer.oracle_grids import oracle_claim_groups
    from deeplimit.transfer.oracle_verdict import Score, heldout_validation, oracle_verdict

    t0 = time.perf_counter()
    claim, text = protocol().claim(key), TEXTS[key]
    specs, runs, done = _runs(ctx, key)
    fitted, held = oracle_claim_groups(ctx.tier, claim=key)
    level, shift, size = float(claim["level"]), float(claim["sensitivity_octaves"]), _size(key)
    x = (size, "samples")
    try:
        val = heldout_validation(runs, fitted, held, x=x, lr="lr", loss="loss", level=level, shift=shift)
        oracle = Score.of(val["oracle"])
        controls = {f"+{shift:g} octave": Score.of(val["shift_plus"]),
                    f"−{shift:g} octave": Score.of(val["shift_minus"])}
        v = oracle_verdict(oracle, controls, n_expected=int(val["n_expected"]), naive=Score.of(val["naive"]),
                           claim=claim)
        v_stats = {**v.stats, "validation": val}
        fit = val["fit"]
        exps = ", ".join(f"{k} {b:+.3f}" for k, b in fit["exponents"].items())
        naive = Score.of(val["naive"])
        measured = (f"{done} runs. Law fitted on {len(fitted)} groups: log2 η* = {fit['intercept']:+.2f} + exponents "
                    f"({exps}) per doubling, scatter {fit['residual_sd_octaves']:.3f} octave ({fit['df']} df); "
                    f"seeds' own scatter within a group {val['within_seed_sd']:.3f} octave. On the held-out "
                    f"(group, seed) points: oracle mean |log2 error| {oracle.mean_abs_log2_error:.2f}, regret "
                    f"{100 * oracle.mean_regret:.2f}%, {100 * level:g}% per-seed intervals cover "
                    f"{oracle.coverage:.0%} of {oracle.n_points}; naive (reuse the nearest fitted group's η̂*) "
                    f"|log2 error| {naive.mean_abs_log2_error:.2f}, regret {100 * naive.mean_regret:.2f}%.")
        if "beside" in claim:
            measured += _beside(runs, fitted, held, x, level, shift, v_stats)
        verdict, reason, checks = v.verdict, v.reason, v.checks
    except DeeplimitError as exc:  # too few interior optima or seeds for a fit: nothing is decided
        val, v_stats, checks = {"level": level, "groups": [], "rows": [], "fitted_groups": []}, {}, ()
        verdict, reason = "inconclusive", f"no held-out score: {exc}"
        measured = f"{done} runs; the oracle could not be fitted or scored ({exc})."
    fig = _figure(ctx, val, key)
    note = protocol_note_oracle(ctx, specs, key)
    return [Section(
        title=text["title"], claim=text["claim"], measured=measured, verdict=verdict, reason=reason + "." + note,
        controls=[Control.from_check(c) for c in checks], figures=[fig],
        tables=[("held-out groups", _table(val, size))] if val.get("groups") else [],
        scale_gap=f"{text['gap']}; this tier: {oracle_specs_words(ctx.tier, key)}.",
        settings={part: spec_settings(s) for part, s in specs.items()}, stats=v_stats,
        command=oracle_command(ctx, fitted, held, key), wall_s=time.perf_counter() - t0)]


def _beside(runs: pd.DataFrame, fitted: list, held: list, x: tuple[str, str], level: float, shift: float,
            stats: dict) -> str:
    """The same scoring with the size's exponent held at 0 (the rule's promise; the protocol's ``beside``):
    reported beside the claim, never a criterion, so a fit it cannot make is said, not raised."""
    from deeplimit.errors import DeeplimitError
    from deeplimit.transfer.oracle_verdict import Score, heldout_validation

    size = x[0]
    try:
        val = heldout_validation(runs, fitted, held, x=x, lr="lr", loss="loss", level=level, shift=shift,
                                 fixed={size: 0.0})
    except DeeplimitError as exc:
        return f" Beside it, not a criterion: the {size} exponent held at 0 could not be scored ({exc})."
    stats["beside"] = {"fixed": {size: 0.0}, "validation": val}
    b = Score.of(val["oracle"])
    return (f" Beside it, not a criterion: the {size} exponent held at 0 gives |log2 error| "
            f"{b.mean_abs_log2_error:.2f}, regret {100 * b.mean_regret:.2f}%, coverage {b.coverage:.0%}.")


def protocol_note_oracle(ctx: Context, specs: dict, key: str = "oracle") -> str:
    """The sweeps' note when they differ from the protocol's confirmation settings (see :func:`protocol_note`)."""
    from deeplimit.transfer.oracle_grids import oracle_claim_specs

    want = oracle_claim_specs(ctx.tier, seed_set="confirmation", claim=key)
    if set(want) == set(specs) and all(want[k] == s for k, s in specs.items()):
        return ""
    p = protocol()
    return (f" The settings differ from protocol {p.version}'s confirmation sweeps (seed set or grid): this verdict "
            "is exploratory, not confirmatory.")


def oracle_command(ctx: Context, fitted: list[tuple[int, int]], held: list[tuple[int, int]],
                   key: str = "oracle") -> str:
    """The standalone command on this run's table of runs: the same fit (on the fitted groups only) and its
    forecasts at the held-out groups, with ``deeplimit predict``."""
    size = _size(key)
    d, s = max(g[0] for g in fitted), max(g[1] for g in fitted)
    at = " ".join(f"--at {size}={a},samples={b}" for a, b in held)
    return (f"deeplimit predict {_runs_csv(ctx, key)} --x {size} samples --lr lr --loss loss "
            f"--where '{size} <= {d} and samples <= {s}' {at} --level {float(protocol().claim(key)['level']):g}")
