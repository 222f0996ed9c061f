"""Named experiment grids: ``EXPERIMENT_GRIDS[name](**kwargs) -> SweepSpec`` (with its objective set).

``deeplimit sweep create --grid NAME --set key=value …`` builds them: the depth-mup spec §11 experiments
(:mod:`deeplimit.transfer.experiments`, each with tiers smoke | quick | standard | full) and the
``demo-quadratic`` grid. Other code adds its own with :func:`register_grid`.

(``EXPERIMENT_GRIDS`` is not :data:`deeplimit.scaling.rules.PRESETS`, the parametrization rules such as
``depth_mup``, nor :data:`deeplimit.sde.scenarios.PRESETS`; a grid's ``preset`` axis holds rule names.)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.demo import demo_quadratic_spec
from deeplimit.transfer.experiments import EXPERIMENTS, experiment
from deeplimit.transfer.optimizers import GRIDS as OPTIMIZER_GRIDS

__all__ = ["EXPERIMENT_GRIDS", "register_grid", "build_grid"]

EXPERIMENT_GRIDS: dict[str, Callable[..., SweepSpec]] = {}


def register_grid(name: str) -> Callable[[Callable[..., SweepSpec]], Callable[..., SweepSpec]]:
    """Decorator: ``@register_grid("my-grid") def f(**kw) -> SweepSpec``."""

    def deco(fn: Callable[..., SweepSpec]) -> Callable[..., SweepSpec]:
        if name in EXPERIMENT_GRIDS and EXPERIMENT_GRIDS[name] is not fn:
            raise DeeplimitError(f"experiment grid {name!r} is already registered; pick another name")
        EXPERIMENT_GRIDS[name] = fn
        return fn

    return deco


def build_grid(name: str, **kwargs: Any) -> SweepSpec:
    """Build the spec of grid ``name``; unknown names and bad keyword arguments say what exists."""
    if name not in EXPERIMENT_GRIDS:
        raise DeeplimitError(f"unknown experiment grid {name!r}; available: {sorted(EXPERIMENT_GRIDS)}")
    try:
        spec = EXPERIMENT_GRIDS[name](**kwargs)
    except TypeError as exc:
        raise DeeplimitError(f"grid {name!r} does not accept {sorted(kwargs)}: {exc}") from None
    if not spec.objective:
        raise DeeplimitError(f"grid {name!r} returned a spec without an objective; set objective=…")
    return spec


register_grid("demo-quadratic")(demo_quadratic_spec)
for _name in EXPERIMENTS:
    # ``deeplimit sweep create --grid depth-transfer --set tier=quick``.
    register_grid(_name)(partial(experiment, _name))
for _name, (_, _build) in OPTIMIZER_GRIDS.items():
    # ``deeplimit sweep create --grid muon-depth-transfer --set tier=standard`` (tiers as above; full = standard).
    register_grid(_name)(lambda tier="standard", _build=_build: _build(tier))
