"""The report's safety: cached text cannot inject markup, only the figures a section wrote are embedded (never
through a symbolic link), a cache is reused only by the same code and data, two runs never share a folder or a
temporary file, bad --set values are one-line errors, and no result of an earlier run is written in the source."""

import ast
import json
import re
from pathlib import Path

import pytest

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
