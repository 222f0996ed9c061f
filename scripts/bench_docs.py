"""Render the benchmark tables of the docs from their JSON records: ``python scripts/bench_docs.py`` (``make docs``).

A page holds a generated block between ``<!-- generated:NAME -->`` and ``<!-- /generated -->``; everything
between the two markers is replaced by ``BLOCKS[NAME]`` rendered from ``benchmarks/results/*.json``, and the rest
of the page (the prose) is left alone. Every block ends with the record it was read from and the commit and date
in that record ("not recorded" for records written before the runner stored them). ``--check`` writes nothing
and exits 1 naming every page whose blocks differ from their records (``tests/test_bench_docs.py`` does the same
in memory). ``hf_families`` is docs/hf.md's table of Hugging Face families, from the record
``scripts/hf_families.py`` writes. Pages: ``docs/benchmarks.md``, ``docs/hf.md``, ``docs/sde.md`` and
``README.md``; a page without markers is left as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = ("docs/benchmarks.md", "docs/hf.md", "docs/sde.md", "README.md")
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


class StaleDocs(Exception):
    """A page names a block that does not exist, or a record it needs is missing."""


def load(name: str, results: Path = RESULTS) -> dict:
    path = results / f"{name}.json"
    if not path.exists():
        raise StaleDocs(f"no record {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; run "
                        f"`python -m benchmarks {name}` to write it")
    return json.loads(path.read_text())


def provenance(name: str, record: dict) -> str:
    """``Record: `benchmarks/results/NAME.json`, commit C, DATE`` (or "not recorded" for older records)."""
    commit = record.get("commit")
    when = f"commit {commit}, {record['date']}" if commit else "commit and date not recorded"
    quick = " (a --quick smoke run)" if record.get("quick") else ""
    return f"Record: `benchmarks/results/{name}.json`{quick}, {when}, {machine(record)}."


def machine(record: dict) -> str:
    """The CPU a record was measured on: records from two CPUs are not comparable (benchmarks.common.cpu)."""
    cpu = record.get("environment", {}).get("cpu")
    if not cpu:
        return "CPU not recorded"
    bf16 = {True: ", native bfloat16 matmuls", False: ", no native bfloat16 matmuls"}.get(cpu.get("bf16_matmul"), "")
    return f"{cpu['model']} ({cpu['capability']}{bf16})"


def _clock(record: dict) -> str:
    # Records written before benchmarks/common.py stored its METHOD timed scaling and muon on the wall clock.
    return "thread CPU time" if "method" in record else "wall clock"


def _f(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def _ms(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.1f}" if x >= 100 else f"{x:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rounds(record: dict, peer_times: dict) -> str:
    settings = record.get("settings") or {}
    rounds = settings.get("rounds", peer_times.get("repeats"))
    number = settings.get("steps_per_round", peer_times.get("number"))
    return f"{rounds} rounds of {number} step{'s' if number != 1 else ''}"


# ---- one renderer per block ------------------------------------------------------------------------------------
def scaling(record: dict) -> str:
    s, c, t = record["summary"], record["config"], record["times"]
    peers = [("deeplimit", "deeplimit"), ("plain_torch", "plain PyTorch"), ("mup", "microsoft/mup"),
             ("hooked_structure", "foreign model + Structure (hooks)"), ("hooked_twin", "its hand-written twin")]
    rows = [[label, _ms(s.get(f"{k}_ms_per_step"))] for k, label in peers if f"{k}_ms_per_step" in s]
    ratios = [["deeplimit / plain", _f(s["ratio_deeplimit_over_plain"], 4), f"≤ {s['goal_ratio_over_plain']}"],
              ["hooked / twin", _f(s["ratio_hooked_over_twin"], 4), f"≤ {s['goal_ratio_over_plain']}"]]
    if "ratio_deeplimit_over_mup" in s:
        ratios.append(["deeplimit / mup", _f(s["ratio_deeplimit_over_mup"], 4), "—"])
    return "\n\n".join([
        f"Width {c['width']}, {c['depth']} blocks, batch {c['batch']}, {c['optimizer']}, rule {c['rule']} from base "
        f"{tuple(c['base'])}; {_rounds(record, t['deeplimit'])}; median ms per step and paired ratios on the "
        f"{_clock(record)}.",
        _table(["peer", "ms / step"], rows), _table(["ratio", "measured", "goal"], ratios),
        provenance("scaling", record)])


def muon(record: dict) -> str:
    s, c, t = record["summary"], record["config"], record["times"]
    rows = [["deeplimit ms", _ms(s["deeplimit_train_step_ms"]), _ms(s["deeplimit_optimizer_step_ms"])],
            ["plain ms", _ms(s["plain_train_step_ms"]), _ms(s["plain_optimizer_step_ms"])],
            ["deeplimit / plain (paired)", _f(s["ratio_train_step"], 4), _f(s["ratio_optimizer_step"], 4)],
            ["ratio of medians", _f(s["ratio_of_medians_train_step"], 4), _f(s["ratio_of_medians_optimizer_step"], 4)]]
    return "\n\n".join([
        f"Width {c['width']}, {c['depth']} blocks, batch {c['batch']}, {c['optimizer']}, `muon_lr_ratio` "
        f"{c['muon_lr_ratio']:g}; {_rounds(record, t['deeplimit_train_step'])}, {_clock(record)}; goal ≤ "
        f"{s['goal_ratio_over_plain']}.",
        _table(["", "train step", "optimizer step"], rows), provenance("muon", record)])


def attention(record: dict) -> str:
    s = record["summary"]
    rows = []
    for r in record["rows"]:
        ms, mem = r["median_cpu_ms"], r["peak_extra_MiB"]
        peak = " / ".join(_f(mem.get(k), 1) for k in ("sdpa", "fused", "reference"))
        scan = r.get("fused_scan_over_sdpa")
        rows.append([str(r["m"]), r.get("fused_path", "—"), _ms(ms["sdpa"]), _ms(ms["fused"]),
                     _f(r["fused_over_sdpa"]), _f(r["fused_over_sdpa_wall_paired"]),
                     "—" if scan is None else _f(scan), _ms(ms["reference"]), peak])
    met = "met" if s["goal_met"] else "not met"
    worst = s["worst_fused_over_sdpa"]
    return "\n\n".join([
        f"{s['setting']}; ratio = {s['ratio_clock']} (wall-clock paired ratio beside it). Path: the form the fused "
        "kernel took at that length; O(m·d) path / SDPA: the running-sum path timed beside a dense one.",
        _table(["m", "path", "SDPA ms", "fused ms", "fused / SDPA", "(wall)", "O(m·d) path / SDPA", "reference ms",
                "peak MiB SDPA / fused / reference"], rows),
        f"Goal {s['goal']}: **{met}** (worst {worst['ratio']:.3f} at m = {worst['m']}).",
        provenance("attention", record)])


def sweep(record: dict) -> str:
    s = record["summary"]
    goal_book = s["goal_bookkeeping_le_1pct_of_10s_trial"]
    rows = [
        [f"bookkeeping per trial, ≈ {s['trial_s_long']:g} s trials",
         f"{s['bookkeeping_ms_per_trial_long']:g} ms = **{s['bookkeeping_pct_of_long_trial']:g} %**",
         "≤ 1 % of a 10 s trial" + ("" if goal_book is None else f" ({'met' if goal_book else 'not met'})")],
        [f"bookkeeping per trial, ≈ {s['trial_s_short']:g} s trials",
         f"{s['bookkeeping_ms_per_trial_short']:g} ms = {s['bookkeeping_pct_of_short_trial']:g} %", "(reported)"],
        ["trials/hour, 2 workers vs 1", f"{s['speedup_2_vs_1']:g}× ({s['trials_per_hour_2_workers']:,.0f} vs "
         f"{s['trials_per_hour_1_worker']:,.0f})", f"≥ 1.8× ({'met' if s['goal_speedup_ge_1_8'] else 'not met'})"],
        ["the same work in two bare processes (the machine's ceiling then)",
         f"{s['raw_processes_speedup_2_vs_1']:g}×", "—"],
        ["runner speed-up / bare speed-up (`engine_vs_raw_scaling`)", f"{s['engine_vs_raw_scaling']:g}", "—"],
    ]
    load = f"load average {s['loadavg_before'][0]:g} before, {s['loadavg_after'][0]:g} after; Optuna {s['optuna']}"
    return "\n\n".join([_table(["", "measured", "goal"], rows), load + ".", provenance("sweep", record)])


def _x(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"


def sde(record: dict) -> str:
    # records written before benchmarks/common.py's method took the ratio of the medians of 3 rounds
    how = "the median of paired per-round ratios" if "method" in record else "a ratio of medians (3 rounds)"
    peer_rows = []
    for key, row in record["peers"].items():
        rate = [f"{row[p]['paths_steps_per_s']:,.0f}" for p in ("ours", "ours_f32_noise", "torchsde", "naive_eig")]
        peer_rows.append([key.split("=")[1], f"{row['paths']} × {row['steps']}", *rate,
                          f"{_x(row['speedup_vs_torchsde'])} ({_x(row['speedup_f32_noise_vs_torchsde'])})",
                          f"{_x(row['speedup_vs_naive_eig'])} ({_x(row['speedup_f32_noise_vs_naive_eig'])})"])
    flop_rows = [[key.split("=")[1], f"{f['paths']} × {f['steps']}", f"{f['h']:.3g}",
                  _f(f["runs"]["float64"]["wall_s"], 1), _f(f["runs"]["float32"]["wall_s"], 1),
                  f"{100 * f['fraction_of_matmul']:.0f} %", f"{f['matmul_gflops']:.1f}"]
                 for key, f in record["flops"].items()]
    net_rows = [[key.split("=")[1], *(_f(v["us_per_path_layer"], 1) for v in row.values())]
                for key, row in record["network"].items()]
    net_cols = list(next(iter(record["network"].values())))
    goals = ", ".join(f"{k}: {'met' if v else 'not met'}" for k, v in record["summary"]["goals_met"].items())
    return "\n\n".join([
        f"Scenario: {record['scenario']}. Paths·steps per second (one thread), and ours' speed-up (with float32 "
        f"noise draws in brackets) as {how}:",
        _table(["m", "paths × steps", "ours", "ours, f32 noise", "torchsde", "naive p×p eig", "vs torchsde",
                "vs naive"], peer_rows),
        "Large m (ours alone; **step h = 1/(160 κ_lin m)**, smaller than the peers' 0.01, at which paths leave the "
        "PSD cone there), and the FLOP rate of one step against the faster plain batched-matmul loop timed in the "
        "same run:",
        _table(["m", "paths × steps", "h", "float64 s", "float32 s", "of matmul FLOP rate", "matmul GFLOP/s"],
               flop_rows),
        "SDE vs finite-network sampling (block, m = 3), µs per path per layer:",
        _table(["n", *net_cols], net_rows),
        f"Goals: {goals}.", provenance("sde", record)])


def hf(record: dict) -> str:
    rows = []
    for name in ("main", "overhead", "moe"):
        if name not in record["configs"]:  # records written before the MoE step was added
            continue
        c, s = record["configs"][name], record["summary"][name]
        ms = s["step_ms_cpu"]
        moe = (f"{c['model']}, {c['num_local_experts']} experts, top-{c['num_experts_per_tok']}, "
               if name == "moe" else "")
        rows.append([f"{name}: {moe}width {c['width']}, {c['depth']} layers, {c['batch']}×{c['seq_len']} tokens "
                     f"({c['hooks']} hooks, {c['param_groups']} AdamW groups)",
                     _ms(ms["parametrized"]), _ms(ms["plain"]), _ms(ms["hooks_only"]),
                     f"{s['parametrized_over_plain_cpu']:.4f} (wall {s['parametrized_over_plain_wall']:.4f})",
                     f"{s['hooks_only_over_plain_cpu']:.4f} (wall {s['hooks_only_over_plain_wall']:.4f})"])
    sm = record["summary"]
    return "\n\n".join([
        _table(["configuration (ms per step, thread CPU time)", "parametrized", "plain", "hooks only",
                "parametrized / plain", "hooks only / plain"], rows),
        f"One hook call (forward multiply and its backward node): {sm['hook_cost_us_per_call']:g} µs"
        + (" (negative: the hooked step ran faster than plain, i.e. the cost is below this run's noise)"
           if sm["hook_cost_us_per_call"] < 0 else "") + ". Goal "
        f"{sm['goal']}: **{'met' if sm['goal_met'] else 'not met'}**"
        + (f"; {sm['goal_moe']}: **{'met' if sm['goal_moe_met'] else 'not met'}**" if "goal_moe" in sm else "")
        + ".", provenance("hf", record)])


def _slope(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}".replace("-", "−")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def hf_families(record: dict) -> str:
    """docs/hf.md's family table from ``benchmarks/results/hf_families.json`` (scripts/hf_families.py)."""
    st = record["settings"]
    rows = []
    for r in record["families"]:
        kw = ", ".join(f"{k}={v!r}" for k, v in r.get("plan_kw", {}).items())
        if r["status"] != "works":
            rows.append([f"`{r['family']}`", r.get("class", "—"), f"**{r['status']}**" + (f" ({kw})" if kw else ""),
                         "—", "—", "—", _short(r.get("reason", "")).replace("|", "\\|")])
            continue

        def cell(check: dict) -> str:
            sl = " / ".join(_slope(check["slopes"].get(k)) for k in ("input", "block_first", "block_last", "logits"))
            return f"{sl}: {check['verdict']}"

        sp = cell(r["sp_width"]) if "sp_width" in r else "—"
        rows.append([f"`{r['family']}`", r["class"], "works" + (f" ({kw})" if kw else ""), cell(r["width"]),
                     cell(r["depth"]), sp, ""])
    works = sum(r["status"] == "works" for r in record["families"])
    return "\n\n".join([
        f"{len(record['families'])} families tried, {works} work with no declarations. Slopes: log2 of RMS(x_t − x_0) "
        f"per doubling, input / first block / final stream / logits, after {st['steps']} Adam steps (lr "
        f"2^{math.log2(st['lr']):g}, batch {st['batch']} × {st['seq_len']}, {st['corpus']} bytes or Fashion-MNIST, "
        f"{st['seeds']} seeds): {st['width_rule']} over widths {'/'.join(map(str, st['widths']))} (depth "
        f"{st['depth']}), {st['depth_rule']} over depths {'/'.join(map(str, st['depths']))} (width {st['width']}); "
        f"flat is every judged |slope| ≤ {st['threshold']:g} (over depth the first block is not judged). The "
        f"control runs the width check on SP, which must grow.",
        _table(["family", "class", "status", f"{st['width_rule']} over width", f"{st['depth_rule']} over depth",
                f"control: {st.get('control_rule', 'sp')} over width", "why refused"], rows),
        f"Record: `benchmarks/results/hf_families.json`, commit {record['commit']}, {record['date']} "
        f"({record['wall_s']:.0f} s; `python scripts/hf_families.py`; the full refusal messages are in the record)."])


