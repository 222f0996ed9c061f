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
"""

from deeplimit.sde.coefficients import (
    Scenario,
    attention_quartic,
    correlation,
    drift_attention,
    drift_relu,
    relu_nu,
    solve_correlation,
)
from deeplimit.sde.compare import compare_distributions, exploded, ks_distance, quantile_table, wasserstein1
from deeplimit.sde.equivalence import (
    Equivalence,
    equivalence_test,
    exploded_paths,
    paths_for_equivalence,
    perturbed_sde_samples,
    sde_equivalence,
    sensitivity_control,
)
from deeplimit.sde.events import Band
from deeplimit.sde.evidence import compare_stopping_maps, convergence_study, unshaped_control
from deeplimit.sde.noise import matrix_free_noise, psd_sqrt
from deeplimit.sde.prediction import Prediction, predict
from deeplimit.sde.samplers import Network, NetworkSamples, sample_network
from deeplimit.sde.saveat import SaveAt
from deeplimit.sde.scenarios import (
    SCENARIOS,
    Preset,
    StoppingGrid,
    equicorrelated,
    get_preset,
    run_comparison,
    stopping_map,
)
from deeplimit.sde.solver import Solution, nearest_psd, solve
from deeplimit.sde.step import Euler, Solver, TamedEuler

__all__ = [
    "SCENARIOS",
    "Band",
    "Euler",
    "Network",
    "NetworkSamples",
    "Equivalence",
    "Prediction",
    "Preset",
    "SaveAt",
    "Scenario",
    "Solution",
    "Solver",
    "StoppingGrid",
    "TamedEuler",
    "attention_quartic",
    "compare_distributions",
    "compare_stopping_maps",
    "convergence_study",
    "correlation",
    "drift_attention",
    "drift_relu",
    "equicorrelated",
    "equivalence_test",
    "exploded",
    "exploded_paths",
    "get_preset",
    "ks_distance",
    "matrix_free_noise",
    "nearest_psd",
    "paths_for_equivalence",
    "perturbed_sde_samples",
    "predict",
    "psd_sqrt",
    "quantile_table",
    "relu_nu",
    "run_comparison",
    "sde_equivalence",
    "sensitivity_control",
    "sample_network",
    "solve",
    "solve_correlation",
    "stopping_map",
    "unshaped_control",
    "wasserstein1",
]
