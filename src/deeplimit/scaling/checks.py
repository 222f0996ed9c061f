"""Number checks shared by plans, hyperparameters and optimizers: NaN, ±inf and negatives never get in.

A NaN multiplier or learning rate does not fail where it is made; it fails steps later as a NaN loss that
looks like divergence (issue #11). Every number a plan stores or an optimizer receives passes through here.
"""

from __future__ import annotations

import math

from deeplimit.errors import DeeplimitError


def check_number(name: str, value: object, *, positive: bool = False, nonnegative: bool = False,
                 fix: str = "") -> float:
    """Return ``float(value)`` if it is a finite real number (and > 0 / ≥ 0 if asked), else raise.

    ``fix`` is appended to the message (e.g. ``"tune it at the base shape"``).
    """
    if isinstance(value, bool):
        raise DeeplimitError(f"{name} must be a number, got {value!r}{_tail(fix)}")
    if not isinstance(value, int | float):
        try:
            value = float(value)  # numpy and 0-dim torch scalars
        except (TypeError, ValueError):
            raise DeeplimitError(f"{name} must be a number, got {value!r}{_tail(fix)}") from None
    value = float(value)
    if not math.isfinite(value):
        raise DeeplimitError(f"{name} must be a finite number, got {value!r}{_tail(fix)}")
    if positive and not value > 0:
        raise DeeplimitError(f"{name} must be positive, got {value!r}{_tail(fix)}")
    if nonnegative and value < 0:
        raise DeeplimitError(f"{name} must be >= 0, got {value!r}{_tail(fix)}")
    return value


def _tail(fix: str) -> str:
    return f"; {fix}" if fix else ""
