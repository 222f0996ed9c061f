"""A tiny version of the whole main job: every section runs, none fails, the report embeds its figures; a
section that crashes is "failed" and the command exits non-zero; secrets never reach the report."""

import re

import pytest

from deeplimit.cli import main
from deeplimit.report.reproduce import SECTIONS, reproduce


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("reproduce")
    # one sweep worker: what is checked here is the report, and a second worker process per sweep section costs a
    # torch import each (parallel workers are tested by tests/test_sweep_fault.py and examples/transfer_sweep.py)
    rep = reproduce(out, tier="smoke", workers=1)
    # Keep the whole report (HTML and JSON) as first written: a later test re-runs some sections into the same
    # folder, which rewrites report.html/json with only those sections.
    keep = tmp_path_factory.mktemp("first-report")
    for name in ("report.html", "report.json"):
        shutil.copy(rep.path.with_name(name), keep / name)
    rep.first = keep / "report.html"
    return rep, out


@pytest.fixture(scope="module")
def full_report(report):
    return report[0].first


def test_every_section_runs_and_reports_a_computed_verdict(report):
    rep, _ = report
    html = rep.first.read_text()  # later tests re-run some sections into the same folder
    assert rep.failed == []
    titles = re.findall(r'<h2 id="s\d+">(.*?) <span class="verdict"', html)
    assert len(titles) >= len(SECTIONS)
    assert "class='err'" not in html, re.findall(r"<p class='err'>(.*?)</p>", html, re.S)[:1]
    assert html.count("data:image/png;base64,") >= len(SECTIONS)
    assert html.count("We measured:") == len(titles)


def test_the_lm_oracle_section_runs_at_smoke_and_decides_nothing(report):
    """The full-tier-only claim ``oracle-lm`` still runs in CI: its smoke grid, one seed, nothing decided."""
    rep, out = report
    sec = next(s for s in rep.sections if s.key == "oracle-lm")
    assert sec.verdict == "inconclusive", sec.reason  # one seed: no per-seed interval, nothing is decided
    assert "byte-level LM" in sec.title
    assert (out / "smoke" / "tables" / "oracle_lm_runs.csv").is_file()
    assert re.search(r"\d+ runs", sec.measured) and "oracle_lm_runs.csv" in sec.command
    assert "this tier: fitted (depth, samples) [(1, 32)" in sec.scale_gap


def _trials(storage: str) -> int:
    import optuna

    return sum(s.n_trials for s in optuna.get_all_study_summaries(storage))


def test_rerun_resumes_from_the_cache(report):
    """Cached sweeps and SDE tables: nothing is re-run — no sweep gains a trial and no cached result is
    rewritten (each is written only when it is computed)."""
    rep, out = report
    storage = f"sqlite:///{(out / 'smoke' / 'sweeps.db').resolve()}"
    cached = {p: p.stat().st_mtime_ns
              for d in ("sde", "feature-diversity") for p in (out / "smoke" / d).rglob("*.json")}
    trials = _trials(storage)
    assert cached and trials > 0
    again = reproduce(out, tier="smoke", workers=1, only=["depth-transfer", "sde", "feature-diversity"])
    assert "SDE vs finite network" in again.path.read_text() and again.failed == []
    assert _trials(storage) == trials
    assert {p: p.stat().st_mtime_ns for p in cached} == cached


