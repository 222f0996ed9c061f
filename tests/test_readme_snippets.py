"""Every ```python block of README.md and docs/hf.md runs as written (issue 21 item 8).

A page is read top to bottom, so its blocks run in page order in one namespace of their own, whose working
directory is a temporary folder of the page's own (snippets that write ``runs/…`` or ``ckpt`` write there). The
pages run one after the other in the test process (see ``outcomes``). Nothing is edited, shortened or mocked:
the sizes are the page's. A failure names the page, the block's first line number and the error. Blocks fenced
as ```text or ``` (shell commands, output) are not Python and are not run.
"""

import importlib.util
import os
import re
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/hf.md"]
OPTIONAL = {"transformers", "accelerate", "lightning"}  # the [hf] and [lightning] extras
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(page: str) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for every ```python block of ``page``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_the_pages_have_python_blocks():
    assert python_blocks("README.md"), "README.md lost its ```python blocks (or their fence)"
    assert len(python_blocks("docs/hf.md")) >= 3


def _missing(page: str) -> list[str]:
    """The optional extras a page imports that are not installed."""
    imported = {m for _, code in python_blocks(page) for m in re.findall(r"^(?:from|import) (\w+)", code, re.M)}
    return sorted(m for m in imported & OPTIONAL if importlib.util.find_spec(m) is None)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Every page that can run: page -> None (every block ran) or the failing block's line and traceback.

    Each page runs in a namespace and a working directory of its own, in this process: its namespace starts empty,
    so a block must still import every name it uses, and a fresh interpreter only repeated the imports of torch,
    transformers and Lightning that this one has made already (~7 s of CPU)."""
    root = tmp_path_factory.mktemp("pages")
    here, dtype = os.getcwd(), torch.get_default_dtype()
    outcome: dict[str, str | None] = {}
    try:
        for i, page in enumerate(p for p in PAGES if not _missing(p)):
            folder = root / f"page{i}"
            folder.mkdir()
            os.chdir(folder)
            namespace = {"__name__": "__main__"}
            outcome[page] = None
            for line, code in python_blocks(page):
                try:
                    exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102 - the page's own code
                except Exception:  # noqa: BLE001 - reported with the page and block below
                    outcome[page] = f"BLOCK {line} FAILED\n" + traceback.format_exc()
                    break
    finally:
        os.chdir(here)
        torch.set_default_dtype(dtype)
    return outcome


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_runs_as_written(page, outcomes):
    missing = _missing(page)
    if missing:
        pytest.skip(f"{page} imports {missing}, not installed (pip install -e .[hf,lightning])")
    assert outcomes[page] is None, f"{page}: {outcomes[page][-3000:]}"
