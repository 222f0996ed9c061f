"""A tiny version of the whole main job: every section runs, none fails, the report embeds its figures; a
section that crashes is "failed" and the command exits non-zero; secrets never reach the report."""

import re

import pytest

from deeplimit.cli import main
from deeplimit.report.reproduce import SECTIONS, reproduce


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return reproduce(out, tier="smoke", workers=2), out


def test_every_section_runs_and_reports_a_computed_verdict(report):
    rep, _ = report
    html = rep.path.read_text()
    assert rep.failed == []
    titles = re.findall(r'<h2 id="s\d+">(.*?) <span class="verdict"', html)
    assert len(titles) >= len(SECTIONS)
    assert "class='err'" not in html, re.findall(r"<p class='err'>(.*?)</p>", html, re.S)[:1]
    assert html.count("data:image/png;base64,") >= len(SECTIONS)
    assert html.count("We measured:") == len(titles)


def test_rerun_resumes_from_the_cache(report):
    rep, out = report
    import time

    t0 = time.perf_counter()
    again = reproduce(out, tier="smoke", workers=2, only=["depth-transfer", "sde", "feature-diversity"])
    assert time.perf_counter() - t0 < 60  # cached sweeps and SDE tables: nothing is re-run
    assert "SDE vs finite network" in again.path.read_text() and again.failed == []


def test_a_crashed_section_is_failed_in_red_the_others_complete_and_the_exit_is_non_zero(tmp_path, capsys):
    """A real section given an impossible setting (zero sample paths) crashes; the run goes on."""
    rc = main(["reproduce", "--smoke", "-q", "--out", str(tmp_path), "--only", "sde", "stopping", "rank-collapse",
               "--set", "stopping.paths=0"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 section(s) failed: stopping" in captured.err
    html = (tmp_path / "smoke" / "report.html").read_text()
    verdicts = dict(re.findall(r'<h2 id="s\d+">(.*?) <span class="verdict" style="[^"]*">(.*?)</span>', html))
    assert verdicts["stopping"] == "failed"
    assert 'background:#a40e26">failed' in html  # red, not the grey of "inconclusive"
    assert "paths must be a positive integer, got 0" in html
    others = {k: v for k, v in verdicts.items() if k != "stopping"}
    assert len(others) == 4 and all(v in ("holds", "partly", "does not hold", "inconclusive") for v in others.values())


def test_an_unreachable_storage_fails_its_sections_and_the_password_stays_out_of_the_report(tmp_path, capsys):
    url = "postgresql://u:S3cretPW@127.0.0.1:1/db"
    rc = main(["reproduce", "--smoke", "-q", "--out", str(tmp_path), "--only", "depth-transfer", "--storage", url])
    captured = capsys.readouterr()
    assert rc == 1 and "S3cretPW" not in captured.out + captured.err
    html = (tmp_path / "smoke" / "report.html").read_text()
    assert ">failed</span>" in html and "S3cretPW" not in html and "postgresql://u:***@127.0.0.1:1/db" in html
