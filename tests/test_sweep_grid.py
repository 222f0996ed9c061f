"""Grid specs: deterministic points, stable run keys, JSON round trip, input errors."""

from __future__ import annotations

import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec, log2_grid


def _spec() -> SweepSpec:
    return SweepSpec(axes={"preset": ["depth_mup", "sp"], "depth": [2, 8], "log2_lr": [-8.0, -7.0],
                           "seed": [0, 1]}, fixed={"width": 64, "steps": 50}, objective="m.n:f")


def test_points_order_and_keys() -> None:
    spec = _spec()
    pts = spec.points()
    assert len(pts) == len(spec) == 16
    assert pts[0] == {"preset": "depth_mup", "depth": 2, "log2_lr": -8.0, "seed": 0}
    assert pts[1]["seed"] == 1 and pts[-1] == {"preset": "sp", "depth": 8, "log2_lr": -7.0, "seed": 1}
    keys = [spec.run_key(p) for p in pts]
    assert len(set(keys)) == 16
    assert keys[0] == 'preset="depth_mup",depth=2,log2_lr=-8.0,seed=0'
    assert spec.full_point(pts[0])["width"] == 64


def test_json_round_trip_keeps_keys() -> None:
    spec = _spec()
    again = SweepSpec.from_json(spec.to_json())
    assert again == spec
    assert [again.run_key(p) for p in again.points()] == [spec.run_key(p) for p in spec.points()]
    assert spec.contains(spec)
    bigger = SweepSpec(axes={**spec.axes, "log2_lr": [-9.0, -8.0, -7.0]}, fixed=spec.fixed)
    assert bigger.contains(spec) and not spec.contains(bigger)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"axes": {}}, "no axes"),
    ({"axes": {"log2_lr": []}}, "is empty"),
    ({"axes": {"lr": [0.1, 0.0]}}, "positive"),
    ({"axes": {"lr": [-1e-3]}}, "positive"),
    ({"axes": {"seed": [0, 0]}}, "repeated"),
    ({"axes": {"seed": [0]}, "fixed": {"seed": 1}}, "both axes and fixed"),
    ({"axes": {"x": [[1, 2]]}}, "must be str, int, float or bool"),
    ({"axes": {"x": [float("nan")]}}, "finite"),
    ({"axes": {"x": "abc"}}, "list of values"),
    ({"axes": {"x": [1]}, "objective": "no_colon"}, "dotted path"),
])
def test_bad_specs_raise(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DeeplimitError, match=fragment):
        SweepSpec(**kwargs)


def test_bad_json() -> None:
    with pytest.raises(DeeplimitError, match="not valid JSON"):
        SweepSpec.from_json("{")
    with pytest.raises(DeeplimitError, match="unknown sweep spec fields"):
        SweepSpec.from_json('{"axes": {"a": [1]}, "oops": 1}')


def test_log2_grid() -> None:
    assert log2_grid(-12, -5) == [-12, -11, -10, -9, -8, -7, -6, -5]
    assert log2_grid(-2, -1, 0.5) == [-2.0, -1.5, -1.0]
    with pytest.raises(DeeplimitError):
        log2_grid(0, -1)


def test_experiment_overrides_replace_axes_and_settings() -> None:
    from deeplimit.sweep.presets import build_preset

    spec = build_preset(
        "depth-transfer", tier="standard", preset="depth_mup", seeds=4, log2_lr="-10:-5:0.5", steps=400,
        width=(64, 128),
    )
    assert spec.axes["preset"] == ("depth_mup",) and spec.axes["seed"] == (0, 1, 2, 3)
    assert spec.axes["log2_lr"][:3] == (-10.0, -9.5, -9.0) and len(spec.axes["log2_lr"]) == 11
    assert spec.fixed["steps"] == 400 and "width" not in spec.fixed and spec.axes["width"] == (64, 128)
    assert len(spec) == 5 * 11 * 4 * 2
    with pytest.raises(DeeplimitError, match="no axis or setting 'bogus'"):
        build_preset("depth-transfer", bogus=1)
    with pytest.raises(DeeplimitError, match="start:stop:step"):
        build_preset("depth-transfer", log2_lr="-10:-5")