def readme(results: Path = RESULTS) -> str:
    """The README's speed bullets, one per record, each naming it."""
    att, sd, sw = load("attention", results), load("sde", results), load("sweep", results)
    sc, hfr, mu = load("scaling", results), load("hf", results), load("muon", results)

    def cite(name: str, r: dict) -> str:
        return f"`{name}.json`, " + (f"commit {r['commit']}" if r.get("commit") else "commit not recorded")

    ratios = att["summary"]["fused_over_sdpa"]
    last = att["rows"][-1]
    mem = last["peak_extra_MiB"]
    mem_text = (f", and needs {mem['fused']:.0f} MiB instead of {mem['reference']:.0f} MiB at m = {last['m']} "
                "against the materialising form") if mem.get("fused") and mem.get("reference") else ""
    s = sd["summary"]
    f128 = sd["flops"].get("m=128")
    large = (f"; runs {s['m128_run']} at m = 128 (step h = {f128['h']:.2g}) in {s['m128_run_s']:.0f} s "
             f"({100 * s['m128_fraction_of_matmul_flops']:.0f}% of the machine's matmul FLOP rate)") if f128 else ""
    w = sw["summary"]
    lines = [
        f"- fused shaped attention costs {min(ratios.values()):.2f}–{max(ratios.values()):.2f}× PyTorch's "
        f"`scaled_dot_product_attention` for forward+backward at m = {att['rows'][0]['m']}…{last['m']}{mem_text} "
        f"({cite('attention', att)});",
        f"- the SDE solver is {s['m8_speedup_vs_torchsde']:.0f}× torchsde and {s['m8_speedup_vs_naive_eig']:.0f}× "
        f"the p×p-eigendecomposition step at m = 8{large} ({cite('sde', sd)});",
        f"- sweep bookkeeping costs {w['bookkeeping_ms_per_trial_long']:g} ms per trial, "
        f"{w['bookkeeping_pct_of_long_trial']:g}% of a {w['trial_s_long']:g} s trial "
        f"({w['bookkeeping_pct_of_short_trial']:g}% of a {w['trial_s_short']:g} s one); two workers give "
        f"{w['speedup_2_vs_1']:g}× the trials/hour of one (bare processes: {w['raw_processes_speedup_2_vs_1']:g}×; "
        f"{cite('sweep', sw)});",
        f"- a parametrized MLP-ResNet step costs {sc['summary']['ratio_deeplimit_over_plain']:.3f}× the identical "
        f"plain PyTorch one ({cite('scaling', sc)}), a parametrized Hugging Face Llama step "
        f"{hfr['summary']['main']['parametrized_over_plain_cpu']:.3f}× the unparametrized one ({cite('hf', hfr)}), "
        f"a Muon step through the plan {mu['summary']['ratio_train_step']:.3f}× plain `torch.optim.Muon` + AdamW "
        f"({cite('muon', mu)}).",
    ]
    return "\n".join(lines)


