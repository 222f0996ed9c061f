"""Sweep grids: named axes × fixed parameters, enumerated in a deterministic order.

A :class:`SweepSpec` is the single description of a sweep that every worker sees: it is serialised to JSON
and stored as a study user attribute, so workers on other machines need only the storage URL and the
study name. Each grid point has a stable *run key* built from the axis values alone; the runner uses it to
de-duplicate runs (ecosystem spec §4: never run a completed grid point twice). The runner gives axis names no
meaning: what ``seed`` or a learning rate is belongs to the objective (see :mod:`deeplimit.transfer`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deeplimit.errors import DeeplimitError

Scalar = str | int | float | bool

__all__ = ["SweepSpec", "format_value", "value_type"]


def _check_scalar(where: str, value: Any) -> Scalar:
    # Only JSON scalars: they survive the round trip through the study's user attributes and Optuna's
    # categorical distributions unchanged, so a run key computed on another machine is identical.
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DeeplimitError(f"{where} is {value!r}; use finite numbers only (drop or replace it)")
        return value
    raise DeeplimitError(
        f"{where} is {value!r} of type {type(value).__name__}; axis and fixed values must be str, int, "
        "float or bool (encode other values as strings)"
    )


def format_value(value: Scalar) -> str:
    """Stable text form of one axis value, used in run keys (``-8.0`` and ``-8`` stay distinct)."""
    return json.dumps(value)


def value_type(values: Sequence[Any]) -> Any:
    """The one type the example ``values`` share, for reading a new value of the same setting from text:
    ``bool``, ``int``, ``float`` (ints and floats mixed), ``str``, ``list[T]`` for lists of a type; ``Any``
    when they differ or there are none."""
    kinds: set[Any] = set()
    for v in values:
        if isinstance(v, list | tuple):
            inner = value_type(v)
            kinds.add(list if inner is Any else list[inner])
        elif isinstance(v, bool | int | float | str):
            kinds.add(bool if isinstance(v, bool) else type(v))
        else:
            return Any
    if kinds == {int, float}:
        return float
    return kinds.pop() if len(kinds) == 1 else Any


@dataclass(frozen=True)
class SweepSpec:
    """A full-factorial grid over named ``axes`` with ``fixed`` parameters shared by every run.

    Args:
        axes: axis name → list of values (e.g. ``{"x": [-2.0, 0.0, 2.0], "seed": [0, 1]}``). Order matters:
            it fixes the point order and the run-key layout.
        fixed: parameters passed to every run but not part of the run key.
        objective: dotted path ``"package.module:function"`` of the training function; optional here
            because :func:`deeplimit.sweep.create_sweep` can also take it directly.
        metric: name under which the objective's return value appears in the long table.
        description: free text shown by ``deeplimit sweep status``.
    """

    axes: Mapping[str, Sequence[Scalar]]
    fixed: Mapping[str, Scalar] = field(default_factory=dict)
    objective: str = ""
    metric: str = "objective"
    description: str = ""

    def __post_init__(self) -> None:
        for what, value in (("axes", self.axes), ("fixed", self.fixed)):
            if not isinstance(value, Mapping):
                raise DeeplimitError(f"sweep spec field {what!r} must be an object of name: value pairs, got "
                                     f"{type(value).__name__}; e.g. {{\"x\": [1, 2]}}")
        for what in ("objective", "metric", "description"):
            if not isinstance(getattr(self, what), str):
                raise DeeplimitError(f"sweep spec field {what!r} must be a string, got "
                                     f"{getattr(self, what)!r}")
        if not self.metric:
            raise DeeplimitError("sweep spec field 'metric' is empty; name the objective's value, e.g. "
                                 "\"metric\": \"loss\"")
        if not self.axes:
            raise DeeplimitError("the sweep has no axes, hence no grid points; give at least one axis, "
                                 "e.g. axes={'x': [1, 2, 3]}")
        axes: dict[str, tuple[Scalar, ...]] = {}
        for name, values in self.axes.items():
            if not isinstance(name, str) or not name:
                raise DeeplimitError(f"axis name {name!r} must be a non-empty string")
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise DeeplimitError(f"axis {name!r} must be a list of values, got {values!r}; "
                                     f"write [{values!r}] for a single value")
            if len(values) == 0:
                raise DeeplimitError(f"axis {name!r} is empty, so the grid has no points; give it at least "
                                     "one value or remove the axis")
            vals = tuple(_check_scalar(f"axis {name!r} value", v) for v in values)
            if len({format_value(v) for v in vals}) != len(vals):
                raise DeeplimitError(f"axis {name!r} has repeated values {list(vals)}; list each value once")
            axes[name] = vals
        fixed = {k: _check_scalar(f"fixed parameter {k!r}", v) for k, v in self.fixed.items()}
        clash = sorted(set(axes) & set(fixed))
        if clash:
            raise DeeplimitError(f"{clash} are both axes and fixed parameters; keep each name in one place")
        if self.objective and ":" not in self.objective:
            raise DeeplimitError(f"objective {self.objective!r} must be a dotted path "
                                 "'package.module:function'")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "fixed", fixed)

    # -- enumeration -------------------------------------------------------------------------------
    @property
    def axis_names(self) -> list[str]:
        return list(self.axes)

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def points(self) -> list[dict[str, Scalar]]:
        """Axis values of every grid point, in a deterministic order (first axis slowest)."""
        return list(self.iter_points())

    def iter_points(self) -> Iterator[dict[str, Scalar]]:
        names = self.axis_names
        for combo in itertools.product(*(self.axes[n] for n in names)):
            yield dict(zip(names, combo))

    def full_point(self, point: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """Fixed parameters merged with the axis values: what the training function receives."""
        return {**self.fixed, **point}

    def run_key(self, point: Mapping[str, Scalar]) -> str:
        """Stable string naming a grid point, e.g. ``x=-2.0,seed=0``."""
        missing = [n for n in self.axis_names if n not in point]
        if missing:
            raise DeeplimitError(f"point {dict(point)} lacks axes {missing}; give a value for every axis")
        return ",".join(f"{n}={format_value(point[n])}" for n in self.axis_names)

    def contains(self, other: SweepSpec) -> bool:
        """Whether every point of ``other`` is a point of this spec (same axes and fixed parameters)."""
        if self.axis_names != other.axis_names or dict(self.fixed) != dict(other.fixed):
            return False
        mine = {self.run_key(p) for p in self.iter_points()}
        return all(other.run_key(p) in mine for p in other.iter_points())

    def field_types(self) -> dict[str, Any]:
        """Each axis and fixed parameter's type, read off its values: ``T | list[T]`` (one value, or several
        for an axis), ``Any`` where the values differ in kind. What a ``--set name=value`` reads a value as."""
        out: dict[str, Any] = {}
        for name, values in [*self.axes.items(), *((k, [v]) for k, v in self.fixed.items())]:
            tp = value_type(values)
            out[name] = Any if tp is Any else tp | list[tp]
        return out

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "axes": {k: list(v) for k, v in self.axes.items()},
            "fixed": dict(self.fixed),
            "objective": self.objective,
            "metric": self.metric,
            "description": self.description,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        unknown = sorted(set(data) - {"axes", "fixed", "objective", "metric", "description"})
        if unknown:
            raise DeeplimitError(f"unknown sweep spec fields {unknown}; allowed: axes, fixed, objective, "
                                 "metric, description")
        if "axes" not in data:
            raise DeeplimitError("sweep spec has no 'axes' field; add e.g. {\"axes\": {\"x\": [1, 2]}}")
        return cls(axes=data["axes"], fixed=data.get("fixed", {}), objective=data.get("objective", ""),
                   metric=data.get("metric", "objective"), description=data.get("description", ""))

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeeplimitError(f"sweep spec is not valid JSON ({exc}); check the file") from None
        if not isinstance(data, dict):
            raise DeeplimitError("sweep spec JSON must be an object with an 'axes' field")
        return cls.from_dict(data)
