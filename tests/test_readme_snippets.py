"""Every ```python block of README.md and docs/hf.md runs as written (issue 21 item 8).

A page is read top to bottom, so its blocks run in page order in one namespace, in a fresh interpreter whose
working directory is a temporary folder (snippets that write ``runs/…`` or ``ckpt`` write there). Nothing is
edited, shortened or mocked: the sizes are the page's. A failure names the page, the block's first line number
and the error. Blocks fenced as ```text or ``` (shell commands, output) are not Python and are not run.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/hf.md"]
OPTIONAL = {"transformers", "accelerate", "lightning"}  # the [hf] and [lightning] extras
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)

# Runs each block in one namespace; prints the block's line on failure so the assertion can name it.
RUNNER = """
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
for line, code in blocks:
    try:
        exec(compile(code, f"{sys.argv[1]}:{line}", "exec"), ns)
    except BaseException:
        print(f"BLOCK {line} FAILED", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def python_blocks(page: str) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for every ```python block of ``page``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_the_pages_have_python_blocks():
    assert python_blocks("README.md"), "README.md lost its ```python blocks (or their fence)"
    assert len(python_blocks("docs/hf.md")) >= 3


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_runs_as_written(page, tmp_path):
    import json

    blocks = python_blocks(page)
    imported = {m for _, code in blocks for m in re.findall(r"^(?:from|import) (\w+)", code, re.M)}
    missing = sorted(m for m in imported & OPTIONAL if importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"{page} imports {missing}, not installed (pip install -e .[hf,lightning])")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", RUNNER, page], input=json.dumps(blocks), capture_output=True,
                       text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, f"{page}: {r.stderr[-3000:]}"
