"""The Muon / weight-decay transfer experiments run end to end at their smoke tier (real engine, real trainer),
and the section verdict never claims agreement it does not have."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep import create_sweep, run_worker
from deeplimit.transfer import optimizer_verdicts as V
from deeplimit.transfer import optimizers as O
from deeplimit.transfer import transfer_results as results_frame

FAST = {"heartbeat_interval": 1, "threads": None, "handle_signals": False}


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib figure saved during the test, captured before the plotting code closes it (a spy on
    matplotlib's ``Figure.savefig``; the figure is still written to its file)."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def spy(fig, *args, **kwargs):
        figures.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def _panels(fig) -> list:
    """The figure's axes that hold data (a suptitle or colour bar adds none)."""
    return [ax for ax in fig.axes if ax.get_lines() or ax.collections]


def _run(tmp_path: Path, name: str, spec) -> pd.DataFrame:
    sweep = create_sweep(name, spec, run_dir=tmp_path / name)
    report = run_worker(sweep.storage, name, run_dir=str(tmp_path / name), **FAST)
    assert report.failed == 0
    return results_frame(sweep.storage, name)


@pytest.fixture(scope="module")
def smoke_tables(tmp_path_factory) -> dict[str, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("muon-transfer")
    return {"muon_width_transfer": _run(tmp, "w", O.muon_width_transfer("smoke", rules=("mup", "sp"))),
            "weight_decay_width_constant": _run(tmp, "wd", O.weight_decay_width("smoke", "constant"))}


def test_the_smoke_sweeps_train_muon_and_adamw_runs(smoke_tables):
    width = smoke_tables["muon_width_transfer"]
    final = width[width["metric"] == "window_loss"]
    assert set(final["optimizer"]) == {"muon"} and final["run_id"].nunique() == 2 * 2 * 3
    assert np.isfinite(final["value"]).any()
    wd = smoke_tables["weight_decay_width_constant"]
    assert set(wd["weight_decay_mode"]) == {"torch"} and wd["weight_decay"].nunique() == 3


def test_the_section_has_one_row_per_experiment_and_preset_and_is_honest(smoke_tables):
    section = V.muon_transfer_section(smoke_tables, n_boot=50)
    assert {(r.experiment, r.rule) for r in section.itertuples()} == {
        ("muon_width_transfer", "mup"), ("muon_width_transfer", "sp"), ("weight_decay_width_constant", "mup")}
    for r in section.itertuples():
        assert r.verdict in ("transfers", "shifts", "inconclusive", "degrades") and r.role == "evidence"
        if r.verdict in ("inconclusive", "degrades"):
            assert r.agrees is None  # an undecided run is never counted as agreement
        elif r.agrees is not None:  # a "shifts" inside the margin refutes no "transfers": left undecided
            assert r.agrees == (r.verdict == r.expected)
    wd = section[section["experiment"] == "weight_decay_width_constant"].iloc[0]
    assert wd["axis"] == "weight_decay" and wd["size"] == "width"
    lines = V.section_lines(section)
    assert len(lines) == len(section) and all("expected " in line and "per doubling" in line for line in lines)
    assert V.section_verdict(section) in ("holds", "partly", "does not hold", "inconclusive")


@pytest.mark.parametrize("agrees,word", [([True, True], "holds"), ([True, None], "partly"),
                                         ([None, None], "inconclusive"), ([True, False], "does not hold")])
def test_section_verdict_words(agrees, word):
    assert V.section_verdict(pd.DataFrame({"agrees": agrees})) == word


def _muon_depth(blocks_only_shift: float, *, relabel: bool) -> pd.DataFrame:
    """Muon depth-transfer runs: Depth-μP's optimum stays put; ``blocks_only`` either IS Depth-μP's runs with the LR
    relabelled by ``blocks_only_shift`` per doubling (U, V frozen: the m_L^−½ factor) or has its own losses."""
    rows = []
    offsets = (-0.04, -0.02, 0.0, 0.02, 0.04)
    grid = np.arange(-14.0, -1.99, 0.5)
    for seed, d in enumerate(offsets):
        for L in (4, 16, 64):
            k = math.log2(L / 4)
            for x in grid:
                rows.append({"rule": "depth_mup", "depth": L, "seed": seed, "log2_lr": float(x),
                             "value": 0.5 + 0.01 * (x - (-8.0 + d * k)) ** 2})
                shifted = x - blocks_only_shift * k  # blocks_only at η is Depth-μP at η·(L/L₀)^+½
                own = 0.0 if relabel else 0.001 * (1 + seed) * k  # a different run: its losses differ
                rows.append({"rule": "blocks_only", "depth": L, "seed": seed, "log2_lr": float(x),
                             "value": 0.5 + own + 0.01 * (shifted - (-8.0 + d * k)) ** 2})
    return pd.DataFrame(rows)


def test_a_relabelled_muon_control_is_a_calibration_never_evidence():
    results = {"muon_depth_transfer": O.analyze_axis(_muon_depth(-0.5, relabel=True), size="depth", n_boot=20)}
    rows = V.section_rows(results).set_index("rule")
    bo = rows.loc["blocks_only"]
    assert bo["role"] == "calibration" and bo["agrees"] is None and "relabelling of muon_depth_transfer" in bo["why"]
    assert bo["verdict"] == "shifts" and V.agreement(bo["calibration_passed"]) is True
    assert bo["slope"] == pytest.approx(-0.5, abs=1e-6)
    assert rows.loc["depth_mup", "role"] == "evidence" and V.agreement(rows.loc["depth_mup", "agrees"]) is True
    # one evidence row, decided as predicted, and a calibration with power: holds — the relabelling adds no vote
    assert V.section_verdict(rows.reset_index()) == "holds"
    assert any("calibration, not evidence" in line for line in V.section_lines(rows.reset_index()))
    # the same shift in runs of its own is evidence
    own = V.section_rows({"muon_depth_transfer": O.analyze_axis(_muon_depth(-0.5, relabel=False), size="depth",
                                                                 n_boot=20)}).set_index("rule")
    assert own.loc["blocks_only", "role"] == "evidence" and V.agreement(own.loc["blocks_only", "agrees"]) is True


def test_a_calibration_without_power_keeps_the_section_from_holding():
    # a relabelling by 0 per doubling (the same runs twice): the calibration cannot reject transfer
    results = {"muon_depth_transfer": O.analyze_axis(_muon_depth(0.0, relabel=True), size="depth", n_boot=20)}
    rows = V.section_rows(results)
    bo = rows.set_index("rule").loc["blocks_only"]
    assert bo["role"] == "calibration" and V.agreement(bo["calibration_passed"]) is False
    assert V.section_verdict(rows) == "partly"


def test_analyze_axis_takes_the_optimum_over_the_weight_decay(smoke_tables):
    table = smoke_tables["weight_decay_width_constant"]
    result = O.analyze_axis(table, "weight_decay", size="width", n_boot=20)
    grid = sorted(np.log2(table["weight_decay"].unique()))
    finite = result.summary["log2_eta_star"].dropna()
    assert ((finite >= grid[0] - 1e-9) & (finite <= grid[-1] + 1e-9)).all()
    assert set(result.summary["lr_min"]) == {grid[0]}


def test_bad_input_is_named():
    with pytest.raises(DeeplimitError, match="unknown tier"):
        O.muon_depth_transfer("huge")
    with pytest.raises(DeeplimitError, match="parametrization must be"):
        O.weight_decay_width("smoke", "lambda")
    with pytest.raises(DeeplimitError, match="unknown experiment"):
        V.muon_transfer_section({"muon_everything": pd.DataFrame()})
    with pytest.raises(DeeplimitError, match="no column 'weight_decay'"):
        O.analyze_axis(pd.DataFrame({"log2_lr": [0.0]}), "weight_decay")
    with pytest.raises(DeeplimitError, match="positive numbers"):
        O.analyze_axis(pd.DataFrame({"weight_decay": [0.0, 1.0]}), "weight_decay")


def test_expected_verdicts_cover_every_experiment():
    assert {e for e, _ in O.EXPECTED} == set(O.SIZES)
    assert all(v in ("transfers", "shifts") for v in O.EXPECTED.values())
    assert not math.isnan(O.MUON_LR_RATIO)


def test_plot_transfer_draws_one_panel_per_experiment_and_rule(smoke_tables, tmp_path, saved_figures):
    results = O.analyses(smoke_tables, n_boot=20)
    path = O.plot_transfer(results, str(tmp_path / "t.png"), title="smoke")
    assert Path(path).stat().st_size > 0 and len(saved_figures) == 1
    expected = [(name, rule) for name, an in results.items() for rule in an.drift["rule"]]
    panels = _panels(saved_figures[0])
    assert len(panels) == len(expected) >= 3, [ax.get_title() for ax in panels]
    for ax, (name, rule) in zip(panels, expected, strict=True):
        assert ax.get_title().startswith(f"{name} / {rule}\n"), ax.get_title()
        an = results[name]
        sizes = an.curves[an.curves["rule"] == rule][an.size].nunique()
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]  # the stars are single points
        assert len(curves) == sizes >= 2, (name, rule, len(curves), sizes)


