"""Figure layout shared by every module that draws with Matplotlib: lay a figure out once, then draw it once.

A bottom layer (it imports nothing of deeplimit), so that the SDE, diagnostics, transfer and report figures all
use it.
"""

from __future__ import annotations

__all__ = ["tight_layout"]


def tight_layout(fig, rect: tuple[float, float, float, float] | None = None) -> None:
    """``fig.tight_layout(rect=rect)`` for a figure that is saved next, at less cost, drawing the same figure.

    Two costs are left out, neither of which moves anything that can be seen:

    * the spines' extents. Each one recomputes its axis's ticks to add the tick marks (3.5 pt) beyond the axes;
      the layout already pads every axes by more than that around its tick labels and axis labels, which it
      still measures;
    * the second draw of ``savefig``: ``Figure.tight_layout`` leaves a placeholder layout engine on the figure,
      and with any engine set ``savefig`` first draws a throw-away copy of the figure to run it. The engine is
      removed once the layout is done, so that ``savefig`` draws once.
    """
    for ax in fig.axes:
        for spine in ax.spines.values():
            spine.set_in_layout(False)
    fig.tight_layout(rect=rect)
    fig.set_layout_engine(None)
