"""Tune the learning rate of a small Hugging Face Llama at width 64, use it 8× wider (μP) and 8× deeper (CompleteP).

    python examples/hf_llama_transfer.py            # the table in docs/hf.md (about an hour on one core)
    python examples/hf_llama_transfer.py --quick    # what CI runs: two LRs, tiny sizes, seconds

The model is ``LlamaForCausalLM`` built from a config (GQA, RMSNorm, SwiGLU, RoPE; no download) and parametrized
with no declarations: ``dl.parametrize`` finds its blocks, branches, embeddings, head and attention scale. It
trains on bytes of Shakespeare (``deeplimit.data``) with AdamW; every run of a grid sees the same batches.

For each rule the LR is swept at the base shape (width 64, 2 layers) and at the 8× shape; η* is the LR with the
lowest held-out loss. The transfer claim is that η*(base) is (near) optimal at 8×: its loss there is within a
few hundredths of a nat of the best one. SP is the contrast: its η* moves with width and the base optimum
costs loss (or diverges) at 8×.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import deeplimit as dl
from deeplimit.data import ByteCorpus, find_shakespeare_tarball
from deeplimit.scaling import hf

BASE_WIDTH, BASE_DEPTH = 64, 2


def train_once(rule: str, width: int, depth: int, log2_lr: float, seed: int, corpus: ByteCorpus, *, steps: int,
               batch: int, seq_len: int) -> float:
    """Train one Llama with ``rule`` at base LR 2**log2_lr; return the held-out loss (nats/byte), inf if diverged."""
    torch.manual_seed(seed)
    model = hf.build("llama", width, depth, heads=4, kv_heads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the base shape is stated; the notes are in the plan table
        plan = dl.parametrize(model, rule, base_width=BASE_WIDTH, base_depth=BASE_DEPTH, optimizer="adamw",
                              seed=seed)
    opt = dl.make_optimizer(model, plan, lr=2.0**log2_lr, weight_decay=0.0)
    data = torch.Generator().manual_seed(1000 + seed)  # the same batches for every LR, width and depth
    model.train()
    for _ in range(steps):
        x, y = corpus.get_batch("train", batch, seq_len, data)
        loss = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        if not torch.isfinite(loss):
            return math.inf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    held = torch.Generator().manual_seed(7)
    model.eval()
    with torch.no_grad():
        losses = []
        for _ in range(4):
            x, y = corpus.get_batch("held_out", batch, seq_len, held)
            losses.append(F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten()).item())
    value = sum(losses) / len(losses)
    return value if math.isfinite(value) else math.inf


def sweep(rule: str, width: int, depth: int, grid: list[float], seeds: int, corpus: ByteCorpus, **kw) -> dict:
    """Mean held-out loss over seeds for every log2 LR of ``grid``."""
    return {lr: sum(train_once(rule, width, depth, lr, s, corpus, **kw) for s in range(seeds)) / seeds
            for lr in grid}


def best(losses: dict) -> float:
    return min(losses, key=losses.get)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and two LRs (CI)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    corpus = ByteCorpus.load("shakespeare" if find_shakespeare_tarball() else "stdlib")
    if args.quick:
        grid, seeds, kw, mult = [-8.0, -6.0], 1, dict(steps=3, batch=2, seq_len=16), 2
    else:
        grid = [-10.0, -9.0, -8.0, -7.0, -6.0, -5.0, -4.0]
        seeds, kw, mult = args.seeds, dict(steps=args.steps, batch=8, seq_len=64), 8
    cases = [("mup", "width"), ("sp", "width"), ("completep", "depth"), ("sp", "depth")]
    rows = []
    for rule, axis in cases:
        big = (BASE_WIDTH * mult, BASE_DEPTH) if axis == "width" else (BASE_WIDTH, BASE_DEPTH * mult)
        base = sweep(rule, BASE_WIDTH, BASE_DEPTH, grid, seeds, corpus, **kw)
        scaled = sweep(rule, *big, grid, seeds, corpus, **kw)
        eta0, eta1 = best(base), best(scaled)
        row = {"rule": rule, "axis": axis, "base": [BASE_WIDTH, BASE_DEPTH], "scaled": list(big),
               "log2_lr_star_base": eta0, "log2_lr_star_scaled": eta1,
               "loss_at_transferred_lr": scaled[eta0], "best_loss_scaled": scaled[eta1],
               "regret": scaled[eta0] - scaled[eta1], "losses_base": base, "losses_scaled": scaled}
        rows.append(row)
        print(f"{rule:9s} over {axis}: base {BASE_WIDTH}x{BASE_DEPTH} eta*=2^{eta0:g}; {big[0]}x{big[1]} "
              f"eta*=2^{eta1:g}; loss there at the transferred LR {scaled[eta0]:.3f} vs best {scaled[eta1]:.3f} "
              f"(regret {scaled[eta0] - scaled[eta1]:+.3f} nats/byte)", flush=True)
        print("    log2 lr  " + "  ".join(f"{lr:6g}" for lr in grid))
        print("    base     " + "  ".join(f"{base[lr]:6.3f}" for lr in grid))
        print("    scaled   " + "  ".join(f"{scaled[lr]:6.3f}" for lr in grid), flush=True)
    wall = time.perf_counter() - t0
    print(f"corpus {corpus.name}, {seeds} seed(s), {kw['steps']} steps of {kw['batch']}x{kw['seq_len']} bytes; "
          f"wall {wall:.0f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from deeplimit.io import atomic_write_json

        atomic_write_json(out / "hf_llama_transfer.json",
                          {"rows": [{**r, "losses_base": {str(k): v for k, v in r["losses_base"].items()},
                                     "losses_scaled": {str(k): v for k, v in r["losses_scaled"].items()}}
                                    for r in rows], "seeds": seeds, **kw, "wall_s": wall, "corpus": corpus.name},
                          default=float)


if __name__ == "__main__":
    main()
