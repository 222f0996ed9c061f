"""A Muon step through the plan (``dl.make_optimizer`` → CombinedOptimizer of torch Muon + AdamW) vs plain
``torch.optim.Muon`` + ``torch.optim.AdamW`` stepped by hand on the same model with the same groups.

Model: Depth-μP MLP-ResNet, width 256, 8 blocks, batch 128, base shape (64, 4), ``muon_lr_ratio`` 8. The plain
peer is a copy of the parametrized model (same forward) whose two optimizers get groups built by hand from the
formulas (hidden matrices: η·8·√(fan_out/fan_in)·m_L^{-½} ÷ torch's √max(1, A/B); input and readout on AdamW
with the μP Adam LR and ε). Two timings: a whole training step, and the optimizer step alone (gradients fixed).
Timing: the one method of ``benchmarks.common``. Goal: deeplimit / plain ≤ 1.02 for both.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

import deeplimit as dl
from benchmarks.common import assert_same_outputs, paired_ratio, paired_rounds

NAME = "muon"
D_IN, D_OUT, N0, L0, RATIO = 784, 10, 64, 4, 8.0


def _hand_made(model, width, depth, lr):
    """torch.optim.Muon + AdamW with the plan's groups written out by hand (no deeplimit in the step)."""
    mN, mL = width / N0, depth / L0
    hidden = [b.W[0].weight for b in model.blocks]
    muon = torch.optim.Muon([{"params": hidden, "lr": lr * RATIO * mL ** -0.5}], lr=lr, weight_decay=0.0,
                            adjust_lr_fn="original")
    adamw = torch.optim.AdamW([{"params": [model.input.weight, model.readout.weight], "lr": lr,
                                "eps": 1e-8 / mN, "weight_decay": 0.0}], lr=lr)
    return muon, adamw


def _train_step(model, steps, xb, yb):
    def step():
        for o in steps:
            o.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        for o in steps:
            o.step()
    return step


def _optimizer_step(model, steps, xb, yb):
    F.cross_entropy(model(xb), yb).backward()  # gradients stay; only the optimizer runs below

    def step():
        for o in steps:
            o.step()
    return step


def run(quick: bool = False) -> dict:
    width, depth, batch = (128, 4, 16) if quick else (256, 8, 128)
    lr = 2**-9
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.randn(batch, D_IN, generator=g), torch.randint(0, D_OUT, (batch,), generator=g)

    ours = dl.MLPResNet(d_in=D_IN, d_out=D_OUT, width=width, depth=depth)
    plan = dl.parametrize(ours, "depth_mup", base_width=N0, base_depth=L0, optimizer="muon", muon_lr_ratio=RATIO)
    plain = copy.deepcopy(ours)  # same multipliers in the forward, no deeplimit optimizer
    opt_ours = dl.make_optimizer(ours, plan, lr)
    muon, adamw = _hand_made(plain, width, depth, lr)
    # the hand-made groups are the plan's: same LR per tensor, and the same function
    ours_lr = {id(p): g["lr"] for g in opt_ours.param_groups for p in g["params"]}
    ours_names = {id(p): n for n, p in ours.named_parameters()}
    for o in (muon, adamw):
        for grp in o.param_groups:
            for p in grp["params"]:
                twin = dict(ours.named_parameters())[next(n for n, q in plain.named_parameters() if q is p)]
                assert math.isclose(grp["lr"], ours_lr[id(twin)], rel_tol=1e-12), ours_names[id(twin)]
    with torch.no_grad():
        assert_same_outputs({"deeplimit": ours(xb), "plain": plain(xb)})

    peers = {"deeplimit_train_step": _train_step(ours, [opt_ours], xb, yb),
             "plain_train_step": _train_step(plain, [muon, adamw], xb, yb)}
    # torch's Muon runs Newton–Schulz in bfloat16: on a CPU without native bf16 matmuls a full-size step takes
    # about a second, so the full record pairs 15 rounds of 2 steps (the ratio needs rounds, not long rounds)
    repeats, number = (3, 1) if quick else (15, 2)
    times = paired_rounds(peers, repeats=repeats, number=number, warmup=2)
    ours_b, plain_b = copy.deepcopy(ours), copy.deepcopy(plain)
    opt_b = dl.make_optimizer(ours_b, dl.make_plan(ours_b, "depth_mup", base_width=N0, base_depth=L0,
                                                   optimizer="muon", muon_lr_ratio=RATIO), lr)
    step_peers = {"deeplimit_optimizer_step": _optimizer_step(ours_b, [opt_b], xb, yb),
                  "plain_optimizer_step": _optimizer_step(plain_b, list(_hand_made(plain_b, width, depth, lr)),
                                                          xb, yb)}
    times.update(paired_rounds(step_peers, repeats=repeats, number=number, warmup=2))
    summary = {f"{k}_ms": round(v["median_s"] * 1e3, 3) for k, v in times.items()}
    summary["ratio_train_step"] = round(paired_ratio(times, "deeplimit_train_step", "plain_train_step"), 4)
    summary["ratio_optimizer_step"] = round(paired_ratio(times, "deeplimit_optimizer_step",
                                                         "plain_optimizer_step"), 4)
    for kind in ("train_step", "optimizer_step"):
        summary[f"ratio_of_medians_{kind}"] = round(times[f"deeplimit_{kind}"]["median_s"]
                                                    / times[f"plain_{kind}"]["median_s"], 4)
    summary["ratio"] = "median over rounds of the paired per-round ratio of thread CPU time (A B / B A order)"
    summary["goal_ratio_over_plain"] = 1.02
    record = {"config": {"width": width, "depth": depth, "batch": batch, "optimizer": "muon (+ AdamW)",
                         "rule": "depth_mup", "base": [N0, L0], "muon_lr_ratio": RATIO, "lr": lr},
              "settings": {"rounds": repeats, "steps_per_round": number, "warmup_steps": 2},
              "times": times, "summary": summary}
    return record
