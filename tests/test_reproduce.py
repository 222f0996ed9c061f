"""A tiny version of the whole main job: every section runs, none fails, the report embeds its figures."""

import re

import pytest

from deeplimit.report.reproduce import SECTIONS, reproduce


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return reproduce(out, tier="smoke", workers=2), out


def test_every_section_runs_and_reports_a_computed_verdict(report):
    path, _ = report
    html = path.read_text()
    titles = re.findall(r'<h2 id="s\d+">(.*?) <span class="verdict"', html)
    assert len(titles) >= len(SECTIONS)
    assert "class='err'" not in html, re.findall(r"<p class='err'>(.*?)</p>", html, re.S)[:1]
    assert html.count("data:image/png;base64,") >= len(SECTIONS)
    assert html.count("We measured:") == len(titles)


def test_rerun_resumes_from_the_cache(report):
    path, out = report
    import time

    t0 = time.perf_counter()
    again = reproduce(out, tier="smoke", workers=2, only=["depth-transfer", "sde"])
    assert time.perf_counter() - t0 < 60  # cached sweeps and SDE tables: nothing is re-run
    assert "SDE vs finite network" in again.read_text()
