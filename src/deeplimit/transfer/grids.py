"""Named experiment grids: ``EXPERIMENT_GRIDS[name](**kwargs) -> SweepSpec`` (with its objective set).

``deeplimit sweep create --grid NAME --set key=value …`` builds them: the depth-mup spec §11 experiments
(:mod:`deeplimit.transfer.experiments`, each with tiers smoke | quick | standard | full) and the
``demo-quadratic`` grid. Other code adds its own with :func:`register_grid`.

:func:`grid_fields` types what ``--set`` may change in a grid: the builder's own arguments and, for the
experiments, every axis and setting of the spec (read off its values) plus ``seeds=N``.

(``EXPERIMENT_GRIDS`` is not :data:`deeplimit.scaling.rules.RULES`, the parametrization rules such as
``depth_mup``, nor :data:`deeplimit.sde.scenarios.SCENARIOS`; a grid's ``rule`` axis holds rule names.)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import partial
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.demo import demo_quadratic_spec
from deeplimit.transfer.experiments import EXPERIMENTS, experiment
from deeplimit.transfer.optimizers import GRIDS as OPTIMIZER_GRIDS

__all__ = ["EXPERIMENT_GRIDS", "register_grid", "build_grid", "grid_fields", "rule_label"]

EXPERIMENT_GRIDS: dict[str, Callable[..., SweepSpec]] = {}


def register_grid(name: str) -> Callable[[Callable[..., SweepSpec]], Callable[..., SweepSpec]]:
    """Decorator: ``@register_grid("my-grid") def f(**kw) -> SweepSpec``."""

    def deco(fn: Callable[..., SweepSpec]) -> Callable[..., SweepSpec]:
        if name in EXPERIMENT_GRIDS and EXPERIMENT_GRIDS[name] is not fn:
            raise DeeplimitError(f"experiment grid {name!r} is already registered; pick another name")
        EXPERIMENT_GRIDS[name] = fn
        return fn

    return deco


def _builder(name: str) -> Callable[..., SweepSpec]:
    if name not in EXPERIMENT_GRIDS:
        raise DeeplimitError(f"unknown experiment grid {name!r}; available: {sorted(EXPERIMENT_GRIDS)}")
    return EXPERIMENT_GRIDS[name]


def rule_label(name: Any) -> Any:
    """A rule name as grids store it: ``depth-mup`` and ``Depth_MuP`` are ``depth_mup`` (one grid point, one
    label in the results, whichever spelling was typed); anything but a string is returned as given."""
    return name.strip().lower().replace("-", "_") if isinstance(name, str) else name


def build_grid(name: str, **kwargs: Any) -> SweepSpec:
    """Build the spec of grid ``name``; unknown names and bad keyword arguments say what exists."""
    _builder(name)
    if "rule" in kwargs:
        rules = kwargs["rule"]
        kwargs["rule"] = [rule_label(r) for r in rules] if isinstance(rules, list | tuple) else rule_label(rules)
    try:
        spec = EXPERIMENT_GRIDS[name](**kwargs)
    except TypeError as exc:
        raise DeeplimitError(f"grid {name!r} does not accept {sorted(kwargs)}: {exc}") from None
    if not spec.objective:
        raise DeeplimitError(f"grid {name!r} returned a spec without an objective; set objective=…")
    return spec


def grid_fields(name: str) -> dict[str, Any]:
    """What ``--set`` may change in grid ``name``, with each value's type (``name → type``).

    The builder's own keyword arguments (typed by its annotations: ``tier: str``, ``seeds: int``, …) and, when
    it also takes overrides (the experiments, through :func:`~deeplimit.transfer.experiments.customise`),
    every axis and fixed setting of its default spec, typed by their values as one value or a list
    (``depth: int | list[int]``), ``seeds`` (the first N seeds) and ``log2_lr`` also as ``start:stop:step``.
    """
    builder = _builder(name)
    target = builder.func if isinstance(builder, partial) else builder
    hints = typing.get_type_hints(target)
    out: dict[str, Any] = {}
    overrides = False
    for param in inspect.signature(builder).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            overrides = True
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL and not param.name.startswith("_"):
            out[param.name] = hints.get(param.name, Any)
    if overrides:
        spec = build_grid(name)
        typed = _objective_fields(spec.objective)
        for key, tp in spec.field_types().items():
            # the objective's own type where it has one (log2_lr is a float even on a whole-number grid)
            out[key] = typed[key] | list[typed[key]] if key in typed else tp
        out["seeds"] = int
        if "log2_lr" in out:
            out["log2_lr"] = out["log2_lr"] | str
    return out


def _objective_fields(objective: str) -> dict[str, Any]:
    """The point keys and types the objective declares (the trainer's: :func:`point_fields`), else none."""
    from deeplimit.transfer.experiments import OBJECTIVE

    if objective != OBJECTIVE:
        return {}
    from deeplimit.transfer.objectives import point_fields

    return point_fields()


def _optimizer_grid(build: Callable[[str], SweepSpec]) -> Callable[..., SweepSpec]:
    def grid(tier: str = "standard") -> SweepSpec:
        return build(tier)

    return grid


register_grid("demo-quadratic")(demo_quadratic_spec)
for _name in EXPERIMENTS:
    # ``deeplimit sweep create --grid depth-transfer --set tier=quick``.
    register_grid(_name)(partial(experiment, _name))
for _name, (_, _build) in OPTIMIZER_GRIDS.items():
    # ``deeplimit sweep create --grid muon-depth-transfer --set tier=standard`` (tiers as above; full = standard).
    register_grid(_name)(_optimizer_grid(_build))
from deeplimit.transfer.oracle_grids import ORACLE_GRIDS  # noqa: E402 - the oracle's grids: horizon and batch axes

for _name, _build in ORACLE_GRIDS.items():
    # ``deeplimit sweep create --grid oracle-mlp --set tier=quick`` (deeplimit predict fits its table).
    register_grid(_name)(_build)
