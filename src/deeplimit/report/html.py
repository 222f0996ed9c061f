"""A self-contained HTML report: sections with the paper's claim, what we measured, a verdict, figures
(embedded as base64 PNG) and tables. Nothing in it is written by hand: every number comes from a run."""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deeplimit.io import atomic_write_text

VERDICT_COLOURS = {"holds": "#1a7f37", "partly": "#9a6700", "does not hold": "#cf222e", "inconclusive": "#57606a",
                   "failed": "#a40e26"}


@dataclass
class Section:
    """One result: what the paper claims, what we measured, whether it holds."""

    title: str
    claim: str
    measured: str = ""
    verdict: str = "inconclusive"  # holds | partly | does not hold | inconclusive | failed (it crashed)
    figures: list[Path] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    command: str = ""
    wall_s: float = 0.0
    error: str = ""
    # How this run differs from the paper's setting (blocks, steps, widths, seeds, data): shown beside the claim.
    scale_gap: str = ""
    # Negative controls shown beside the claim: each one could have failed and says whether it did.
    controls: list[Control] = field(default_factory=list)
    # The settings the section ran with (JSON-able), shown in the report and written to report.json.
    settings: dict = field(default_factory=dict)


@dataclass
class Control:
    """A negative control: a setting where the claimed effect must *not* appear (e.g. SP in a check that μP
    passes). ``passed`` says whether it behaved as a control should (it failed where the claim predicts)."""

    name: str
    expectation: str
    measured: str
    passed: bool | None  # None: not run at this tier / inconclusive


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def _table(name: str, df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return v
    body = df.map(fmt).to_html(index=False, border=0, classes="tbl", escape=True)
    return f"<details><summary>{html.escape(name)} ({len(df)} rows)</summary>{body}</details>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
.meta{color:#57606a;font-size:.9em} .claim{background:#f6f8fa;border-left:4px solid #8c959f;padding:.4em .8em}
.verdict{font-weight:600;padding:.1em .5em;border-radius:4px;color:#fff}
img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}
table.tbl{border-collapse:collapse;font-size:.8em} .tbl td,.tbl th{border:1px solid #d0d7de;padding:2px 6px}
code{background:#f6f8fa;padding:0 .3em} .err{color:#cf222e;white-space:pre-wrap;font-family:monospace}
.summary td,.summary th{border:1px solid #d0d7de;padding:3px 8px} .summary{border-collapse:collapse}
"""


def render(sections: list[Section], title: str, intro: str, path: Path) -> Path:
    """Write the report to ``path`` and return it."""
    rows = "".join(
        f'<tr><td><a href="#s{i}">{html.escape(s.title)}</a></td><td><span class="verdict" style="background:'
        f'{VERDICT_COLOURS.get(s.verdict, "#57606a")}">{html.escape(s.verdict)}</span></td></tr>'
        for i, s in enumerate(sections))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p><p>{intro}</p>",
             f"<table class='summary'><tr><th>result</th><th>verdict</th></tr>{rows}</table>"]
    for i, s in enumerate(sections):
        colour = VERDICT_COLOURS.get(s.verdict, "#57606a")
        parts.append(f'<h2 id="s{i}">{html.escape(s.title)} <span class="verdict" style="background:{colour}">'
                     f"{html.escape(s.verdict)}</span></h2>")
        parts.append(f"<p class='claim'><b>The paper:</b> {s.claim}</p>")
        if s.measured:
            parts.append(f"<p><b>We measured:</b> {s.measured}</p>")
        if s.scale_gap:
            parts.append(f"<p class='meta'><b>Scale gap:</b> {s.scale_gap}</p>")
        if s.controls:
            marks = {True: "behaves as a control", False: "control FAILED", None: "inconclusive"}
            items = "".join(f"<li><b>{html.escape(c.name)}</b> — expected: {c.expectation}; measured: {c.measured} "
                            f"(<i>{marks[c.passed]}</i>)</li>" for c in s.controls)
            parts.append(f"<p><b>Negative controls:</b></p><ul>{items}</ul>")
        if s.error:
            parts.append(f"<p class='err'>{html.escape(s.error)}</p>")
        parts += [_img(f) for f in s.figures if Path(f).exists()]
        parts += [_table(n, df) for n, df in s.tables]
        if s.command or s.wall_s:
            cmd = f"reproduce with <code>{html.escape(s.command)}</code>; " if s.command else ""
            parts.append(f"<p class='meta'>{cmd}{s.wall_s:.0f} s</p>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path
