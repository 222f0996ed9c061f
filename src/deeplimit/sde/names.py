"""The names a study is chosen by, and the checks of the settings that need no simulation: torch-free, so that
``deeplimit sde`` refuses a bad command line before it loads torch (:func:`check_study_args`)."""

from __future__ import annotations

from deeplimit.errors import DeeplimitError

__all__ = ["COMPARISONS", "STUDIES", "METHODS", "SOURCES", "check_study_args"]

COMPARISONS = ("attention", "block", "resnet", "mlp", "linear")
STUDIES = COMPARISONS + ("ablations", "stopping", "stopping-map")
METHODS = ("gram", "cheap", "explicit")  # finite-network samplers (deeplimit.sde.samplers)
SOURCES = ("network", "sde", "both")


def check_study_args(name: str, *, seed: int = 0, bootstrap: int = 100, method: str = "gram",
                     source: str = "network") -> None:
    """Raise a one-line :class:`DeeplimitError` naming the first bad setting among the study's name, ``seed``
    (an integer ≥ 0), ``bootstrap`` (resamples, an integer ≥ 0), ``method`` and ``source``."""
    if name not in STUDIES:
        raise DeeplimitError(f"unknown scenario {name!r}; choose one of {', '.join(STUDIES)}")
    if not (isinstance(seed, int) and seed >= 0):
        raise DeeplimitError(f"seed must be an integer ≥ 0, got {seed!r}")
    if not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise DeeplimitError(f"bootstrap must be an integer ≥ 0 (resamples; 0 skips standard errors), got "
                             f"{bootstrap!r}")
    if method not in METHODS:
        raise DeeplimitError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if source not in SOURCES:
        raise DeeplimitError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