def _decay_curves(shift_per_doubling: float, axis: str, noise: float = 0.003) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Loss tables whose decay cost is a logistic in log2(decay) that moves by ``shift_per_doubling`` octaves per
    width doubling; λ axis: cost grows with λ; τ axis: cost grows as τ shrinks."""
    rng = np.random.default_rng(0)
    rows, ref = [], []
    grid = [2.0**k for k in range(-4, 9)]
    for width in (64, 128, 256, 512):
        centre = 2.0 + shift_per_doubling * math.log2(width / 64)
        for seed in range(3):
            base = 0.5 - 0.02 * math.log2(width / 64)
            ref.append({"width": width, "seed": seed, "log2_lr": -9.0, "weight_decay": 0.0, "value": base})
            for v in grid:
                x = math.log2(v) if axis == "weight_decay" else -math.log2(v)
                cost = 0.4 / (1 + math.exp(-(x - centre)))
                rows.append({"width": width, "seed": seed, "log2_lr": -9.0, axis: v,
                             "value": base + cost + rng.normal(0, noise)})
    return pd.DataFrame(rows), pd.DataFrame(ref)


@pytest.mark.parametrize("axis", ["weight_decay", "wd_timescale_fraction"])
def test_decay_threshold_recovers_a_known_shift_and_a_known_transfer(axis):
    sign = 1.0 if axis == "weight_decay" else -1.0  # on the τ axis a larger centre is a smaller τ
    moving, ref = _decay_curves(1.0, axis)
    result = O.decay_threshold(moving, axis, ref, delta=0.1)
    assert result.drift == pytest.approx(3.0 * sign, abs=0.15) and result.n_seeds == 3
    assert result.verdict == "shifts" and not result.per_size["censored"].any()
    # the logistic reaches 0.1 above the reference at centre − ln 3 (octaves) on the λ axis
    assert result.per_size["log2_threshold"].iloc[0] == pytest.approx(sign * (2.0 - math.log(3)), abs=0.15)
    still, ref = _decay_curves(0.0, axis)
    assert O.decay_threshold(still, axis, ref, delta=0.1).verdict == "transfers"


def test_decay_threshold_censors_a_curve_that_never_costs_delta_and_names_bad_input():
    table, ref = _decay_curves(0.0, "weight_decay")
    result = O.decay_threshold(table, "weight_decay", ref, delta=5.0)
    assert result.per_size["censored"].all() and result.verdict == "inconclusive"
    with pytest.raises(DeeplimitError, match="axis must be"):
        O.decay_threshold(table, "log2_lr", ref)
    with pytest.raises(DeeplimitError, match="delta must be"):
        O.decay_threshold(table, "weight_decay", ref, delta=0)
    with pytest.raises(DeeplimitError, match="no no-decay reference"):
        O.decay_threshold(table, "weight_decay", ref[ref["width"] != 128])


def test_the_hidden_weight_decay_smoke_sweep_freezes_input_and_readout_and_holds_the_reference(tmp_path):
    spec = O.weight_decay_hidden_width("smoke", "constant")
    assert spec.fixed["train_io"] is False and 0.0 in spec.axes["weight_decay"]
    table = _run(tmp_path, "wdh", spec)
    final = table[table["metric"] == "window_loss"]
    assert final["run_id"].nunique() == len(spec.axes["width"]) * len(spec.axes["weight_decay"]) * 2
    result = O.decay_threshold(table, "weight_decay", table, delta=0.01)
    assert set(result.per_size["width"]) == {16.0, 32.0}
    assert O.weight_decay_hidden_width("standard", "timescale").axes["wd_timescale_fraction"][0] == 2.0**-4


def test_the_section_decides_the_hidden_weight_decay_rows_by_their_threshold(tmp_path, saved_figures):
    moving, ref = _decay_curves(1.0, "weight_decay")
    still, _ = _decay_curves(0.0, "wd_timescale_fraction")
    constant = pd.concat([moving, ref], ignore_index=True)
    tables = {"weight_decay_hidden_constant": constant, "weight_decay_hidden_timescale": still}
    section = V.muon_transfer_section(tables)
    by = section.set_index("experiment")
    assert by.loc["weight_decay_hidden_constant", "verdict"] == "shifts"
    assert by.loc["weight_decay_hidden_timescale", "verdict"] == "transfers"
    # the constant-λ row is the τ row relabelled (λ = 1/(η_g·τ·T), one η_g ∝ 1/n): a calibration, never a vote
    const = by.loc["weight_decay_hidden_constant"]
    assert const["role"] == "calibration" and const["agrees"] is None
    assert V.agreement(const["calibration_passed"]) is True
    assert const["slope"] == pytest.approx(1.0, abs=0.1) and const["predicted_slope"] == 1.0
    assert V.agreement(by.loc["weight_decay_hidden_timescale", "agrees"]) is True
    assert V.section_verdict(section) == "holds"
    path = O.plot_decay_thresholds(tables, O.thresholds(tables), str(tmp_path / "wd.png"))
    assert Path(path).stat().st_size > 0 and len(saved_figures) == 1
    panels = _panels(saved_figures[0])
    assert len(panels) == len(tables), [ax.get_title() for ax in panels]
    for ax, name in zip(panels, tables, strict=True):  # one curve per width beside the δ line and the stars
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
        assert len(curves) == tables[name]["width"].nunique() == 4, (name, len(curves))
    with pytest.raises(DeeplimitError, match="no-decay reference"):
        O.thresholds({"weight_decay_hidden_timescale": still})
