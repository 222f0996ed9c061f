"""The SDE engine's value objects (solvers, SaveAt, Band, Network, StoppingGrid) and the outputs they reproduce.

The regression statistics below were computed with the flat-argument API at main's commit 4fc1a1e
(``solve(scenario, V0, T, dt, ..., save_every=, ts=, band=, scheme=)``, ``sample_network(..., save_every=,
band=)``, ``stopping_samples(gammas, tau0s, n=, …)``) on the same cases; the value-object API must give the
same arrays for the same seeds (checked bit for bit against main's arrays when the API changed).
"""

from __future__ import annotations

import pytest
import torch

from deeplimit.errors import DeeplimitError
from deeplimit.sde import (
    Band,
    Euler,
    Network,
    SaveAt,
    Scenario,
    StoppingGrid,
    TamedEuler,
    equicorrelated,
    sample_network,
    solve,
)
from deeplimit.sde.scenarios import stopping_samples

# statistic of each array (see _stat) at commit 4fc1a1e, old API, same arguments
MAIN_4FC1A1E = {
    "solve_band": (8077.330154571286, 37673.47004346606, 4.375, 11.523015873015874, 96.0, 0.0),
    "solve_tamed": (815.4416500907048, 57.6, 0.0, 0.0),
    "solve_f32_ts": (259.13047849982246, 508.65669898307885, 0.25),
    "net_block_gram": (420.9915622751505, 2100.7306783528365, 35.0, 768.0, 0.0),
    "net_block_cheap": (420.55775012339575, 2067.428227660452, 35.0, 768.0, 0.0),
    "net_explicit": (153.86958085899727, 282.0547712457417, 10.0),
    "stop_sde": (0.26, 0.4866666666666667, 0.03266666666666666, 0.21000000000000002, 3811.947893603113),
    "stop_network": (24.0, 24.0, 4.37, 1.9733333333333334, 3811.947893603113),
}


def _stat(t: torch.Tensor) -> float:
    """A position-weighted sum: changes if any entry changes or paths are permuted."""
    t = t.double().reshape(-1)
    return float((t * torch.linspace(1, 2, t.numel(), dtype=torch.float64)).sum())


def _V3() -> torch.Tensor:
    G = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return G @ G.T / 6


def _case(name: str) -> tuple[torch.Tensor, ...]:
    V0 = equicorrelated(3, 0.2)
    if name == "solve_band":
        s = solve(Scenario("attention", 1.0, 0.5), Euler(), 0.0, 1.0, 0.01, 3 * _V3(), saveat=SaveAt(every=25),
                  event=Band(1e-4, 1e4), paths=64, seed=0)
        return s.terminal, s.V, s.times, s.t_stop, s.reason, s.clipped
    if name == "solve_tamed":
        s = solve(Scenario("block", 0.35), TamedEuler(), 0.0, 0.3, None, V0, paths=128, seed=1)
        return s.terminal, s.t_stop, s.reason, s.clipped
    if name == "solve_f32_ts":
        s = solve(Scenario("resnet", 0.5), Euler(), 0.0, 0.2, None, equicorrelated(2, 0.2),
                  saveat=SaveAt(ts=(0.05, 0.1)), paths=64, seed=2, dtype=torch.float32)
        return s.terminal, s.V, s.times
    if name.startswith("net_block_"):
        ns = sample_network("block", 32, 8, V0, gamma=0.5, paths=64, seed=3, saveat=SaveAt(every=2),
                            event=Band(1e-4, 1e4), method=name.removeprefix("net_block_"))
        return ns.terminal, ns.V, ns.layers, ns.stop_layer, ns.reason
    if name == "net_explicit":
        ns = sample_network("attention", 16, 5, V0, variant="softmax", paths=20, seed=4, method="explicit", chunk=7)
        return ns.terminal, ns.V, ns.layers
    grid = StoppingGrid((0.2, 1.0), (0.5, 1.0), n=20, d=20, m=3, paths=16, seed=1)
    cells, eigmax = stopping_samples(grid, name.removeprefix("stop_"))
    return (*(torch.as_tensor(cells[k]) for k in sorted(cells)), torch.as_tensor(eigmax))


