"""deeplimit.sde: covariance SDEs of shaped networks (Noci et al. 2023) and exact finite-network samplers.

Small flat API (see ``shared/spec/shaped-transformer.md`` §3–§5, §9):

* coefficients: :class:`Scenario` (§3.6), :func:`drift_attention`, :func:`drift_relu`, :func:`relu_nu`,
  :func:`attention_quartic`, :func:`solve_correlation` (§3.7);
* noise and solver: :func:`psd_sqrt`, :func:`matrix_free_noise`, :func:`solve` → :class:`Solution`, called
  like diffrax's ``diffeqsolve``: ``solve(scenario, Euler(), t0, t1, dt0, V0, saveat=SaveAt(every=10),
  event=Band(1e-4, 1e4))`` with the value objects :class:`Euler` / :class:`TamedEuler` (the scheme),
  :class:`SaveAt` (what to keep) and :class:`Band` (when to stop a path, §3.8);
* finite networks: :func:`sample_network` (a :class:`Network`) → :class:`NetworkSamples` (theory blocks in
  :mod:`deeplimit.nn.theory`), with the same ``saveat`` and ``event``;
* scenarios and studies: :data:`SCENARIOS`, :func:`get_preset`, :func:`run_comparison`,
  :func:`stopping_map` (a :class:`StoppingGrid`), :func:`predict`, :func:`deeplimit.sde.studies.run_study`
  (what ``deeplimit sde`` runs);
* statistics: :func:`compare_distributions`, :func:`quantile_table`, :func:`exploded`;
* evidence (issue 12): :func:`compare_stopping_maps`, :func:`convergence_study`, :func:`unshaped_control`
  (more in :mod:`deeplimit.sde.evidence`);
* agreement as an equivalence test (issue 20): :func:`equivalence_test` → :class:`Equivalence`,
  :func:`paths_for_equivalence`, :func:`sensitivity_control`, :func:`perturbed_sde_samples`,
  :func:`exploded_paths`, :func:`sde_equivalence` (more in :mod:`deeplimit.sde.equivalence`).

The names below are imported on first use (PEP 562, as in ``deeplimit/__init__.py``): importing a light module
such as :mod:`.names` — what ``deeplimit sde`` needs to check its arguments — loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from deeplimit._lazy import lazy_names as _lazy_names

if _TYPE_CHECKING:  # never run: the modules _LAZY reads from, for readers of the source (the import-graph tests and
    # the report's code fingerprint follow imports, not strings); a test checks that the two lists agree
    from deeplimit.sde import (  # noqa: F401
        coefficients,
        compare,
        equivalence,
        events,
        evidence,
        noise,
        prediction,
        samplers,
        saveat,
        scenarios,
        solver,
        step,
    )

_LAZY = {name: f"deeplimit.sde.{module}" for module, names in {
    "coefficients": ("Scenario", "attention_quartic", "correlation", "drift_attention", "drift_relu", "relu_nu",
                     "solve_correlation"),
    "compare": ("compare_distributions", "exploded", "ks_distance", "quantile_table", "wasserstein1"),
    "equivalence": ("Equivalence", "equivalence_test", "exploded_paths", "paths_for_equivalence",
                    "perturbed_sde_samples", "sde_equivalence", "sensitivity_control"),
    "events": ("Band",),
    "evidence": ("compare_stopping_maps", "convergence_study", "unshaped_control"),
    "noise": ("matrix_free_noise", "psd_sqrt"),
    "prediction": ("Prediction", "predict"),
    "samplers": ("Network", "NetworkSamples", "sample_network"),
    "saveat": ("SaveAt",),
    "scenarios": ("Preset", "SCENARIOS", "StoppingGrid", "equicorrelated", "get_preset", "run_comparison",
                  "stopping_map"),
    "solver": ("Solution", "nearest_psd", "solve"),
    "step": ("Euler", "Solver", "TamedEuler"),
}.items() for name in names}

__all__ = sorted(_LAZY)

# ``dir()``: the public API only (the names in ``__all__``), as ``dir(deeplimit)``
__getattr__, __dir__ = _lazy_names(__name__, _LAZY, globals(), public=__all__)
