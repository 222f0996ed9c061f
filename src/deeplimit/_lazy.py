"""A package's public names imported on first use (PEP 562), so that importing the package loads no torch.

``deeplimit``, ``deeplimit.scaling``, ``deeplimit.sde`` and ``deeplimit.train`` each list their names and the
module that defines each one; :func:`lazy_names` makes the package's ``__getattr__`` and ``__dir__`` from that list.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, names: Mapping[str, str], namespace: dict[str, Any], *,
               aliases: Mapping[str, tuple[str, str]] | None = None, submodules: Iterable[str] | None = None,
               public: Iterable[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for package ``package``.

    ``names``: public name → the module that defines it, imported on the first look-up; the value is then bound in
    ``namespace`` (the package's ``globals()``), so later look-ups never reach ``__getattr__``. ``aliases``: name
    → (module, attribute), for a name kept under another one. ``submodules``: the submodules a look-up of another
    name imports (``dl.nn`` without ``import deeplimit.nn``); None: any submodule of the package. ``public``: what
    ``dir(package)`` lists — the API only, never the package's helpers.
    """
    aliases = dict(aliases or {})
    allowed = None if submodules is None else frozenset(submodules)
    listed = sorted(set(public))

    def __getattr__(name: str) -> Any:
        if name in names or name in aliases:
            module, attr = aliases.get(name) or (names[name], name)
            value = getattr(importlib.import_module(module), attr)
            namespace[name] = value
            return value
        if allowed is None or name in allowed:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(listed)

    return __getattr__, __dir__
