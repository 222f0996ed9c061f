"""Training-step time of a parametrized Hugging Face Llama vs the same model unparametrized.

``LlamaForCausalLM`` from a config (GQA, SwiGLU, RoPE, SDPA attention), AdamW, next-byte loss, one thread. Peers,
timed in interleaved rounds in one process:

* ``parametrized``: ``dl.parametrize(model, "completep", …)`` — forward hooks multiply every branch output
  (2 per layer), the embedding output and the head's input; the logit scale is an attribute HF already reads;
  ``dl.make_optimizer`` builds AdamW with per-role groups (LR, ε, λ factors);
* ``plain``: the identical architecture, no deeplimit, ``torch.optim.AdamW(model.parameters())`` (one group);
* ``hooks_only``: the parametrized model with the plain one-group AdamW — isolates what the hooks cost from
  what the extra optimizer groups cost.

``parametrized`` and ``hooks_only`` compute the same logits (asserted equal before timing); ``plain`` has the same
weights but no multipliers, so it is a cost peer, not the same function. Timing: the one method of
``benchmarks.common``. Goal: parametrized / plain ≤ 1.02 (paired median over rounds, on this thread's CPU clock,
which a machine shared with other jobs does not inflate; wall-clock ratios are recorded beside it). A second, tiny
configuration prices one hook call, and a third (``moe``) times the same three peers on a tiny Mixtral
(``MixtralForCausalLM``: 4 experts, top-2, transformers' stacked 3-D expert tensors, which the plan gives
per-expert fans with no declarations), goal ≤ 1.02 as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deeplimit as dl
from benchmarks.common import assert_same_outputs, paired_ratio, paired_rounds
from deeplimit.scaling import hf

NAME = "hf"
N0, L0 = 64, 2


def _step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten()).backward()
        opt.step()
    return step


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# family → (transformers class, config overrides); the MoE is tiny: 4 experts, top-2, expert MLPs of 2 × width
FAMILIES = {"llama": ("LlamaForCausalLM", {}),
            "mixtral": ("MixtralForCausalLM", {"num_local_experts": 4, "num_experts_per_tok": 2})}


def _peers(width: int, depth: int, batch: int, seq: int, family: str = "llama") -> tuple[dict, dict]:
    lr = 2**-8
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (batch, seq + 1), generator=g)
    x, y = tokens[:, :-1], tokens[:, 1:]
    cls, extra = FAMILIES[family]
    extra = {**extra, "intermediate_size": 2 * width} if family == "mixtral" else extra

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return hf.build(family, width, depth, heads=4, kv_heads=2, **extra)

    ours = build()
    plan = dl.parametrize(ours, "completep", base_width=N0, base_depth=L0, optimizer="adamw")
    plain = build()
    plain.load_state_dict({k: v for k, v in ours.state_dict().items() if ".deeplimit." not in k})
    hooked = build()
    dl.parametrize(hooked, "completep", base_width=N0, base_depth=L0, optimizer="adamw")

    opt_ours = dl.make_optimizer(ours, plan, lr, weight_decay=0.1)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=0.1)
    opt_hooked = torch.optim.AdamW(hooked.parameters(), lr=lr, weight_decay=0.1)
    with torch.no_grad():
        assert_same_outputs({"parametrized": ours(x).logits, "hooks_only": hooked(x).logits})
    peers = {"parametrized": _step(ours, opt_ours, x, y), "plain": _step(plain, opt_plain, x, y),
             "hooks_only": _step(hooked, opt_hooked, x, y)}
    config = {"model": cls, **extra, "width": width, "depth": depth, "batch": batch, "seq_len": seq, "heads": 4,
              "kv_heads": 2, "optimizer": "adamw", "rule": "completep", "base": [N0, L0],
              "hooks": _hooks(ours), "param_groups": len(opt_ours.param_groups)}
    return peers, config


def _measure(peers: dict, repeats: int, number: int) -> tuple[dict, dict]:
    times = paired_rounds(peers, repeats=repeats, number=number, warmup=2)
    summary = {"step_ms_cpu": {k: round(v["median_s"] * 1e3, 3) for k, v in times.items()},
               "step_ms_wall": {k: round(v["wall_median_s"] * 1e3, 3) for k, v in times.items()}}
    for clock in ("cpu", "wall"):
        summary[f"parametrized_over_plain_{clock}"] = round(paired_ratio(times, "parametrized", "plain", clock), 4)
        summary[f"hooks_only_over_plain_{clock}"] = round(paired_ratio(times, "hooks_only", "plain", clock), 4)
    return times, summary


def run(quick: bool = False) -> dict:
    # Peers train on for hundreds of steps and their numbers drift apart; subnormal floats would make one of
    # them slower for reasons that have nothing to do with deeplimit.
    torch.set_flush_denormal(True)
    # "main": a training step where compute dominates, for the goal; "overhead": a step so small that the
    # hooks' fixed Python cost shows, to price one hook call.
    sizes = {"main": (64, 2, 4, 32) if quick else (256, 4, 8, 128), "overhead": (64, 8, 1, 16),
             "moe": (64, 2, 4, 32, "mixtral") if quick else (256, 4, 8, 128, "mixtral")}
    if quick:
        sizes["overhead"] = (64, 2, 1, 8)
    repeats = {"main": (3, 1) if quick else (25, 1), "overhead": (3, 2) if quick else (25, 10),
               "moe": (3, 1) if quick else (25, 1)}
    record: dict = {"configs": {}, "times": {}, "summary": {},
                    "settings": {name: {"rounds": r, "steps_per_round": n, "warmup_steps": 2}
                                 for name, (r, n) in repeats.items()}}
    for name, size in sizes.items():
        peers, config = _peers(*size)
        times, summary = _measure(peers, *repeats[name])
        record["configs"][name], record["times"][name], record["summary"][name] = config, times, summary
    # paired ratio × the plain step: drift between rounds cancels, unlike a difference of two medians
    over = record["summary"]["overhead"]
    hook_ms = (over["hooks_only_over_plain_cpu"] - 1.0) * over["step_ms_cpu"]["plain"]
    record["summary"]["hook_cost_us_per_call"] = round(1e3 * hook_ms / record["configs"]["overhead"]["hooks"], 1)
    ratio = record["summary"]["main"]["parametrized_over_plain_cpu"]
    record["summary"].update(goal="parametrized / plain <= 1.02 (main, CPU clock)", goal_met=ratio <= 1.02)
    moe = record["summary"]["moe"]["parametrized_over_plain_cpu"]
    record["summary"].update(goal_moe="parametrized / plain <= 1.02 (moe, CPU clock)", goal_moe_met=moe <= 1.02)
    return record
