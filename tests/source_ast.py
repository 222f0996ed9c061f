"""deeplimit's source parsed once per test process.

Several architecture tests read every module's syntax tree (test_layers, test_import_cycles, test_signatures):
each parsed all ~100 modules again, ~0.5 s a pass, one or more passes per test.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of the source file ``path``, parsed on first use. Callers only read it."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
