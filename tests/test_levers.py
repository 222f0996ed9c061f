"""Sweep time levers: the two-pass LR search's second pass (points, specs, protocol keys) and its estimate."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import deeplimit.protocol as protocol_module
from deeplimit.errors import DeeplimitError
from deeplimit.protocol import _check
from deeplimit.sweep.grid import SweepSpec
from deeplimit.train import config_from_point
from deeplimit.transfer.experiments import LRSearch, experiment, log2_grid, lr_search, refine_specs
from deeplimit.transfer.optimum import fit_optimum, second_pass_points


def _curve(x, x0: float, rise: float = 1.0):
    """A loss curve in log2 LR with its minimum at ``x0``, steeper above it (as real curves are)."""
    d = np.asarray(x, dtype=float) - x0
    return 1.0 + 0.05 * np.where(d > 0, rise * d * d + 0.5 * d**3, d * d)


def test_second_pass_points_interior_edge_diverged():
    coarse = log2_grid(-10, -5, 1)
    # interior optimum: the half-octave points within ±½ octave that the coarse grid lacks
    pts = second_pass_points(coarse, _curve(coarse, -7.9), coarse, step=0.5, half_width=0.5)
    assert pts == [-8.5, -7.5]
    # a 2-octave coarse grid with ±1 octave: four new points, none on the coarse grid
    c2 = log2_grid(-10, -4, 2)
    pts = second_pass_points(c2, _curve(c2, -8.0), c2, step=0.5, half_width=1.0)
    assert pts == [-9.0, -8.5, -7.5, -7.0]
    # argmin on the grid's edge: censored, the second pass extends the grid past it
    assert second_pass_points(coarse, _curve(coarse, -12), coarse) == [-12.0, -11.0]
    # argmin next to a diverged run (not the grid's edge): refined on both sides, up to the diverged point
    y = _curve(coarse, -6.0)
    y[-1] = math.inf
    assert second_pass_points(coarse, y, coarse, step=0.5, half_width=0.5) == [-6.5, -5.5]
    # every run diverged: nothing to refine
    assert second_pass_points(coarse, [math.inf] * len(coarse), coarse) == []
    # points already measured are not asked for twice
    x = [*coarse, -8.5]
    assert second_pass_points(x, _curve(x, -7.9), coarse, step=0.5, half_width=0.5) == [-7.5]


def test_two_pass_locates_the_optimum_closer_than_the_grid():
    coarse = log2_grid(-12, -4, 1)
    errs_one, errs_two = [], []
    for x0 in np.linspace(-9.4, -7.6, 10):
        y = _curve(coarse, x0, rise=2.0)
        one = fit_optimum(coarse, y)
        extra = second_pass_points(coarse, y, coarse, step=0.25, half_width=1.0)
        x = np.array([*coarse, *extra])
        two = fit_optimum(x, _curve(x, x0, rise=2.0))
        errs_one.append(abs(one.log2_lr - x0))
        errs_two.append(abs(two.log2_lr - x0))
    assert max(errs_two) < 0.1
    assert np.mean(errs_two) < np.mean(errs_one)


def _table(optima: dict[tuple[str, int, int], float], grid) -> pd.DataFrame:
    rows = []
    for (preset, depth, seed), x0 in optima.items():
        for x, v in zip(grid, _curve(grid, x0)):
            rows.append({"preset": preset, "depth": depth, "seed": seed, "log2_lr": x, "metric": "window_loss",
                         "value": v, "status": "ok"})
            rows.append({"preset": preset, "depth": depth, "seed": seed, "log2_lr": x, "metric": "train_loss",
                         "value": 9.0, "status": "ok"})  # another metric's rows: ignored
    return pd.DataFrame(rows)


def test_refine_specs_one_full_grid_per_shared_point_set():
    grid = log2_grid(-10, -5, 1)
    spec = SweepSpec(axes={"preset": ["a", "b"], "depth": [2, 8], "log2_lr": grid, "seed": [0, 1, 2]},
                     fixed={"steps": 10}, metric="window_loss")
    optima = {(p, d, s): -8.0 for p in "ab" for d in (2, 8) for s in range(3)}
    optima[("b", 8, 2)] = -6.1  # one seed elsewhere
    table = _table(optima, grid)
    table.loc[(table.preset == "a") & (table.depth == 2) & (table.seed == 1), "status"] = "diverged"  # all LRs
    specs = refine_specs(spec, table, group="preset", size="depth", search=LRSearch("two-pass", 0.5, 0.5))
    got = set()
    for s in specs:
        assert len(s.axes["preset"]) == 1 and len(s.axes["depth"]) == 1
        assert s.fixed == spec.fixed and s.metric == spec.metric and list(s.axes) == list(spec.axes)
        assert not set(s.axes["log2_lr"]) & set(grid)
        got |= {(p["preset"], p["depth"], p["seed"], p["log2_lr"]) for p in s.points()}
    want = {(p, d, s, x) for (p, d, s), x0 in optima.items() if (p, d, s) != ("a", 2, 1)
            for x in ((-6.5, -5.5) if x0 == -6.1 else (-8.5, -7.5))}
    assert got == want
    assert len(specs) == 5  # (a,2), (a,8), (b,2), and (b,8) split by its two point sets
    assert refine_specs(spec, table, group="preset", size="depth",
                        search=LRSearch("two-pass", 0.5, 0.5)) == specs  # deterministic: a resume finds them


def test_refine_specs_refuses_an_extra_axis():
    spec = SweepSpec(axes={"preset": ["a"], "depth": [2], "log2_lr": [-8.0, -7.0, -6.0], "seed": [0],
                           "activation": ["relu", "abs"]}, fixed={}, metric="window_loss")
    with pytest.raises(DeeplimitError, match="activation"):
        refine_specs(spec, _table({("a", 2, 0): -7.0}, [-8.0, -7.0, -6.0]), group="preset", size="depth",
                     search=LRSearch("two-pass"))


def _protocol(**tier) -> dict:
    return {"seeds": {"pilot": [0], "confirmation": [1000]},
            "claims": {"c": {"tiers": {"quick": {"seeds": 1, "log2_lr": [-10.0, -5.0, 1.0], **tier}}}}}


def test_protocol_lr_search_keys_checked():
    _check(_protocol())
    _check(_protocol(lr_search="two-pass", refine_step=0.5, refine_half_width=1.0))
    for bad, match in ((dict(lr_search="adaptive"), "lr_search"),
                       (dict(refine_step=0.5), "without lr_search"),
                       (dict(lr_search="two-pass", refine_step=1.0), "not finer"),
                       (dict(lr_search="two-pass", refine_step=-0.5), "positive"),
                       (dict(lr_search="two-pass", refine_step=0.5, refine_half_width=0.25), "below refine_step")):
        with pytest.raises(DeeplimitError, match=match):
            _check(_protocol(**bad))
    _check(_protocol(diverge_patience=50))
    for bad in (0, 2.5, True, "50"):
        with pytest.raises(DeeplimitError, match="diverge_patience"):
            _check(_protocol(diverge_patience=bad))


def test_protocol_levers_reach_the_sweep(monkeypatch):
    """A tier's diverge_patience becomes a trainer setting of every run, and its lr_search what lr_search reads;
    a tier without them builds the same spec as before (same sweep name, same cache)."""
    before = experiment("depth-transfer", "smoke", seed_set="pilot")
    assert "diverge_patience" not in before.fixed
    real = protocol_module.protocol()
    claims = copy.deepcopy(real.claims)
    claims["depth-transfer"]["tiers"]["smoke"].update(diverge_patience=20, lr_search="two-pass", refine_step=1.0)
    _check({"seeds": real.seeds, "claims": claims})
    monkeypatch.setattr(protocol_module, "protocol", lambda: dataclasses.replace(real, claims=claims))
    spec = experiment("depth-transfer", "smoke", seed_set="pilot")
    assert spec.fixed == {**before.fixed, "diverge_patience": 20} and spec.axes == before.axes
    assert config_from_point({**spec.fixed, **spec.points()[0]}).diverge_patience == 20
    assert lr_search("depth-transfer", "smoke") == LRSearch("two-pass", 1.0, 1.0)


def test_shipped_protocol_searches_its_grid_once():
    # turning a lever on is a protocol change (a pilot and a new confirmation): the shipped tiers run one pass
    for claim in ("depth-transfer", "width-transfer"):
        for tier in ("smoke", "quick", "standard", "full"):
            assert lr_search(claim, tier) == LRSearch()
    assert not lr_search("activation", "standard").two_pass


def test_the_early_stop_replay_stops_where_the_trainer_does(tmp_path):
    """bench_levers replays diverge_patience on recorded per-step losses: the replay must stop a run at the step
    the trainer itself stops it (and not stop a run the trainer lets finish)."""
    import torch
    from benchmarks.levers_pilot import longest_above, patience_stop

    from deeplimit.train import TrainConfig, train

    cfg = dict(width=16, depth=2, steps=30, batch_size=16, rule="sp", optimizer="adam", lr=2.0, seed=0,
               eval_batches=0, data="digits")
    train(TrainConfig(**cfg), tmp_path)  # the full run, its per-step losses in the checkpoint
    losses = torch.load(tmp_path / "ckpt.pt", weights_only=True)["extra"]["losses"].tolist()
    longest = longest_above(losses)
    assert longest >= 3, "the run must diverge for this test to say anything"
    for n in (3, longest + 1):
        stopped = train(TrainConfig(**cfg, diverge_patience=n))
        want = patience_stop(losses, n)
        assert (stopped.steps_done if stopped.reason.startswith("stopped early") else None) == want, n
