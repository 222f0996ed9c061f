"""Diagnostics: coordinate checks over width and depth (more to come: rank collapse, feature diversity)."""

from deeplimit.diagnostics.coordinates import coord_check, coord_check_verdict, log2_slopes, plot_coord_check

__all__ = ["coord_check", "coord_check_verdict", "log2_slopes", "plot_coord_check"]
