"""A self-contained HTML report: sections with the paper's claim, what we measured, a verdict, figures
(embedded as base64 PNG) and tables. Nothing in it is written by hand: every number comes from a run.

The page is rendered by a Jinja2 template with autoescaping on: every text is escaped unless it is a
:class:`markupsafe.Markup` built by our own code from literal markup (``Markup("<br>").join(lines)``,
``Markup("<b>{}</b>").format(value)`` escapes ``value``). A text read back from a cache can carry no markup.
A figure is embedded only if it is a regular file (not a symbolic link) inside the report's folder and starts
with the PNG signature; anything else is shown as a one-line refusal in its section.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from deeplimit.io import atomic_write_json, atomic_write_text

VERDICT_COLOURS = {"holds": "#1a7f37", "partly": "#9a6700", "does not hold": "#cf222e", "inconclusive": "#57606a",
                   "failed": "#a40e26", "not run at this tier": "#8c959f"}
VERDICTS = tuple(VERDICT_COLOURS)  # the whole vocabulary of section verdicts
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Section:
    """One result: what the paper claims, what we measured, whether it holds."""

    title: str
    claim: str
    measured: str = ""
    verdict: str = "inconclusive"  # one of VERDICTS; "failed": it crashed; "not run at this tier": no power here
    # The figures this section wrote (its manifest): only these are embedded, and only from the report's folder.
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
    # False for an extra check outside the tally: shown with its verdict, never counted as a result of the
    # papers' (e.g. a stricter comparison than the paper makes).
    counted: bool = True


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

    @classmethod
    def from_check(cls, check) -> Control:
        """The report's row of a :class:`deeplimit.transfer.verdicts.Check`; a calibration (a relabelling of the
        claim's own runs) says so in its name, since it shows the estimator's power and is never evidence."""
        suffix = "" if getattr(check, "evidence", True) else " — calibration, not evidence"
        return cls(check.name + suffix, check.expectation, check.measured, check.passed)


def _alt(path: Path) -> str:
    return f"figure: {Path(path).stem.replace('_', ' ').replace('-', ' ')} ({Path(path).parent.name})"


def read_figure(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bytes:
    """The bytes of the PNG at ``path``, refused (``ValueError`` with the reason) unless it is a regular file —
    not a symbolic link, nor under one — inside ``root`` that starts with the PNG signature."""
    root = Path(os.path.abspath(root))  # as the run named it: the sections' paths are built from it
    absolute = Path(os.path.abspath(path))
    if not absolute.is_relative_to(root):
        raise ValueError(f"{path} is outside the report's folder {root}")
    for p in [absolute, *absolute.parents]:  # no link on the way down from the report's folder
        if p == root:
            break
        if p.is_symlink():
            raise ValueError(f"{p} is a symbolic link; only files the run wrote are embedded")
    try:  # O_NOFOLLOW: a link swapped in after the check above is refused too
        fd = os.open(absolute, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
        raise ValueError(f"{path} {why}; only files the run wrote are embedded") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = fh.read()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    return data


def _figures(paths: list[Path], root: Path) -> list[dict]:
    out = []
    for f in paths:
        if not os.path.lexists(f):  # a figure a cached result no longer has on disk: nothing to show
            continue
        try:
            out.append({"alt": _alt(f), "data": base64.b64encode(read_figure(f, root)).decode()})
        except ValueError as exc:
            out.append({"alt": _alt(f), "data": None, "refused": f"figure not embedded: {exc}"})
    return out


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
    if isinstance(v, str):
        return str(v)  # a Markup text goes to JSON as the plain string it is
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return str(v)


def _table(df: pd.DataFrame) -> Markup:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return v
    # pandas escapes every cell (escape=True): the HTML it returns is safe to embed as it is
    return Markup(df.map(fmt).to_html(index=False, border=0, classes="tbl", escape=True))


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

TEMPLATE = """\
<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{{ title }}</title><style>{{ css }}</style>\
</head><body><h1>{{ title }}</h1>
<p class='meta'>generated {{ generated }}</p>
{% if prov_rows %}<table class='prov'>{% for k, v in prov_rows %}<tr><td><b>{{ k }}</b></td><td>{{ v }}</td></tr>\
{% endfor %}</table>{% endif %}
<p>{{ intro }}</p>
<table class='summary'><tr><th>result</th><th>verdict</th><th>negative controls</th></tr>\
{% for s in sections %}<tr><td><a href="#s{{ loop.index0 }}">{{ s.title }}</a>{% if not s.counted %} \
<i>(extra check, outside the tally)</i>{% endif %}</td><td><span class="verdict" \
style="background:{{ colour(s.verdict) }}">{{ s.verdict }}</span></td><td>{{ controls_cell(s) }}</td></tr>\
{% endfor %}</table>
{% for s in sections %}
<h2 id="s{{ loop.index0 }}">{{ s.title }} <span class="verdict" style="background:{{ colour(s.verdict) }}">\
{{ s.verdict }}</span></h2>
<p class='claim'><b>The paper:</b> {{ s.claim }}</p>
{% if s.measured %}<p><b>We measured:</b> {{ s.measured }}</p>{% endif %}
{% if s.reason %}<p><b>Why this verdict:</b> {{ s.reason }}</p>{% endif %}
{% if s.scale_gap %}<p class='meta'><b>Scale gap:</b> {{ s.scale_gap }}</p>{% endif %}
{% if s.controls %}<p><b>Negative controls:</b></p><ul>{% for c in s.controls %}<li><b>{{ c.name }}</b> — expected: \
{{ c.expectation }}; measured: {{ c.measured }} (<i>{{ marks[c.passed] }}</i>)</li>{% endfor %}</ul>{% endif %}
{% if s.error %}<p class='err'>{{ s.error }}</p>{% endif %}
{% for f in figures[loop.index0] %}{% if f.data %}<figure><img src="data:image/png;base64,{{ f.data }}" \
alt="{{ f.alt }}"><figcaption>{{ f.alt }}</figcaption></figure>{% else %}<p class='meta'>{{ f.refused }}</p>\
{% endif %}{% endfor %}
{% for name, df in s.tables %}<details><summary>{{ name }} ({{ df|length }} rows)</summary>{{ table(df) }}</details>\
{% endfor %}
{% if s.settings %}<details><summary>settings</summary><pre class='settings'>{{ settings_text(s.settings) }}</pre>\
</details>{% endif %}
{% if s.rerun or s.command or s.wall_s %}<p class='meta'>{% if s.rerun %}re-run with <code>{{ s.rerun }}</code>\
{% endif %}{% if s.rerun and s.command %}; {% endif %}{% if s.command %}or on its own: <code>{{ s.command }}</code>\
{% endif %}{% if s.rerun or s.command %}; {% endif %}{{ '%.0f' % s.wall_s }} s</p>{% endif %}
{% endfor %}
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _provenance_rows(prov: dict) -> list[tuple[str, str]]:
    if not prov:
        return []
    git, ver, mach = prov.get("git", {}), prov.get("versions", {}), prov.get("machine", {})
    commit = git.get("commit") or "unknown (not a git checkout)"
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    return [("commit", f"{commit}{dirty}"), ("packages", ", ".join(f"{k} {v}" for k, v in ver.items() if v)),
            ("machine", f"{mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('torch_threads')} torch "
                        f"thread(s) per process"),
            ("tier", f"{prov.get('tier', '')}; wall time {prov.get('wall_s', 0):.0f} s"),
            ("code fingerprints", ", ".join(f"{k} {v}" for k, v in prov.get("code", {}).items()))] + (
        [("protocol", f"{prot.get('version')} (deeplimit/protocol.toml, SHA-256 {str(prot.get('sha256'))[:16]}…); "
                      f"{prov.get('seed_set', 'confirmation')} seeds"
                      + ("" if prov.get("seed_set", "confirmation") == "confirmation" else ": exploratory"))]
        if (prot := prov.get("protocol")) else [])


