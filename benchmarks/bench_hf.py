"""Training-step time of a parametrized Hugging Face Llama vs the same model unparametrized.

``LlamaForCausalLM`` from a config (GQA, SwiGLU, RoPE, SDPA attention), AdamW, next-byte loss, one thread. Peers,
timed in interleaved rounds in one process:

* ``parametrized``: ``dl.parametrize(model, "completep", …)`` — forward hooks multiply every branch output
  (2 per layer), the embedding output and the head's input; the logit scale is an attribute HF already reads;
  ``dl.make_optimizer`` builds AdamW with per-role groups (LR, ε, λ factors);
* ``plain``: the identical architecture, no deeplimit, ``torch.optim.AdamW(model.parameters())`` (one group);
* ``hooks_only``: the parametrized model with the plain one-group AdamW — isolates what the hooks cost from
  what the extra optimizer groups cost.

Goal: parametrized / plain ≤ 1.02 (paired median over rounds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deeplimit as dl
from benchmarks.common import interleaved, paired_ratio
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


def run(quick: bool = False) -> dict:
    width, depth, batch, seq = (64, 2, 4, 32) if quick else (256, 4, 8, 128)
    repeats, number = (5, 2) if quick else (9, 3)
    lr = 2**-8
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (batch, seq + 1), generator=g)
    x, y = tokens[:, :-1], tokens[:, 1:]

    torch.manual_seed(0)
    ours = hf.build("llama", width, depth, heads=4, kv_heads=2)
    plan = dl.parametrize(ours, "completep", base_width=N0, base_depth=L0, optimizer="adamw")
    torch.manual_seed(0)
    plain = hf.build("llama", width, depth, heads=4, kv_heads=2)
    plain.load_state_dict({k: v for k, v in ours.state_dict().items() if ".deeplimit." not in k})
    torch.manual_seed(0)
    hooked = hf.build("llama", width, depth, heads=4, kv_heads=2)
    dl.parametrize(hooked, "completep", base_width=N0, base_depth=L0, optimizer="adamw")

    opt_ours = dl.make_optimizer(ours, plan, lr, weight_decay=0.1)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=0.1)
    opt_hooked = torch.optim.AdamW(hooked.parameters(), lr=lr, weight_decay=0.1)
    peers = {"parametrized": _step(ours, opt_ours, x, y), "plain": _step(plain, opt_plain, x, y),
             "hooks_only": _step(hooked, opt_hooked, x, y)}
    times = interleaved(peers, repeats=repeats, number=number, warmup=2)
    ratio = paired_ratio(times, "parametrized", "plain")
    hooks_ratio = paired_ratio(times, "hooks_only", "plain")
    return {
        "config": {"model": "LlamaForCausalLM", "width": width, "depth": depth, "batch": batch, "seq_len": seq,
                   "heads": 4, "kv_heads": 2, "optimizer": "adamw", "rule": "completep", "base": [N0, L0],
                   "hooks": _hooks(ours), "param_groups": len(opt_ours.param_groups)},
        "times": {k: {kk: vv for kk, vv in v.items() if kk != "samples_s"} for k, v in times.items()},
        "summary": {
            "step_ms": {k: round(v["median_s"] * 1e3, 2) for k, v in times.items()},
            "parametrized_over_plain": round(ratio, 4),
            "hooks_only_over_plain": round(hooks_ratio, 4),
            "goal": "parametrized / plain <= 1.02",
            "goal_met": ratio <= 1.02,
        },
    }
