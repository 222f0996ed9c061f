"""The LR-transfer layer: experiment grids, point validation, the trainer objective (stale resume, one row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep import SweepSpec, create_sweep, run_worker
from deeplimit.transfer import build_grid, log2_grid, train_objective, transfer_results

FAST = {"heartbeat_interval": 1, "threads": None, "handle_signals": False}
OBJECTIVE = "deeplimit.transfer.objectives:train_objective"


def test_log2_grid() -> None:
    assert log2_grid(-12, -5) == [-12, -11, -10, -9, -8, -7, -6, -5]
    assert log2_grid(-2, -1, 0.5) == [-2.0, -1.5, -1.0]
    for bad in ((0, -1), (0, 1, 0), (0, float("inf")), (0, 1e6, 1e-3)):
        with pytest.raises(DeeplimitError):
            log2_grid(*bad)


def test_experiment_overrides_replace_axes_and_settings() -> None:
    spec = build_grid("depth-transfer", tier="standard", rule="depth_mup", seeds=4, log2_lr="-10:-5:0.5",
                      steps=400, width=(64, 128))
    # the seed axis is the protocol's confirmation set unless the pilot set is asked for; never both
    assert spec.axes["rule"] == ("depth_mup",) and spec.axes["seed"] == (1000, 1001, 1002, 1003)
    assert build_grid("depth-transfer", seeds=2, seed_set="pilot").axes["seed"] == (0, 1)
    with pytest.raises(DeeplimitError, match="unknown seed set"):
        build_grid("depth-transfer", seed_set="both")
    assert spec.axes["log2_lr"][:3] == (-10.0, -9.5, -9.0) and len(spec.axes["log2_lr"]) == 11
    assert spec.fixed["steps"] == 400 and "width" not in spec.fixed and spec.axes["width"] == (64, 128)
    assert len(spec) == 5 * 11 * 4 * 2
    assert build_grid("depth-transfer", rule=["depth_mup", "blocks-only"]).axes["rule"] == ("depth_mup",
                                                                                              "blocks_only")
    with pytest.raises(DeeplimitError, match="no axis or setting 'bogus'"):
        build_grid("depth-transfer", bogus=1)
    with pytest.raises(DeeplimitError, match="start:stop:step"):
        build_grid("depth-transfer", log2_lr="-10:-5")
    with pytest.raises(DeeplimitError, match="seeds must be"):
        build_grid("depth-transfer", seeds="two")


@pytest.mark.parametrize("name", ["depth-transfer", "width-transfer", "activation", "block-depth",
                                  "transformer-depth", "shaped-vs-preln"])
def test_every_experiment_grid_validates(name: str) -> None:
    from deeplimit.train import config_from_point

    spec = build_grid(name, tier="smoke")
    points = [spec.full_point(p) for p in spec.points()]
    assert len(points) == len(spec) > 0
    for point in points:
        train_objective.validate(point)  # raises DeeplimitError on a point the trainer cannot run
        cfg = config_from_point(point)  # and the trainer reads the point's own sizes and LR
        assert (cfg.width, cfg.depth) == (point["width"], point["depth"])
        assert cfg.lr == pytest.approx(2.0 ** point["log2_lr"])
    with pytest.raises(DeeplimitError, match="depth must be"):  # the validator is live on this grid's points
        train_objective.validate({**points[0], "depth": 0})


@pytest.mark.parametrize("change, fragment", [
    ({"depth": 0}, "depth must be"),
    ({"width": 0}, "width must be"),
    ({"steps": -1}, "steps must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"rule": "nope"}, "unknown rule 'nope'"),
    ({"dpeth": 4}, "unknown training option 'dpeth'"),
    ({"data": "/no/such/file.npz"}, "neither a dataset"),
    ({"train_io": "maybe"}, "train_io must be True or False"),
    ({"steps": 1.5}, "steps must be a positive integer"),
    ({"log2_lr": 5000}, "overflows"),
    ({"lr": 0.1}, "either lr or log2_lr"),
    ({"activation": "foo"}, "activation 'foo'"),
    ({"block_mult": "big"}, "block_mult must be a number"),
])
def test_bad_points_are_refused_before_anything_is_written(tmp_path: Path, change: dict, fragment: str) -> None:
    fixed = {"model": "mlp-resnet", "width": 8, "depth": 2, "steps": 10, "data": "digits", "batch_size": 16,
             **change}
    axes = {"log2_lr": [-8.0]}
    if "log2_lr" in change:
        axes = {"seed": [0]}
    spec = SweepSpec(axes=axes, fixed=fixed, objective=OBJECTIVE)
    with pytest.raises(DeeplimitError, match=fragment):
        create_sweep("bad", spec, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture()
def tiny_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return path


def _tiny(data: Path, steps: int, lrs: list[float]) -> SweepSpec:
    return SweepSpec(axes={"log2_lr": lrs},
                     fixed={"model": "mlp-resnet", "width": 8, "depth": 2, "steps": steps, "batch_size": 16,
                            "data": str(data), "min_window": 2, "rule": "depth_mup"},
                     objective=OBJECTIVE, metric="window_loss")


def test_a_second_sweep_in_the_same_run_dir_does_not_resume_the_first(tmp_path: Path, tiny_npz: Path) -> None:
    # Issue #11: point folders named from axis values only let a sweep with other settings resume stale runs.
    run = tmp_path / "run"
    long_run = create_sweep("long", _tiny(tiny_npz, 40, [-6.0]), run_dir=run)
    run_worker(long_run.storage, "long", **FAST)
    short = create_sweep("short", _tiny(tiny_npz, 8, [-6.0]), run_dir=run)
    run_worker(short.storage, "short", **FAST)
    steps = {name: transfer_results(long_run.storage, name).query("metric == 'train_loss'")["step"].max()
             for name in ("long", "short")}
    assert steps == {"long": 39, "short": 7}
    assert len(list((run / "runs").iterdir())) == 2


def test_one_window_loss_row_per_run_also_when_diverged(tmp_path: Path, tiny_npz: Path) -> None:
    # Issue #11: the trainer's window_loss row and a second one from the runner disagreed for diverged runs.
    sw = create_sweep("w", _tiny(tiny_npz, 12, [-6.0, 6.0]), run_dir=tmp_path / "run")
    run_worker(sw.storage, "w", **FAST)
    table = transfer_results(sw.storage, "w")
    rows = table[table["metric"] == "window_loss"]
    assert len(rows) == 2 and rows["run_id"].is_unique
    assert set(rows["status"]) == {"ok", "diverged"}
    assert list(table.columns[:3]) == ["experiment", "run_id", "rule"] and {"lr", "log2_lr"} <= set(table.columns)