@pytest.mark.filterwarnings("ignore::deeplimit.errors.DeeplimitWarning")  # stop_sde's coarse step is flagged
@pytest.mark.parametrize("name", sorted(MAIN_4FC1A1E))
def test_value_object_api_reproduces_main(name: str) -> None:
    got = tuple(_stat(t) for t in _case(name))
    # same machine: equal to the bit; rel 1e-12 leaves room only for another BLAS's last-bit rounding
    assert got == pytest.approx(MAIN_4FC1A1E[name], rel=1e-12, abs=0)


def test_solver_objects_are_values() -> None:
    assert Euler() == Euler() and Euler() != TamedEuler() and hash(Euler()) == hash(Euler())
    assert SaveAt(ts=[0.5, 1]) == SaveAt(ts=(0.5, 1.0))  # ts normalised to a tuple of floats
    with pytest.raises(DeeplimitError, match="solver must be"):
        solve(Scenario("attention"), "euler", 0.0, 0.1, 0.01, equicorrelated(2, 0.2))  # type: ignore[arg-type]
    with pytest.raises(DeeplimitError, match="event must be"):
        solve(Scenario("attention"), Euler(), 0.0, 0.1, 0.01, equicorrelated(2, 0.2), event=(1e-4, 1e4))


def test_t0_shifts_times_not_paths() -> None:
    V0 = equicorrelated(2, 0.2)
    # the SDE is autonomous: a start at t0 = 2 runs the same steps (t1 − t0 = 0.25 exactly in both)
    sc = Scenario("attention", 0.5)
    a = solve(sc, Euler(), 0.0, 0.25, 0.05, V0, saveat=SaveAt(ts=(0.0, 0.1, 0.25)), paths=8, seed=1)
    b = solve(sc, Euler(), 2.0, 2.25, 0.05, V0, saveat=SaveAt(ts=(2.0, 2.1, 2.25)), paths=8, seed=1)
    assert torch.equal(a.terminal, b.terminal) and torch.equal(a.V, b.V) and a.V.shape[0] == 3
    assert b.times.tolist() == pytest.approx([2.0, 2.1, 2.25]) and bool((b.t_stop == 2.25).all())


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: SaveAt(every=0), "every must be a positive integer"),
        (lambda: SaveAt(every=2.5), "every must be a positive integer"),
        (lambda: SaveAt(ts=0.5), "ts must be a sequence"),
        (lambda: SaveAt(ts=(0.1, float("nan"))), "finite"),
        (lambda: Band(1e4, 1e-4), "0 ≤ lo < hi"),
        (lambda: Band(1e-4, float("inf")), "0 ≤ lo < hi"),
        (lambda: Band("a", 1.0), "two numbers"),
        (lambda: Network("transformer", 8, 2), "unknown network kind"),
        (lambda: Network("attention", 8, 0), "positive integers"),
        (lambda: Network("attention", 8, 2, gamma=1.5), "gamma must lie in"),
        (lambda: Network("attention", 8, 2, variant="nope"), "variant"),
        (lambda: StoppingGrid((0.1, 2.0), (1.0,)), "gamma = 2.0 outside"),
        (lambda: StoppingGrid((0.1,), (0.0,)), "tau0 = 0.0"),
        (lambda: StoppingGrid((), (1.0,)), "at least one value"),
        (lambda: StoppingGrid((0.1,), (1.0,), m=1), "m = 1"),
        (lambda: StoppingGrid((0.1,), (1.0,), band=(1e4, 1e-4)), "0 < LO < HI"),
        (lambda: StoppingGrid((0.1,), (1.0,), dt=-0.01), "dt = -0.01"),
    ],
)
def test_value_objects_refuse_bad_values_on_construction(build, match: str) -> None:
    with pytest.raises(DeeplimitError, match=match) as err:
        build()
    assert "\n" not in str(err.value)


def test_saveat_time_outside_the_grid_is_refused() -> None:
    with pytest.raises(DeeplimitError, match="outside"):
        solve(Scenario("attention"), Euler(), 0.0, 0.1, 0.01, equicorrelated(2, 0.2), saveat=SaveAt(ts=(0.5,)))


def test_stopping_grid_takes_a_pair_or_a_band() -> None:
    a = StoppingGrid([0.1], [1], band=(1e-3, 1e3))
    assert a.band == Band(1e-3, 1e3) and a.gammas == (0.1,) and a.tau0s == (1.0,) and a.T == 1.0
