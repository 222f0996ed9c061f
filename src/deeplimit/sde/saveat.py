"""What a solve or a network sampler keeps besides the terminal state (the analogue of diffrax's ``SaveAt``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deeplimit.errors import DeeplimitError


@dataclass(frozen=True)
class SaveAt:
    """Grid points at which states are saved.

    * ``every=k``: every ``k``-th step (SDE) or layer (network), counted from the start, start included;
    * ``ts=(t, …)``: the grid times nearest to these times (SDE time ``t = ℓ/n`` for a network's layer ``ℓ``).

    Both may be given (their union is saved); ``SaveAt()`` saves nothing but the terminal state of a solve
    (a network sampler always keeps layers ``0`` and ``d``).
    """

    every: int | None = None
    ts: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.every is not None and not (isinstance(self.every, int) and not isinstance(self.every, bool)
                                           and self.every >= 1):
            raise DeeplimitError(f"SaveAt(every={self.every!r}): every must be a positive integer number of steps")
        if self.ts is not None:
            if isinstance(self.ts, (str, bytes)) or not isinstance(self.ts, Sequence):
                raise DeeplimitError(f"SaveAt(ts={self.ts!r}): ts must be a sequence of times, e.g. ts=(0.5, 1.0)")
            try:
                ts = tuple(float(t) for t in self.ts)
            except (TypeError, ValueError):
                raise DeeplimitError(f"SaveAt(ts={self.ts!r}): every time must be a number") from None
            if not all(math.isfinite(t) for t in ts):
                raise DeeplimitError(f"SaveAt(ts={ts!r}): every time must be finite")
            object.__setattr__(self, "ts", ts)

    def indices(self, t0: float, h: float, steps: int) -> set[int]:
        """Grid indices ``k`` (time ``t0 + k h``, ``0 ≤ k ≤ steps``) to save.

        Raises :class:`DeeplimitError` for a time in ``ts`` whose nearest grid point lies outside the grid.
        """
        out: set[int] = set()
        if self.every:
            out.update(range(0, steps + 1, self.every))
        for t in self.ts or ():
            k = round((t - t0) / h)
            if not 0 <= k <= steps:
                raise DeeplimitError(
                    f"SaveAt time {t:g} lies outside [{t0:g}, {t0 + steps * h:g}]; pass times between t0 and t1"
                )
            out.add(k)
        return out


__all__ = ["SaveAt"]
