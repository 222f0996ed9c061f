"""A self-contained HTML report: sections with the paper's claim, what we measured, a verdict, figures
(embedded as base64 PNG) and tables. Nothing in it is written by hand: every number comes from a run."""

from __future__ import annotations

import base64
import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deeplimit.io import atomic_write_json, atomic_write_text

VERDICT_COLOURS = {"holds": "#1a7f37", "partly": "#9a6700", "does not hold": "#cf222e", "inconclusive": "#57606a",
                   "failed": "#a40e26", "not run at this tier": "#8c959f"}
VERDICTS = tuple(VERDICT_COLOURS)  # the whole vocabulary of section verdicts


@dataclass
class Section:
    """One result: what the paper claims, what we measured, whether it holds."""

    title: str
    claim: str
    measured: str = ""
    verdict: str = "inconclusive"  # one of VERDICTS; "failed": it crashed; "not run at this tier": no power here
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
    # Key numbers behind the verdict (JSON-able: intervals, distances, …), written to report.json.
    stats: dict = field(default_factory=dict)
    # The section key and the one-line command that re-runs it from scratch (set by the report driver).
    key: str = ""
    rerun: str = ""
    # Why the verdict is what it is, in one line (e.g. why it is inconclusive at this tier).
    reason: str = ""


@dataclass
class Control:
    """A negative control: a setting where the claimed effect must *not* appear (e.g. SP in a check that μP
    passes). ``passed`` says whether it behaved as a control should (it failed where the claim predicts)."""

    name: str
    expectation: str
    measured: str
    passed: bool | None  # None: not run at this tier / inconclusive

    def to_dict(self) -> dict:
        return {"name": self.name, "expectation": self.expectation, "measured": self.measured,
                "passed": self.passed}


def _alt(path: Path) -> str:
    return f"figure: {Path(path).stem.replace('_', ' ').replace('-', ' ')} ({Path(path).parent.name})"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    alt = html.escape(_alt(path))
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption>'
            "</figure>")


def _jsonable(v):
    """Plain JSON values: numpy scalars → Python, non-finite floats → None (strict JSON has no NaN)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _settings_html(settings: dict) -> str:
    text = json.dumps(_jsonable(settings), indent=1, ensure_ascii=False)
    return f"<details><summary>settings</summary><pre class='settings'>{html.escape(text)}</pre></details>"


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
code{background:#f6f8fa;padding:0 .3em} figure{margin:.5em 0} figcaption{color:#57606a;font-size:.85em}
pre.settings{font-size:.8em;background:#f6f8fa;padding:.5em} .prov td{padding:1px 8px;font-size:.85em}
.err{color:#cf222e;white-space:pre-wrap;font-family:monospace}
.summary td,.summary th{border:1px solid #d0d7de;padding:3px 8px} .summary{border-collapse:collapse}
"""


def _provenance_html(prov: dict) -> str:
    if not prov:
        return ""
    git, ver, mach = prov.get("git", {}), prov.get("versions", {}), prov.get("machine", {})
    commit = git.get("commit") or "unknown (not a git checkout)"
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    rows = [("commit", f"{commit}{dirty}"), ("packages", ", ".join(f"{k} {v}" for k, v in ver.items() if v)),
            ("machine", f"{mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('torch_threads')} torch "
                        f"thread(s) per process"),
            ("tier", f"{prov.get('tier', '')}; wall time {prov.get('wall_s', 0):.0f} s"),
            ("code fingerprints", ", ".join(f"{k} {v}" for k, v in prov.get("code", {}).items()))]
    body = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='prov'>{body}</table>"


def render(sections: list[Section], title: str, intro: str, path: Path, provenance: dict | None = None) -> Path:
    """Write the report to ``path`` (and, with ``provenance``, ``report.json`` beside it); return ``path``."""
    rows = "".join(
        f'<tr><td><a href="#s{i}">{html.escape(s.title)}</a></td><td><span class="verdict" style="background:'
        f'{VERDICT_COLOURS.get(s.verdict, "#57606a")}">{html.escape(s.verdict)}</span></td>'
        f"<td>{_controls_cell(s)}</td></tr>"
        for i, s in enumerate(sections))
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>",
             _provenance_html(provenance or {}), f"<p>{intro}</p>",
             f"<table class='summary'><tr><th>result</th><th>verdict</th><th>negative controls</th></tr>{rows}"
             "</table>"]
    for i, s in enumerate(sections):
        colour = VERDICT_COLOURS.get(s.verdict, "#57606a")
        parts.append(f'<h2 id="s{i}">{html.escape(s.title)} <span class="verdict" style="background:{colour}">'
                     f"{html.escape(s.verdict)}</span></h2>")
        parts.append(f"<p class='claim'><b>The paper:</b> {s.claim}</p>")
        if s.measured:
            parts.append(f"<p><b>We measured:</b> {s.measured}</p>")
        if s.reason:
            parts.append(f"<p><b>Why this verdict:</b> {html.escape(s.reason)}</p>")
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
        if s.settings:
            parts.append(_settings_html(s.settings))
        cmds = []
        if s.rerun:
            cmds.append(f"re-run with <code>{html.escape(s.rerun)}</code>")
        if s.command:
            cmds.append(f"or on its own: <code>{html.escape(s.command)}</code>")
        if cmds or s.wall_s:
            parts.append(f"<p class='meta'>{'; '.join(cmds)}{'; ' if cmds else ''}{s.wall_s:.0f} s</p>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    if provenance is not None:
        write_json(sections, provenance, Path(path).with_name("report.json"))
    return path


def _controls_cell(s: Section) -> str:
    if not s.controls:
        return ""
    counts = [(sum(c.passed is v for c in s.controls), word) for v, word in
              ((True, "behave as controls"), (False, "FAILED"), (None, "inconclusive"))]
    return ", ".join(f"{n} {word}" for n, word in counts if n)


def section_dict(s: Section) -> dict:
    """One section as report.json holds it."""
    return _jsonable({"key": s.key, "title": s.title, "claim": s.claim, "measured": s.measured,
                      "verdict": s.verdict, "reason": s.reason, "scale_gap": s.scale_gap,
                      "settings": s.settings, "stats": s.stats, "controls": [c.to_dict() for c in s.controls],
                      "figures": [str(f) for f in s.figures], "command": s.command, "rerun": s.rerun,
                      "wall_s": round(s.wall_s, 2), "error": s.error})


def write_json(sections: list[Section], provenance: dict, path: Path) -> Path:
    """``report.json``: the provenance and every section's claim, verdict, key numbers, controls, settings."""
    return atomic_write_json(path, {"format": 1, "provenance": _jsonable(provenance),
                                    "sections": [section_dict(s) for s in sections]}, indent=1)
