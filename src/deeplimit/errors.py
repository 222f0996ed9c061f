"""Error and warning types shared by every deeplimit package.

Every user-facing failure is a :class:`DeeplimitError` whose message names the problem *and* the fix.
It subclasses ``ValueError`` so that code catching bad arguments the usual way still works.
"""

from __future__ import annotations

import warnings


class DeeplimitError(ValueError):
    """Bad input or an impossible request; the message says what is wrong and how to fix it."""


class DeeplimitWarning(UserWarning):
    """A configuration that runs but that the papers give no guarantee for (see depth-mup spec §9)."""


def warn(message: str, stacklevel: int = 2) -> None:
    warnings.warn(message, DeeplimitWarning, stacklevel=stacklevel + 1)


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Raise a DeeplimitError unless ``value`` is a positive number (an int if ``integer``)."""
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise DeeplimitError(f"{name} must be a positive integer, got {value!r}")
    if not value > 0:
        raise DeeplimitError(f"{name} must be positive, got {value!r}")
