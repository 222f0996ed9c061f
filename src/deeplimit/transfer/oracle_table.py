"""Tables of runs into the transfer oracle (:mod:`deeplimit.transfer.oracle`): CSV or Parquet files, the long
table of one of the project's sweeps (reduced to one row per run), the ``--where`` filter (a fixed grammar
``COL OP VALUE`` joined by ``and``; nothing is evaluated as code) and ``--at`` targets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from deeplimit.errors import DeeplimitError

__all__ = ["load_runs", "runs_from_sweep", "one_row_per_run", "parse_where", "apply_where", "parse_at"]


# ------------------------------------------------------------------------------------------------
# Tables in
# ------------------------------------------------------------------------------------------------
def load_runs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A table of runs from a ``.csv`` or ``.parquet`` file (one row per run, or a sweep's long table)."""
    p = Path(path)
    if not p.is_file():
        raise DeeplimitError(f"no table of runs at {p}; give a .csv or .parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as exc:
        raise DeeplimitError(f"cannot read {p} as a table ({type(exc).__name__}: {exc}); fix or re-export the "
                             "file") from None
    raise DeeplimitError(f"{p} is neither .csv nor .parquet; export the runs as one of those")


def runs_from_sweep(storage: str, name: str) -> pd.DataFrame:
    """The long results table of the project's sweep ``name`` in ``storage`` (what ``deeplimit sweep results``
    writes); :func:`fit_oracle` reduces it to one row per run."""
    from deeplimit.transfer.table import transfer_results

    return transfer_results(storage, name)


def one_row_per_run(frame: pd.DataFrame, loss: str) -> tuple[pd.DataFrame, str]:
    """A sweep's long table (columns ``run_id, step, metric, value``) → one row per run with column ``loss``
    holding the metric ``loss`` at the run's last step; any other table unchanged."""
    if not {"run_id", "metric", "value"} <= set(frame.columns):
        return frame, loss
    from deeplimit.transfer.analysis import final_values

    metrics = sorted(map(str, frame["metric"].dropna().unique()))
    if loss == "value":
        if len(metrics) != 1:
            raise DeeplimitError(f"the long table holds several metrics {metrics}; name one with --loss METRIC")
        loss = metrics[0]
    if loss not in metrics:
        raise DeeplimitError(f"--loss {loss!r} is neither a column nor a metric of the long table (metrics: "
                             f"{metrics}); pass --loss METRIC")
    runs = final_values(frame, metric=loss)
    return runs.rename(columns={"value": f"_{loss}"}), f"_{loss}"


_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|<=|>=|=|<|>)|(?P<quoted>'[^']*'|\"[^\"]*\")|(?P<word>[^\s=!<>'\"]+))")
_OPS = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_WHERE_HELP = "write COL OP VALUE [and COL OP VALUE …], OP one of == != < <= > >=, e.g. \"rule == 'mup' and N >= 1e6\""


def parse_where(expr: str) -> list[tuple[str, str, str | float]]:
    """``"rule == 'mup' and N >= 1e6"`` → ``[("rule", "==", "mup"), ("N", ">=", 1e6)]``.

    The grammar is ``COL OP VALUE`` joined by ``and``; a quoted VALUE is a string, an unquoted one a number if
    it parses as one. Nothing is evaluated as code."""
    text = str(expr)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise DeeplimitError(f"--where {expr!r}: cannot read {text[pos:].strip()!r}; {_WHERE_HELP}")
        kind = m.lastgroup or "word"
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    clauses: list[list[tuple[str, str]]] = [[]]
    for kind, tok in tokens:
        if kind == "word" and tok.lower() == "and":
            clauses.append([])
        else:
            clauses[-1].append((kind, tok))
    out: list[tuple[str, str, str | float]] = []
    for clause in clauses:
        if len(clause) != 3 or clause[0][0] != "word" or clause[1][0] != "op" or clause[2][0] == "op":
            shown = " ".join(t for _, t in clause) or "(nothing)"
            raise DeeplimitError(f"--where {expr!r}: {shown!r} is not COL OP VALUE; {_WHERE_HELP}")
        (_, col), (_, op), (kind, raw) = clause
        value: str | float
        if kind == "quoted":
            value = raw[1:-1]
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        out.append((col, _OPS[op], value))
    return out


def apply_where(frame: pd.DataFrame, expr: str | None) -> pd.DataFrame:
    """The rows of ``frame`` that satisfy every clause of :func:`parse_where` (``None``: all rows)."""
    if expr is None or not str(expr).strip():
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for col, op, value in parse_where(expr):
        if col not in frame.columns:
            raise DeeplimitError(f"--where names column {col!r}, which the table lacks (columns: "
                                 f"{list(frame.columns)})")
        series = frame[col]
        if isinstance(value, float):
            nums = pd.to_numeric(series, errors="coerce")
            if nums.isna().all() and series.notna().any():
                raise DeeplimitError(f"--where {col} {op} {value:g}: column {col!r} holds text; quote the value "
                                     f"({col} {op} '…')")
            left = nums.to_numpy(float)
        else:
            if op not in ("==", "!="):
                raise DeeplimitError(f"--where {col} {op} {value!r}: only == and != compare text; use a number")
            left = series.astype(str).to_numpy()
        with np.errstate(invalid="ignore"):
            hit = {"==": left == value, "!=": left != value, "<": left < value, "<=": left <= value,
                   ">": left > value, ">=": left >= value}[op]
        mask &= np.asarray(hit, dtype=bool)
    out = frame[mask]
    if out.empty:
        raise DeeplimitError(f"--where {expr!r} keeps no run; check the column values")
    return out


def parse_at(text: str) -> dict[str, float | str]:
    """``"N=1.07e9,D=2e10"`` → ``{"N": 1.07e9, "D": 2e10}`` (numbers where they parse; group labels as text)."""
    out: dict[str, float | str] = {}
    for item in str(text).split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise DeeplimitError(f"--at {text!r}: expected NAME=VALUE[,NAME=VALUE…], e.g. --at N=1.07e9,D=2e10")
        if key in out:
            raise DeeplimitError(f"--at {text!r} names {key} twice")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out
