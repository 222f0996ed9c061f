"""Try every Hugging Face family deeplimit was tried on: does ``dl.parametrize`` take it with no declarations, and
what do coordinate checks over width and depth say at the defaults?

``python scripts/hf_families.py`` (a few minutes on one core) writes ``benchmarks/results/hf_families.json``;
``python scripts/bench_docs.py`` (``make docs``) renders it into docs/hf.md's family table. ``--only llama gpt2``
runs a subset (written to ``--out``, never over the full record unless every family ran).

Per family: a tiny config (:func:`deeplimit.scaling.hf.tiny_config`: 4 heads, MLP 4×, vocab 256, dropout off) is
built at width 32 × depth 2 and planned with ``dl.make_plan(model, "mup", base_width=32, base_depth=2)``. A
:class:`DeeplimitError` is a refusal (its message recorded); anything else is recorded as an error. A family that
works gets two coordinate checks at the defaults — the model's own init σ's, default multipliers, no
declarations: μP over widths 32/64/128 (depth 2) and CompleteP over depths 2/4/8 (width 32), trained as
``deeplimit coord-check`` trains by default (10 Adam steps, lr 2⁻⁸, batch 16 × 32 bytes of Shakespeare — the
stdlib's source if it is not cached — or Fashion-MNIST for image models, seeds 0, 1, 2); its default sizes
(widths to 256, depths to 16) are cut to keep the script to minutes. Statistic: log2 slope per doubling of
RMS(x₁₀ − x₀) per site; the verdict is the CLI's (flat when every judged |slope| ≤ 0.25). The same check of SP
over width is the control: it must see SP grow, or a flat μP row would say nothing.
The only per-family settings are the ones a user must pass too (``PLAN_KW``: Falcon's SDPA keeps its own 1/√d)
and the MoE sizes (experts and their MLPs grow with width; 4 experts, top-2).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import deeplimit as dl  # noqa: E402
from deeplimit.data import find_shakespeare_tarball  # noqa: E402
from deeplimit.diagnostics.coordinates import coord_data, run_coord_check  # noqa: E402
from deeplimit.errors import DeeplimitError  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "hf_families.json"
WIDTHS, DEPTHS, WIDTH0, DEPTH0 = (32, 64, 128), (2, 4, 8), 32, 2
STEPS, BATCH, SEQ, LR, SEEDS = 10, 16, 32, 2**-8, 3


def _moe(experts_key: str, intermediate_key: str | None = None, **extra: int):
    """Config overrides of a tiny MoE at width w: 4 experts, top-2, expert MLPs of 2w (they grow with width)."""
    def at(width: int) -> dict:
        kw = {experts_key: 4, "num_experts_per_tok": 2, **extra}
        if intermediate_key:
            kw[intermediate_key] = 2 * width
        if "shared_expert_intermediate_size" in extra:
            kw["shared_expert_intermediate_size"] = 2 * width
        return kw
    return at


# model_type → config overrides as a function of width (MoE sizes), in the order of the table
FAMILIES: dict[str, object] = {
    "llama": None, "mistral": None, "qwen2": None, "qwen3": None, "phi3": None, "olmo2": None, "stablelm": None,
    "gemma": None, "gemma2": None, "gemma3_text": None, "cohere": None, "starcoder2": None, "gpt2": None,
    "gptj": None, "gpt_neox": None, "opt": None, "falcon": None, "bloom": None, "bert": None, "roberta": None,
    "vit": None,
    "mixtral": _moe("num_local_experts"),
    "qwen2_moe": _moe("num_experts", "moe_intermediate_size", shared_expert_intermediate_size=0),
    "qwen3_moe": _moe("num_experts", "moe_intermediate_size"),
    "olmoe": _moe("num_experts"),
    "mamba": None,
    "mamba2": lambda width: {"num_heads": 2 * width // 16, "head_dim": 16, "n_groups": 1},  # heads × dim = 2w
    "bart": None, "t5": None,
}
# what a user must pass for the family (recorded in the table): Falcon without ALiBi calls SDPA with its own
# 1/sqrt(d) scale, which the plan cannot change, so muP's 1/d is refused unless 1/sqrt(d) is kept explicitly
PLAN_KW = {"falcon": {"attn_scale": "sqrt"}}
SEQ2SEQ = {"t5"}


def factory(family: str):
    from deeplimit.scaling import hf

    extra = FAMILIES[family]

    def make(width: int, depth: int) -> torch.nn.Module:
        kw = extra(width) if callable(extra) else {}
        if family in SEQ2SEQ:  # hf.build makes causal/masked LMs and image classifiers; T5 is neither
            return hf.transformers_module().AutoModelForSeq2SeqLM.from_config(hf.tiny_config(family, width, depth,
                                                                                              **kw))
        return hf.build(family, width, depth, **kw)

    return make


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check(family: str, data: dict, rule: str, axis: str) -> dict:
    from deeplimit.scaling import hf

    make = factory(family)
    x, y = data[hf.input_kind(make(WIDTH0, DEPTH0))]
    sizes = WIDTHS if axis == "width" else DEPTHS
    t = time.process_time()
    r = run_coord_check(make, rule, x, y, axis=axis, sizes=list(sizes), width=WIDTH0, depth=DEPTH0,
                        seeds=SEEDS, steps=STEPS, lr=LR, batch_size=BATCH, **PLAN_KW.get(family, {}))
    v = r.verdict
    return {"rule": rule, "axis": axis, "sizes": list(sizes), "verdict": v.verdict,
            "slopes": {k: (None if math.isnan(s) else round(s, 3)) for k, s in v.slopes.items()},
            "judged": list(v.judged), "line": v.line(), "cpu_s": round(time.process_time() - t, 1)}


def try_family(family: str, data: dict) -> dict:
    """Build, plan and (if it works) coordinate-check one family; never raises for the family's own failures."""
    t = time.process_time()
    row: dict = {"family": family, "plan_kw": PLAN_KW.get(family, {})}
    try:
        torch.manual_seed(0)
        model = factory(family)(WIDTH0, DEPTH0)
        row["class"] = type(model).__name__
        plan = dl.make_plan(model, "mup", base_width=WIDTH0, base_depth=DEPTH0, **PLAN_KW.get(family, {}))
    except DeeplimitError as exc:
        row.update(status="refused", reason=_first_line(exc))
    except Exception as exc:  # noqa: BLE001 - recorded as it is: the table says "error", not "refused"
        row.update(status="error", reason=f"{type(exc).__name__}: {_first_line(exc)}")
    else:
        row.update(status="works", tensors=len(plan.params), family_of_plan=plan.family,
                   roles=sorted({p.role for p in plan.params.values()}))
        try:
            row["width"] = _check(family, data, "mup", "width")
            row["depth"] = _check(family, data, "completep", "depth")
            row["sp_width"] = _check(family, data, "sp", "width")  # the control: the same check must see SP grow
        except Exception as exc:  # noqa: BLE001 - a check that fails is part of the record
            row.update(status="check failed", reason=f"{type(exc).__name__}: {_first_line(exc)}")
    row["cpu_s"] = round(time.process_time() - t, 1)
    return row


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src",
                                "scripts/hf_families.py"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(FAMILIES), help="run these families only")
    ap.add_argument("--out", type=Path, default=None, help=f"record path (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    families = args.only or list(FAMILIES)
    out = args.out or (OUT if not args.only else ROOT / "runs" / "hf_families.json")
    torch.set_num_threads(1)
    import transformers

    transformers.logging.set_verbosity_error()
    corpus = "shakespeare" if find_shakespeare_tarball() is not None else "stdlib"
    n = BATCH * (STEPS + 2)
    data = {"tokens": coord_data(corpus, kind="tokens", n=n, seq_len=SEQ),
            "images": coord_data("fashion-mnist", kind="images", n=n)}
    rows, start, commit = [], time.time(), _commit()  # the code that runs is the code at the start
    for family in families:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = try_family(family, data)
        rows.append(row)
        checks = [row[a]["line"] for a in ("width", "depth", "sp_width") if a in row]
        print(f"{family:12s} {row['status']:8s} {row['cpu_s']:6.1f}s  " + (" | ".join(checks) or row.get("reason", "")),
              flush=True)
    record = {
        "script": "scripts/hf_families.py", "commit": commit,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "threads": torch.get_num_threads()},
        "settings": {"widths": list(WIDTHS), "depths": list(DEPTHS), "width": WIDTH0, "depth": DEPTH0,
                     "steps": STEPS, "batch": BATCH, "seq_len": SEQ, "lr": LR, "seeds": SEEDS, "corpus": corpus,
                     "images": "fashion-mnist", "width_rule": "mup", "depth_rule": "completep", "control_rule": "sp",
                     "threshold": 0.25, "stat": "delta_rms"},
        "wall_s": round(time.time() - start, 1), "families": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} ({record['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
