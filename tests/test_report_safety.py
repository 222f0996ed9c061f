"""The report's safety: cached text cannot inject markup, only the figures a section wrote are embedded (never
through a symbolic link), a cache is reused only by the same code and data, two runs never share a folder or a
temporary file, bad --set values are one-line errors, and no result of an earlier run is written in the source."""

import ast
import json
import os
import re
import threading
from pathlib import Path

import pytest

from deeplimit.cli import main
from deeplimit.errors import DeeplimitError

SRC = Path(__file__).resolve().parents[1] / "src" / "deeplimit"
PNG = b"\x89PNG\r\n\x1a\n"


def _foreign_png(folder: Path) -> Path:
    """A small valid PNG outside the report's folder, with a marker that would show up in its base64."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title("FOREIGN")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def test_tampered_cache_and_a_planted_link_put_no_script_and_no_foreign_image_in_the_report(tmp_path):
    import base64

    from deeplimit.report.reproduce import reproduce

    out, few = tmp_path / "out", {"rank-collapse": {"paths": 8}}  # a real section, at its cheapest
    first = reproduce(out, tier="smoke", workers=1, only=["rank-collapse"], overrides=few)
    assert first.failed == []
    section = out / "smoke" / "sde" / "ablations"
    summary_path = section / "ablations.json"
    summary = json.loads(summary_path.read_text())
    summary["preset"]["n"] = "<script>alert('cache')</script>"  # a text the section prints as it is
    summary_path.write_text(json.dumps(summary))
    foreign = _foreign_png(tmp_path / "elsewhere")
    (section / "evil.png").symlink_to(foreign)  # a local file dressed as one of the section's figures
    (section / "ablations_cov.png").unlink()
    (section / "ablations_cov.png").symlink_to(foreign)  # one of its own figures swapped for a link

    again = reproduce(out, tier="smoke", workers=1, only=["rank-collapse"], overrides=few)
    html = again.path.read_text()
    assert "&lt;script&gt;alert(" in html  # the cached text was used, and escaped
    assert "<script" not in html.lower()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == 1  # ablations.png only: not evil.png, not the swapped ablations_cov.png
    assert base64.b64encode(foreign.read_bytes()).decode() not in html
    assert "ablations_cov.png is a symbolic link; only files the run wrote are embedded" in html


def test_read_figure_refuses_links_files_outside_the_folder_and_non_png(tmp_path):
    from deeplimit.report.html import read_figure

    root = tmp_path / "report"
    (root / "sec").mkdir(parents=True)
    good = root / "sec" / "a.png"
    good.write_bytes(PNG + b"data")
    assert read_figure(good, root) == PNG + b"data"
    outside = tmp_path / "b.png"
    outside.write_bytes(PNG)
    with pytest.raises(ValueError, match="outside the report's folder"):
        read_figure(outside, root)
    (root / "linked").symlink_to(tmp_path)  # a folder link inside the report's folder
    with pytest.raises(ValueError, match="symbolic link"):
        read_figure(root / "linked" / "b.png", root)
    with pytest.raises(ValueError, match="outside the report's folder"):
        read_figure(root / "sec" / ".." / ".." / "b.png", root)
    text = root / "sec" / "t.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        read_figure(text, root)


def test_markup_is_kept_only_where_our_code_built_it(tmp_path):
    from markupsafe import Markup

    from deeplimit.report.html import Control, Section, render

    s = Section(title="<i>t</i>", claim="a < b & c", measured="x" + Markup("<br>") + "<b>y</b>",
                controls=[Control("<u>c</u>", "e", "m", None)], reason="<img src=x>")
    html = render([s], "title", Markup("intro <b>{}</b>").format("<s>"), tmp_path / "report.html").read_text()
    assert "x<br>&lt;b&gt;y&lt;/b&gt;" in html and "a &lt; b &amp; c" in html
    assert "intro <b>&lt;s&gt;</b>" in html
    assert "<i>t</i>" not in html and "<u>c</u>" not in html and "<img src=x>" not in html


def test_a_cache_stamp_that_is_not_utf8_means_recompute(tmp_path):
    from deeplimit.io import atomic_write_json
    from deeplimit.report.context import cached

    calls = []

    def compute():
        calls.append(1)
        atomic_write_json(tmp_path / "s.json", {"settings": {"a": 1}})
        return {"settings": {"a": 1}}

    cached(tmp_path / "s.json", {"a": 1}, compute, code="abc")
    cached(tmp_path / "s.json", {"a": 1}, compute, code="abc")
    assert len(calls) == 1
    (tmp_path / "s.json.code").write_bytes(b"\xff\xfe\x00garbage")
    cached(tmp_path / "s.json", {"a": 1}, compute, code="abc")  # no UnicodeDecodeError: computed again
    assert len(calls) == 2 and (tmp_path / "s.json.code").read_text() == "abc"


def test_the_data_fingerprint_follows_the_files_content_and_their_absence(tmp_path, monkeypatch):
    from deeplimit.data.images import FASHION_MNIST_FILES
    from deeplimit.report.context import Context, data_fingerprint

    monkeypatch.setenv("DEEPLIMIT_FASHION_MNIST_DIR", str(tmp_path))
    assert data_fingerprint("fashion-mnist") == "missing"
    names = [n for pair in FASHION_MNIST_FILES.values() for n in pair]
    for n in names:
        (tmp_path / n).write_bytes(n.encode())
    a = data_fingerprint("fashion-mnist")
    assert re.fullmatch(r"[0-9a-f]{12}", a)
    (tmp_path / names[0]).write_bytes(b"other content")
    os.utime(tmp_path / names[0], ns=(1, 1))  # a new mtime: the per-file digest cache sees a new file
    b = data_fingerprint("fashion-mnist")
    assert b != a
    ctx = Context(out=tmp_path, tier="smoke", workers=1, storage="", code={"diagnostics": "c0de"})
    assert ctx.stamp("diagnostics", "fashion-mnist") == f"c0de data fashion-mnist {b}"
    assert ctx.stamp("diagnostics") == "c0de"


def test_coord_check_with_its_data_gone_recomputes_and_fails_instead_of_reusing_its_cache(tmp_path, monkeypatch,
                                                                                           capsys):
    argv = ["reproduce", "--smoke", "-q", "--out", str(tmp_path / "out"), "--only", "coord-check",
            "--set", "coord-check.depths=[2,4]", "--set", "coord-check.steps=2", "--set", "coord-check.width=16"]
    assert main(argv) == 0
    capsys.readouterr()
    monkeypatch.setenv("DEEPLIMIT_FASHION_MNIST_DIR", str(tmp_path / "gone"))
    from deeplimit.data import images
    from deeplimit.train import _cached_image_data

    _cached_image_data.cache_clear()  # as a new process would start: nothing loaded yet
    images._read_idx_cached.cache_clear()
    assert main(argv) == 1
    assert "1 section(s) failed: coord-check" in capsys.readouterr().err
    html = (tmp_path / "out" / "smoke" / "report.html").read_text()
    assert "Fashion-MNIST not found" in html


def test_the_code_fingerprint_covers_the_claim_modules_and_everything_they_import():
    from deeplimit.report.provenance import CODE_ENTRIES, code_files

    diag, sde = code_files(CODE_ENTRIES["diagnostics"]), code_files(CODE_ENTRIES["sde"])
    for f in ("report/claims/coord_check.py", "report/claims/feature_diversity.py", "report/context.py",
              "diagnostics/coordinates.py", "training_studies.py", "train/loop.py", "train/config.py", "data/images.py",
              "nn/mlp_resnet.py"):
        assert f in diag, f
    for f in ("report/claims/sde.py", "report/claims/stopping.py", "report/claims/convergence.py",
              "report/claims/rank_collapse.py", "report/context.py", "sde/studies.py", "sde/evidence.py"):
        assert f in sde, f
    assert "report/html.py" not in sde + diag  # layout only
    assert {"train/loop.py", "train/batches.py", "train/checkpoint.py"} <= set(code_files(CODE_ENTRIES["sweep"]))


def test_code_files_follows_imports_inside_functions_and_relative_ones(tmp_path):
    from deeplimit.report.provenance import code_files

    pkg = tmp_path / "deeplimit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from deeplimit.sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import os\n")
    (pkg / "lonely.py").write_text("")
    assert code_files(["a.py"], root=pkg, skip=()) == ["__init__.py", "a.py", "sub/__init__.py", "sub/b.py",
                                                          "sub/c.py"]
    assert "sub/c.py" not in code_files(["a.py"], root=pkg, skip=("sub/b.py",))


def test_a_second_run_into_the_same_folder_stops_at_once_with_one_line(tmp_path, capsys):
    from deeplimit.report.lock import output_lock

    folder = tmp_path / "smoke"
    folder.mkdir()
    with output_lock(folder):
        rc = main(["reproduce", "--smoke", "-q", "--out", str(tmp_path), "--only", "coord-check"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"another deeplimit reproduce (pid {os.getpid()}" in err and str(folder) in err and "--out" in err
    with output_lock(folder):  # released when the holder's block ended
        pass


def test_two_writers_of_one_figure_never_share_a_temporary_file(tmp_path):
    from deeplimit.report.figures import replacing

    target = tmp_path / "fig.png"
    seen, barrier = [], threading.Barrier(2)

    def draw(content: bytes) -> None:
        with replacing(target) as tmp:
            seen.append(tmp)
            barrier.wait(timeout=10)  # both temporaries exist at once
            tmp.write_bytes(content)

    threads = [threading.Thread(target=draw, args=(c,)) for c in (b"one", b"two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 2 and target.read_bytes() in (b"one", b"two")
    assert not [p for p in tmp_path.iterdir() if p != target]  # no temporary left behind


@pytest.mark.parametrize("setting, expected", [
    ("coord-check.steps=abc", "--set coord-check.steps=abc: expected a whole number; e.g. --set coord-check.steps="),
    ("coord-check.lr=fast", "--set coord-check.lr=fast: expected a number"),
    ("stopping.gammas=[0.5,'x']", "expected a comma-separated list of numbers"),
    ("coord-check.train_io=2", "coord-check.train_io is a yes/no option"),
])
def test_a_set_value_of_the_wrong_kind_is_a_one_line_error(tmp_path, capsys, setting, expected):
    rc = main(["reproduce", "--smoke", "-q", "--out", str(tmp_path), "--only", "coord-check", "--set", setting])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert "Traceback" not in err and not (tmp_path / "smoke" / "report.html").exists()


# A result of a run, written into the source: a signed decimal (a drift, a difference: +0.66, −0.74), an
# interval "CI −1.98", a date, or a duration (364 s, 57 min, 1 h). Exponents such as 2^-1.5 are settings.
MEASURED = re.compile(r"(?<![\^\w.])[+−-]\d+\.\d+|\b\d{4}-\d{2}-\d{2}\b|\bCI\s?[+−-]?\d|"
                      r"\b\d+(?:\.\d+)?\s?(?:s|min|h)\b")


def _report_texts(path: Path):
    """The string literals of a module (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def test_no_measured_number_is_written_into_the_report_texts():
    hits = [f"{p.relative_to(SRC)}:{line}: {m.group()!r} in {text[max(0, m.start() - 30):m.end() + 10]!r}"
            for p in sorted((SRC / "report").rglob("*.py")) for line, text in _report_texts(p)
            for m in MEASURED.finditer(text)]
    assert not hits, "\n".join(hits)


def test_the_measured_number_scan_sees_what_it_is_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('X = "drift −0.74 (95% CI −1.98 to +0.51), 364 s, measured 2026-12-06"\n'
                   'Y = f"lr 2^-1.5 and {value:+.2f}"\n')
    found = [m.group() for _, text in _report_texts(bad) for m in MEASURED.finditer(text)]
    assert found == ["−0.74", "CI −1", "+0.51", "364 s", "2026-12-06"]


def test_not_run_texts_state_the_scale_and_the_tier_that_runs_them():
    from deeplimit.report.reproduce import NOT_AT_TIER, not_run_text
    from deeplimit.transfer.experiments import EXPERIMENTS, experiment
    from deeplimit.transfer.oracle_grids import ORACLE_CLAIMS

    for key, tiers in NOT_AT_TIER.items():
        for tier, runner in tiers.items():
            text = not_run_text(key, tier)
            assert f"it runs at --{runner}" in text, text
            if key in EXPERIMENTS or key == "muon-transfer" or key in ORACLE_CLAIMS:  # a sweep: runs × steps
                assert re.search(r"\d+ runs of \d+(–\d+)? steps", text), text
            else:  # a study: the settings it runs with there
                assert "with {" in text, text
    standard = experiment("block-depth", "standard")
    assert f"{len(standard)} runs of {standard.fixed['steps']} steps" in not_run_text("block-depth", "quick")
    # protocol 1.5: standard runs a transformer-depth grid of its own, so its reason is its own, not quick's
    at_standard, at_quick = not_run_text("transformer-depth", "standard"), not_run_text("transformer-depth", "quick")
    assert "2 → 8 layers" in at_standard and "2 → 8 layers" not in at_quick
    assert "depths [2, 4, 8]" in at_standard and "it runs at --full" in at_standard


def test_a_no_power_tier_shows_not_run_without_running_anything(tmp_path):
    from deeplimit.report.reproduce import reproduce

    rep = reproduce(tmp_path, tier="quick", workers=1, only=["block-depth", "activation"])
    assert [s.verdict for s in rep.sections] == ["not run at this tier"] * 2 and rep.failed == []
    assert not (tmp_path / "quick" / "sweeps").exists()  # no sweep was created


def test_the_lock_file_is_never_followed_through_a_link(tmp_path):
    from deeplimit.report.lock import LOCK_NAME, output_lock

    target = tmp_path / "victim"
    target.write_text("keep")
    folder = tmp_path / "smoke"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(target)
    with pytest.raises(DeeplimitError, match="cannot open the lock file"):
        with output_lock(folder):
            pass
    assert target.read_text() == "keep"


def test_a_sweep_is_keyed_on_its_datas_content(tmp_path):
    """Other data under the same name (labels permuted, a file replaced) gives the sweep a new name, so the
    report never reuses trials trained on the old data (issue 22, stale results)."""
    import numpy as np

    from deeplimit.report.context import Context
    from deeplimit.report.sweeps import sweep_name
    from deeplimit.transfer.experiments import experiment

    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 3), np.float32), y=np.array([0, 1, 0, 1]))
    ctx = Context(tmp_path, "smoke", 1, "sqlite:///x.db")
    spec = experiment("depth-transfer", "smoke", data=str(data))
    before = sweep_name(ctx, "depth-transfer", spec)
    assert sweep_name(ctx, "depth-transfer", spec) == before  # same data, same code: the cache is reused
    np.savez(data, x=np.zeros((4, 3), np.float32), y=np.array([1, 0, 1, 0]))
    assert sweep_name(ctx, "depth-transfer", spec) != before


def test_the_header_names_the_protocol_and_its_seed_set():
    """A reader of report.html sees which frozen protocol decided it and whether the seeds were the deciding
    ones: a pilot run's header says it is exploratory."""
    from deeplimit.protocol import protocol
    from deeplimit.report.html import _provenance_rows

    prot = protocol().to_dict()
    rows = dict(_provenance_rows({"git": {}, "protocol": prot, "seed_set": "confirmation"}))
    assert rows["protocol"].startswith(f"{prot['version']} ") and prot["sha256"][:16] in rows["protocol"]
    assert "exploratory" in dict(_provenance_rows({"git": {}, "protocol": prot, "seed_set": "pilot"}))["protocol"]
