"""Sweep grids for the transfer oracle: the training horizon (a data budget, ``samples``) and the batch size as
axes, beside the model size and the LR, on the MLP-ResNet (Fashion-MNIST) and the byte-level Pre-LN LM.

``deeplimit sweep create --grid oracle-mlp --set tier=quick`` builds them (registered in
:mod:`deeplimit.transfer.grids`); ``deeplimit predict`` then fits η* (and B*) against depth and samples on the
sweep's table and ``--evaluate`` scores the forecast at the largest budget, which the fit never sees. The
largest ``samples`` value of the standard tier is 8× past the geometric middle of the others (4× in the
CPU-sized quick tier), so the held-out check is an extrapolation, as issue 24 asks.

Seeds default to the protocol's *pilot* set: these grids are exploratory. The frozen claims ``oracle`` (protocol
``claims.oracle``, the MLP-ResNet: fit at small depth and budget, validate at 8× the budget and 8–16× the depth),
``oracle-lm`` and ``oracle-lm-mup`` (``claims.oracle-lm``, ``claims.oracle-lm-mup``: the same check on the
byte-level LM under CompleteP and under μP) and ``oracle-width``
(``claims.oracle-width``, the μP MLP-ResNet: fit at widths 32–128, validate at 4× and 8× the largest fitted
width) build their sweeps with :func:`oracle_claim_specs` from the protocol's tier settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.grid import SweepSpec
from deeplimit.transfer.experiments import OBJECTIVE, _tier, customise, log2_grid

__all__ = ["ORACLE_GRIDS", "ORACLE_CLAIMS", "OracleClaimGrid", "oracle_mlp", "oracle_mlp_mup", "oracle_lm",
           "oracle_claim_specs", "oracle_claim_groups"]


def _seeded(spec: SweepSpec, seed_set: str, claim: str | None = None) -> SweepSpec:
    from deeplimit.protocol import seed_values

    idx = list(spec.axes["seed"])
    values = seed_values(max(idx) + 1, seed_set, claim)
    return replace(spec, axes={**spec.axes, "seed": [values[i] for i in idx]})


def oracle_mlp(tier: str = "quick", seed_set: str = "pilot", *, claim: str | None = None,
               **overrides: Any) -> SweepSpec:
    """MLP-ResNet on Fashion-MNIST under Depth-μP: axes depth × samples × batch_size × log2_lr × seed.

    ``samples`` is the data budget (images seen; steps = samples / batch_size, see
    :func:`~deeplimit.transfer.objectives.with_budget`), so the batch axis trades steps for batch at a fixed
    budget, as B* is defined. quick (the pilot of docs/oracle.md: 84 runs, ~4 minutes on two busy cores):
    depth 2, samples 2048 … 8192 fitted and 16384 held out, batch 8, 32, 128; standard: depth 2 … 8 and 32
    held out (16× the smallest), samples 8192 … 32768 and 262144 (8× the largest fitted), batch 16, 64, 256.
    ``claim``: the protocol claim whose own confirmation seeds (if it names any) the seed axis maps onto."""
    depths, samples, batches, lrs, seeds = _tier(
        tier,
        ([2], [256, 512, 1024], [16, 32], log2_grid(-10, -7, 1), [0]),
        ([2], [2048, 4096, 8192, 16384], [8, 32, 128], log2_grid(-13, -7, 1), [0]),
        ([2, 4, 8, 32], [8192, 16384, 32768, 262144], [16, 64, 256], log2_grid(-14, -5, 0.5), [0, 1, 2]),
        ([2, 4, 8, 32], [8192, 16384, 32768, 262144], [16, 64, 256], log2_grid(-14, -5, 1), [0, 1]))
    spec = SweepSpec(
        axes={"depth": depths, "samples": samples, "batch_size": batches, "log2_lr": lrs, "seed": seeds},
        fixed={"experiment": "oracle_mlp", "model": "mlp-resnet", "rule": "depth_mup", "width": 32,
               "base_width": 32, "base_depth": 2, "train_io": True, "data": "fashion-mnist", "activation": "relu"},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: MLP-ResNet (Depth-muP), LR x data budget x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set, claim)


def oracle_mlp_mup(tier: str = "quick", seed_set: str = "pilot", *, claim: str | None = None,
                   readout_zero_init: bool = True, **overrides: Any) -> SweepSpec:
    """:func:`oracle_mlp`'s model under μP (``rule="mup"``) with a zero-initialised readout, as the protocol's
    width-transfer claim: the model of the ``oracle-width`` claim, whose width axis extrapolates (pass
    ``width=[...]`` and ``base_width``). Under μP with a zero readout the function at initialisation is 0 at
    every width, so η* is the only thing width can move (Tensor Programs V)."""
    spec = oracle_mlp(tier, seed_set, claim=claim, **{"rule": "mup", **overrides})
    return replace(spec, fixed={**spec.fixed, "readout_zero_init": bool(readout_zero_init)},
                   description=spec.description.replace("(Depth-muP)", "(muP, zero readout)"))


def oracle_lm(tier: str = "quick", seed_set: str = "pilot", *, claim: str | None = None,
              **overrides: Any) -> SweepSpec:
    """Byte-level Pre-LN transformer (CompleteP and μP): axes rule × depth × samples × batch_size × log2_lr ×
    seed; ``samples`` counts sequences of 64 bytes (tokens = 64 × samples). quick: depth 2, 4; samples 800 …
    3200 fitted and 12800 held out (50 … 200 and 800 steps at batch 16); batch 8, 16, 32. standard: depth 2 … 8
    and 32, samples 1600 … 6400 and 51200. ``claim`` as in :func:`oracle_mlp`."""
    rules, depths, samples, batches, lrs, seeds, data = _tier(
        tier,
        (["completep"], [1], [80, 160, 320], [8], log2_grid(-8, -5, 1), [0], "stdlib"),
        (["completep", "mup"], [2, 4], [800, 1600, 3200, 12800], [8, 16, 32], log2_grid(-9, -3, 1), [0],
         "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [1600, 3200, 6400, 51200], [8, 16, 32, 64], log2_grid(-10, -2, 0.5),
         [0, 1, 2], "shakespeare"),
        (["completep", "mup"], [2, 4, 8, 32], [1600, 3200, 6400, 51200], [8, 16, 32], log2_grid(-9, -3, 1), [0, 1],
         "shakespeare"))
    spec = SweepSpec(
        axes={"rule": rules, "depth": depths, "samples": samples, "batch_size": batches, "log2_lr": lrs,
              "seed": seeds},
        fixed={"experiment": "oracle_lm", "model": "transformer", "width": 64, "base_width": 64, "base_depth": 2,
               "n_heads": 4, "optimizer": "adamw", "seq_len": 64, "warmup_frac": 0.05, "data": data,
               "min_window": 5},
        objective=OBJECTIVE, metric="window_loss",
        description="transfer oracle: byte-level Pre-LN LM, LR x data budget x batch size x depth")
    return _seeded(customise(spec, **overrides), seed_set, claim)


@dataclass(frozen=True)
class OracleClaimGrid:
    """How an oracle claim's protocol entry becomes sweeps: the grid that builds them, the model size that
    extrapolates (``size``: ``"depth"`` or ``"width"``; the tier's ``fit_<size>s`` and the first entry of each
    ``held_out`` pair), the tier keys passed on to the grid as they are (``extra``), and the model in words."""

    build: Callable[..., SweepSpec]
    size: str
    extra: tuple[str, ...]
    model: str


# The protocol claims built here. A depth claim trains at the tier's ``width`` (its base width too); a width
# claim at the tier's ``depth`` with its own ``base_width``.
ORACLE_CLAIMS: dict[str, OracleClaimGrid] = {
    "oracle": OracleClaimGrid(oracle_mlp, "depth", (), "MLP-ResNet (Depth-muP)"),
    "oracle-lm": OracleClaimGrid(oracle_lm, "depth", ("rule", "data"), "byte-level Pre-LN LM (CompleteP)"),
    "oracle-lm-mup": OracleClaimGrid(oracle_lm, "depth", ("rule", "data"), "byte-level Pre-LN LM (muP)"),
    "oracle-width": OracleClaimGrid(oracle_mlp_mup, "width", ("rule", "readout_zero_init", "base_width"),
                                    "MLP-ResNet (muP, zero readout)"),
}


def _claim(claim: str) -> OracleClaimGrid:
    if claim not in ORACLE_CLAIMS:
        raise DeeplimitError(f"no oracle claim {claim!r}; choose one of {', '.join(ORACLE_CLAIMS)}")
    return ORACLE_CLAIMS[claim]


def oracle_claim_groups(tier: str, *, claim: str = "oracle") -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """An oracle claim's (size, samples) groups at ``tier`` (protocol ``claims.<claim>.tiers.<tier>``; size is
    the claim's :attr:`OracleClaimGrid.size`, depth or width): the fitted ones (``fit_depths`` or ``fit_widths``
    × ``fit_samples``) and the held-out ones (``held_out``), in that order."""
    from deeplimit.protocol import protocol

    _tier(tier, *(None,) * 3)
    size = _claim(claim).size
    t = protocol().tier(claim, tier)
    fitted = [(int(d), int(s)) for d in t[f"fit_{size}s"] for s in t["fit_samples"]]
    held = [(int(d), int(s)) for d, s in t["held_out"]]
    if set(fitted) & set(held):
        raise DeeplimitError(f"protocol.toml: claims.{claim}.tiers.{tier} holds out groups it also fits: "
                             f"{sorted(set(fitted) & set(held))}; a held-out group must be one the fit never sees")
    return fitted, held


def oracle_claim_specs(tier: str, seed_set: str = "confirmation", *, claim: str = "oracle",
                       seeds: int | None = None) -> dict[str, SweepSpec]:
    """An oracle claim's sweeps at ``tier``: ``"fit"`` (size × samples × log2_lr × seed over the fitted groups;
    size is depth or width, :attr:`OracleClaimGrid.size`) and one ``"held-<size>-<samples>"`` per held-out group
    — or one sweep ``"all"`` when the fitted and held-out groups together fill a size × samples grid (each
    sweep's workers cost seconds to start). A held-out group is a sweep of its own because a sweep is a product
    grid and the held-out groups are not one.

    ``claim`` picks the protocol entry and the grid (:data:`ORACLE_CLAIMS`): ``"oracle"`` is the
    :func:`oracle_mlp` model (MLP-ResNet, Depth-μP, all layers trained, Fashion-MNIST, Adam), ``"oracle-lm"``
    the :func:`oracle_lm` model (byte-level Pre-LN transformer at the tier's ``rule`` and ``data``),
    ``"oracle-width"`` the :func:`oracle_mlp_mup` model (μP, zero readout) at the tier's ``depth``, all scored
    by ``window_loss``, at the protocol's fixed batch size, LR grid and number of seeds (``seeds`` overrides the
    number, e.g. for a pilot), mapped onto ``seed_set`` (a claim's own confirmation seeds where it names them)."""
    from deeplimit.protocol import protocol

    grid = _claim(claim)
    fitted, held = oracle_claim_groups(tier, claim=claim)
    t = protocol().tier(claim, tier)
    shape = ({"width": int(t["width"]), "base_width": int(t["width"])} if grid.size == "depth"
             else {"depth": [int(t["depth"])]})
    common = {"batch_size": [int(t["batch_size"])], "log2_lr": log2_grid(*t["log2_lr"]),
              "seeds": int(t["seeds"]) if seeds is None else seeds, **shape, **{k: t[k] for k in grid.extra}}

    def sweep(sizes: list[int], samples: list[int]) -> SweepSpec:
        return grid.build(tier="smoke", seed_set=seed_set, claim=claim, samples=samples, **{grid.size: sizes},
                          **common)

    sizes, budgets = sorted({d for d, _ in fitted + held}), sorted({s for _, s in fitted + held})
    if len(fitted) + len(held) == len(sizes) * len(budgets):  # the groups fill a product grid: one sweep
        specs = {"all": sweep(sizes, budgets)}
        held = []
    else:
        specs = {"fit": sweep(sorted({d for d, _ in fitted}), sorted({s for _, s in fitted}))}
    for d, s in held:
        specs[f"held-{d}-{s}"] = sweep([d], [s])
    return {k: replace(v, description=f"{claim} claim ({tier}, {k}): {grid.model}, LR x {grid.size} x budget")
            for k, v in specs.items()}


ORACLE_GRIDS: dict[str, Callable[..., SweepSpec]] = {"oracle-mlp": oracle_mlp, "oracle-lm": oracle_lm}
