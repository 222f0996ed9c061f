"""Named sweep presets: ``PRESETS[name](**kwargs) -> SweepSpec`` (with its objective set).

Other packages add their experiments (depth transfer tiers, width transfer, transformers) with
:func:`register_preset`; ``deeplimit sweep create --preset NAME --set key=value …`` builds them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.demo import demo_quadratic_spec
from deeplimit.sweep.grid import SweepSpec

__all__ = ["PRESETS", "register_preset", "build_preset"]

PRESETS: dict[str, Callable[..., SweepSpec]] = {}


def register_preset(name: str) -> Callable[[Callable[..., SweepSpec]], Callable[..., SweepSpec]]:
    """Decorator: ``@register_preset("depth-quick") def f(**kw) -> SweepSpec``."""

    def deco(fn: Callable[..., SweepSpec]) -> Callable[..., SweepSpec]:
        if name in PRESETS and PRESETS[name] is not fn:
            raise DeeplimitError(f"sweep preset {name!r} is already registered; pick another name")
        PRESETS[name] = fn
        return fn

    return deco


def build_preset(name: str, **kwargs: Any) -> SweepSpec:
    """Build the spec of preset ``name``; unknown names and bad keyword arguments say what exists."""
    if name not in PRESETS:
        raise DeeplimitError(f"unknown sweep preset {name!r}; available: {sorted(PRESETS)}")
    try:
        spec = PRESETS[name](**kwargs)
    except TypeError as exc:
        raise DeeplimitError(f"preset {name!r} does not accept {sorted(kwargs)}: {exc}") from None
    if not spec.objective:
        raise DeeplimitError(f"preset {name!r} returned a spec without an objective; set objective=…")
    return spec


register_preset("demo-quadratic")(demo_quadratic_spec)


def _register_experiments() -> None:
    # The TP6 / CompleteP experiments of depth-mup spec §11, each with tiers smoke | quick | full:
    # ``deeplimit sweep create --preset depth-transfer --set tier=quick``.
    from deeplimit.sweep.experiments import EXPERIMENTS, experiment

    for name in EXPERIMENTS:
        register_preset(name)(partial(experiment, name))


_register_experiments()