def render(sections: list[Section], title: str, intro: str, path: Path, provenance: dict | None = None) -> Path:
    """Write the report to ``path`` (and, with ``provenance``, ``report.json`` beside it); return ``path``.

    Figures are read only from ``path``'s folder (:func:`read_figure`); every text is escaped unless it is a
    :class:`~markupsafe.Markup` (``intro`` included)."""
    root = Path(os.path.abspath(Path(path).parent))
    page = _ENV.from_string(TEMPLATE).render(
        title=title, css=Markup(CSS), generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        prov_rows=_provenance_rows(provenance or {}), intro=intro, sections=sections,
        figures=[_figures(list(s.figures), root) for s in sections], table=_table,
        settings_text=lambda st: json.dumps(_jsonable(st), indent=1, ensure_ascii=False),
        colour=lambda v: VERDICT_COLOURS.get(v, "#57606a"), controls_cell=_controls_cell,
        marks={True: "behaves as a control", False: "control FAILED", None: "inconclusive"})
    atomic_write_text(path, page)
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
                      "wall_s": round(s.wall_s, 2), "error": s.error, "counted": s.counted})


def write_json(sections: list[Section], provenance: dict, path: Path) -> Path:
    """``report.json``: the provenance and every section's claim, verdict, key numbers, controls, settings."""
    return atomic_write_json(path, {"format": 1, "provenance": _jsonable(provenance),
                                    "sections": [section_dict(s) for s in sections]}, indent=1)
