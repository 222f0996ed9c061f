"""Grid specs: deterministic points, stable run keys, JSON round trip, input errors."""

from __future__ import annotations

import pytest

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec


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
    ({"axes": [1, 2]}, "name: value pairs"),
    ({"axes": {"x": [1]}, "fixed": [1]}, "name: value pairs"),
    ({"axes": {"x": [1]}, "metric": ""}, "metric"),
    ({"axes": {"x": [1]}, "metric": 3}, "must be a string"),
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