def test_a_crashed_section_is_failed_in_red_the_others_complete_and_the_exit_is_non_zero(report, capsys):
    """A real section given an impossible setting crashes; the run goes on. (A count out of range, such as zero
    paths, is refused before anything runs: the setting here is one only the section itself can judge.) It runs
    into the first run's folder, so the sections around the crash render from its cache (recomputing them in a
    fresh folder cost ~10 s and tests nothing more: the cached path is the one a user's re-run takes)."""
    _, out = report
    rc = main(["reproduce", "--smoke", "-q", "--out", str(out), "--only", "sde", "stopping", "rank-collapse",
               "--set", "stopping.source=nope"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 section(s) failed: stopping" in captured.err
    html = (out / "smoke" / "report.html").read_text()
    verdicts = dict(re.findall(r'<h2 id="s\d+">(.*?) <span class="verdict" style="[^"]*">(.*?)</span>', html))
    assert verdicts["stopping"] == "failed"
    assert 'background:#a40e26">failed' in html  # red, not the grey of "inconclusive"
    assert "unknown source &#39;nope&#39;" in html or "unknown source 'nope'" in html
    others = {k: v for k, v in verdicts.items() if k != "stopping"}
    assert len(others) == 4 and all(v in ("holds", "partly", "does not hold", "inconclusive") for v in others.values())
    import json

    data = json.loads((out / "smoke" / "report.json").read_text())
    assert {s["key"]: s["verdict"] for s in data["sections"]}["stopping"] == "failed"


def test_an_unreachable_storage_fails_its_sections_and_the_password_stays_out_of_the_report(tmp_path, capsys):
    url = "postgresql://u:S3cretPW@127.0.0.1:1/db"
    rc = main(["reproduce", "--smoke", "-q", "--out", str(tmp_path), "--only", "depth-transfer", "--storage", url])
    captured = capsys.readouterr()
    assert rc == 1 and "S3cretPW" not in captured.out + captured.err
    html = (tmp_path / "smoke" / "report.html").read_text()
    assert ">failed</span>" in html and "S3cretPW" not in html and "postgresql://u:***@127.0.0.1:1/db" in html


def _argv_of(command: str) -> list[list[str]]:
    import shlex

    return [shlex.split(part) for part in command.split(" && ") if part.strip()]


def test_report_json_holds_provenance_and_every_section(full_report):
    import json

    from deeplimit.report.html import VERDICTS

    data = json.loads(full_report.with_name("report.json").read_text())  # strict JSON: no NaN
    prov = data["provenance"]
    assert prov["tier"] == "smoke" and prov["wall_s"] > 0
    assert re.fullmatch(r"[0-9a-f]{40}", prov["git"]["commit"] or "0" * 40)
    assert prov["git"]["dirty"] in (True, False, None)
    assert all(prov["versions"][k] for k in ("python", "torch", "numpy", "optuna"))
    assert prov["machine"]["cores"] >= 1 and prov["machine"]["torch_threads"] == 1
    assert set(prov["code"]) == {"sweep", "sde", "diagnostics"}
    keys = {s["key"] for s in data["sections"]}
    assert keys == set(SECTIONS)
    for s in data["sections"]:
        assert s["verdict"] in VERDICTS, s["verdict"]
        assert s["claim"] and s["measured"] and s["settings"], s["key"]
        assert s["rerun"].startswith(f"deeplimit reproduce --smoke --only {s['key']} --fresh")
        for c in s["controls"]:
            assert set(c) == {"name", "expectation", "measured", "passed"} and c["passed"] in (True, False, None)
    by_key = {s["key"]: s for s in data["sections"]}
    # one seed at the smoke tier: the sweep comparisons must not claim anything
    for key in ("depth-transfer", "activation", "block-depth", "width-transfer", "shaped-vs-preln"):
        assert by_key[key]["verdict"] == "inconclusive", (key, by_key[key]["verdict"])
    assert by_key["depth-transfer"]["scale_gap"] and "spec's full setting" in by_key["depth-transfer"]["scale_gap"]
    assert len(by_key["coord-check"]["controls"]) == 2 and len(by_key["shaped-vs-preln"]["controls"]) == 1
    html = full_report.read_text()
    assert "Negative controls:" in html and "Scale gap:" in html and prov["git"]["commit"] in html


def test_every_printed_command_parses_with_the_real_cli(full_report):
    """The 're-run with' and standalone commands in the report are commands the CLI accepts, not prose."""
    import json

    from deeplimit.cli import build_parser

    data = json.loads(full_report.with_name("report.json").read_text())
    seen = 0
    for s in data["sections"]:
        for command in (s["rerun"], s["command"]):
            for argv in _argv_of(command):
                assert argv[0] == "deeplimit", command
                parser = build_parser(argv[1])
                try:
                    _, extra = parser.parse_known_args(argv[1:])
                except SystemExit as exc:  # argparse's refusal: report which command
                    raise AssertionError(f"{s['key']}: {' '.join(argv)} is refused by the CLI") from exc
                assert not extra, (s["key"], argv, extra)
                seen += 1
    assert seen >= 2 * len(SECTIONS)


def test_a_printed_rerun_command_runs(full_report, tmp_path, capsys):
    import json

    sec = next(s for s in json.loads(full_report.with_name("report.json").read_text())["sections"]
               if s["key"] == "sde-convergence")  # any section's command: this one takes a second
    argv = _argv_of(sec["rerun"])[0][1:]
    argv[argv.index("--out") + 1] = str(tmp_path)
    assert main([*argv, "-q"]) == 0
    assert (tmp_path / "smoke" / "report.json").is_file()


def test_a_cache_is_reused_only_by_the_same_settings_and_code(tmp_path):
    from deeplimit.io import atomic_write_json
    from deeplimit.report.reproduce import _cached

    calls = []

    def compute(settings):
        calls.append(settings)
        summary = {"settings": settings, "n": len(calls)}
        atomic_write_json(tmp_path / "s.json", summary)
        return summary

    for settings, code, fresh, computed in [({"a": 1}, "abc", False, True),
                                            ({"a": 1}, "abc", False, False),  # same settings and code: reused
                                            ({"a": 1}, "def", False, True),  # the code changed
                                            ({"a": 2}, "def", False, True),  # the settings changed
                                            ({"a": 2}, "def", False, False),
                                            ({"a": 2}, "def", True, True)]:  # --fresh
        n = len(calls)
        _cached(tmp_path / "s.json", settings, lambda s=settings: compute(s), code=code, fresh=fresh)
        assert len(calls) == n + computed, (settings, code, fresh)


def _browser_or_skip():
    from browser import chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs Debian's chromium when apt is available)")


def test_the_report_opens_in_a_real_browser_every_image_loads_and_nothing_errs(full_report, tmp_path):
    _browser_or_skip()
    from browser import open_page

    shot = full_report.with_name("report-screenshot.png")  # kept beside the report, to be looked at
    page = open_page(full_report, shot)
    assert page.title.startswith("deeplimit")
    assert len(page.images) >= len(SECTIONS)
    broken = [i["alt"] for i in page.images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert not broken, broken
    assert all(i["alt"].startswith("figure: ") for i in page.images)
    assert page.errors == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one


def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    """The check above could fail: a page with a broken image and a script error is caught."""
    _browser_or_skip()
    from browser import open_page

    page_path = tmp_path / "bad.html"
    page_path.write_text("<!doctype html><title>bad</title><img alt='broken' src='data:image/png;base64,AAAA'>"
                         "<script>console.error('boom'); undefinedFunction();</script>")
    page = open_page(page_path, tmp_path / "bad.png", height=300)
    assert page.images[0]["naturalWidth"] == 0
    assert any("boom" in e for e in page.errors) and any("exception" in e for e in page.errors)


def test_the_cli_offers_every_section_of_the_report():
    """The CLI keeps its own list (building the parser must not import the report): it must not drift."""
    from deeplimit.cli import reproduce as cli_reproduce

    assert tuple(cli_reproduce.SECTIONS) == tuple(SECTIONS)


def test_the_progress_line_names_every_verdict_of_a_key_and_marks_the_extra_check():
    """``stopping`` yields the tallied trend claim and a cell-by-cell check outside the tally; the progress line
    once printed only the last one ("stopping: does not hold" while the claim held)."""
    from deeplimit.report.html import Section
    from deeplimit.report.reproduce import _verdict_line

    line = _verdict_line([Section(title="t", claim="c", verdict="holds"),
                          Section(title="m", claim="c", verdict="does not hold", counted=False)])
    assert line == "holds; does not hold (extra check, outside the tally)"


def test_the_stopping_trend_control_sees_a_trend_and_a_map_of_ties():
    import numpy as np
    import pandas as pd

    from deeplimit.report.reproduce import _monotone_share, _shuffled_shares

    gammas, taus = np.linspace(0.1, 1, 6), 2.0 ** np.arange(-3, 3)
    trend = pd.DataFrame([{"gamma": g, "tau0": t, "median_t": np.clip(0.5 - g + 0.1 * np.log2(t), 0, 1)}
                          for g in gammas for t in taus])
    assert _monotone_share(trend, 1.0) == 1.0
    assert np.quantile(_shuffled_shares(trend, 1.0, n=200), 0.95) < 0.9  # the rule can tell this trend
    ties = trend.assign(median_t=1.0)  # every path exits at T: "ordered" by ties, whatever the shuffle
    assert _shuffled_shares(ties, 1.0, n=50).min() == 1.0


def test_a_sweep_left_unfinished_fails_its_section_instead_of_deciding_on_part_of_the_grid(tmp_path):
    from deeplimit.errors import DeeplimitError
    from deeplimit.report.reproduce import Context, _run_sweep
    from deeplimit.sweep.grid import SweepSpec

    # every point's objective raises: the workers record the failures and stop; nothing may be analysed
    spec = SweepSpec(axes={"x": [1.0, 2.0]}, objective="sweep_objectives:fails_always")
    ctx = Context(out=tmp_path, tier="smoke", workers=1, storage=f"sqlite:///{tmp_path}/sweeps.db")
    with pytest.raises(DeeplimitError, match="2 of 2 points not done.*Re-run the same command"):
        _run_sweep(ctx, "demo", spec)