BLOCKS: dict[str, Callable[..., str]] = {
    "bench_scaling": lambda res: scaling(load("scaling", res)),
    "bench_muon": lambda res: muon(load("muon", res)),
    "bench_attention": lambda res: attention(load("attention", res)),
    "bench_sweep": lambda res: sweep(load("sweep", res)),
    "bench_sde": lambda res: sde(load("sde", res)),
    "bench_hf": lambda res: hf(load("hf", res)),
    "hf_families": lambda res: hf_families(load("hf_families", res)),
    "bench_readme": readme,
}


def render_page(text: str, results: Path = RESULTS) -> str:
    """``text`` with every generated block re-rendered from the records in ``results``."""
    def sub(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise StaleDocs(f"unknown generated block {name!r}; known: {', '.join(sorted(BLOCKS))}")
        return f"{match.group(1)}{BLOCKS[name](results).rstrip()}\n{match.group(4)}"
    return BLOCK.sub(sub, text)


def stale_pages(root: Path = ROOT, results: Path = RESULTS) -> list[str]:
    """Pages (relative paths) whose generated blocks differ from what their records render."""
    out = []
    for rel in PAGES:
        path = root / rel
        if path.exists():
            text = path.read_text()
            if render_page(text, results) != text:
                out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    try:
        stale = stale_pages()
    except StaleDocs as e:
        print(f"bench_docs: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        for rel in stale:
            print(f"{rel}: generated blocks differ from benchmarks/results; run `python scripts/bench_docs.py`")
        return 1 if stale else 0
    for rel in stale:
        path = ROOT / rel
        path.write_text(render_page(path.read_text()))
        print(f"rewrote the generated blocks of {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
