"""Benchmark tables in the docs are rendered from their records (``scripts/bench_docs.py``): a page and its record
must agree, and every block names its record and the commit it was measured at."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_docs", ROOT / "scripts" / "bench_docs.py")
bench_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_docs)


def _blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in bench_docs.BLOCK.finditer(text)}


def test_every_page_agrees_with_its_records():
    """Regenerate each page in memory from benchmarks/results: any hand-edited or stale number fails here."""
    stale = bench_docs.stale_pages()
    assert not stale, f"{stale}: run `python scripts/bench_docs.py` (make docs) after refreshing a record"


def test_the_benchmark_pages_hold_every_block_and_each_names_its_record():
    page = _blocks((ROOT / "docs" / "benchmarks.md").read_text())
    assert set(page) == {"bench_scaling", "bench_muon", "bench_attention", "bench_sweep", "bench_sde"}
    assert "bench_hf" in _blocks((ROOT / "docs" / "hf.md").read_text())
    for name, body in page.items():
        record = name.removeprefix("bench_")
        assert re.search(rf"Record: `benchmarks/results/{record}\.json`.*, commit", body), (name, body[-200:])


def test_a_changed_number_on_the_page_is_caught():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    body = _blocks(text)["bench_attention"]
    number = re.search(r"\| (\d+\.\d{3}) \|", body)[1]  # the first fused / SDPA ratio
    edited = text.replace(body, body.replace(number, f"{float(number) - 0.1:.3f}", 1))
    assert edited != text and bench_docs.render_page(edited) == text


def test_a_changed_record_is_caught(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    record = json.loads((results / "scaling.json").read_text())
    record["summary"]["ratio_deeplimit_over_plain"] += 0.25
    (results / "scaling.json").write_text(json.dumps(record))
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert bench_docs.render_page(text, results) != text
    assert f"{record['summary']['ratio_deeplimit_over_plain']:.4f}" in bench_docs.render_page(text, results)


def test_commit_and_date_are_shown_when_recorded_and_said_missing_when_not():
    assert bench_docs.provenance("x", {"commit": "abc1234", "date": "2026-12-07 04:00 UTC"}) == (
        "Record: `benchmarks/results/x.json`, commit abc1234, 2026-12-07 04:00 UTC, CPU not recorded.")
    assert "commit and date not recorded" in bench_docs.provenance("x", {})
    avx2 = {"environment": {"cpu": {"model": "AMD EPYC", "capability": "AVX2", "bf16_matmul": False}}}
    assert bench_docs.provenance("x", avx2).endswith("AMD EPYC (AVX2, no native bfloat16 matmuls).")
    assert "--quick" in bench_docs.provenance("x", {"quick": True, "commit": "a", "date": "d"})


def test_unknown_blocks_and_missing_records_are_named(tmp_path):
    with pytest.raises(bench_docs.StaleDocs, match="unknown generated block 'bench_nope'"):
        bench_docs.render_page("<!-- generated:bench_nope -->\n<!-- /generated -->\n")
    with pytest.raises(bench_docs.StaleDocs, match="python -m benchmarks muon"):
        bench_docs.render_page("<!-- generated:bench_muon -->\n<!-- /generated -->\n", tmp_path)


def test_the_readme_block_cites_every_record():
    """README.md's speed bullets can be a generated block (``bench_readme``); each bullet names its record."""
    text = bench_docs.render_page("x\n<!-- generated:bench_readme -->\nold\n<!-- /generated -->\ny\n")
    assert text.startswith("x\n<!-- generated:bench_readme -->\n- fused shaped attention") and "old" not in text
    for name in ("attention", "sde", "sweep", "scaling", "hf", "muon"):
        assert f"`{name}.json`, commit" in text, name
