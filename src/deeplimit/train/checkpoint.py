"""A run's files: its checkpoint — one file, written atomically, read with ``weights_only=True``, keyed by the config's
fingerprint (:meth:`TrainConfig.fingerprint`).

:class:`RunFolder` is the trainer's only door to the file system for a run: it checks the folder before any work
(:meth:`RunFolder.open`), prepares it once the run is under way (:meth:`RunFolder.start`) and saves
(:meth:`RunFolder.save`); :func:`write_outputs` writes the finished run's tables. The loop itself never calls
:mod:`deeplimit.io`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.io import (
    JSON_TEXT,
    atomic_save,
    atomic_torch_save,
    atomic_write_json,
    check_fields,
    check_folder,
    ensure_dir,
    remove_stale_temps,
    safe_torch_load,
)
from deeplimit.scaling.plan import canonical_name
from deeplimit.train.config import _NOT_IN_FINGERPRINT, TrainConfig

CHECKPOINT = "ckpt.pt"
CHECKPOINT_FORMAT = 2

# What a resume reads from a checkpoint (a file with the right fingerprint but damaged fields is refused).
_CHECKPOINT_FIELDS = {
    "model": dict, "optimizer": {"state": dict, "param_groups": list},
    "extra": {"step": int, "wall_s": (int, float), "losses": torch.Tensor, "rows": JSON_TEXT, "result": str},
}
# Muon's CombinedOptimizer saves one state per part ({"parts": {name: state}}): the same check, per part
_COMBINED_OPTIMIZER_FIELDS = {"parts": dict}


@dataclass
class Resumed:
    """What a checkpoint of this config holds: where the run stopped, and what it had computed so far."""

    step: int
    wall_s: float
    losses: list[float]
    rows: list[dict]
    model: dict
    optimizer: dict
    result: dict | None  # the stored summary of a finished run (None while unfinished)


class RunFolder:
    """The checkpoint of one run in ``run_dir`` (``run_dir/ckpt.pt``; the plan beside it as ``ckpt.pt.plan.json``).

    Build it with :meth:`open`; ``None`` stands for "no run folder" everywhere in the trainer.
    """

    def __init__(self, path: Path, cfg: TrainConfig, fingerprint: str, fresh: bool) -> None:
        self.path, self.cfg, self.fingerprint, self.fresh = path, cfg, fingerprint, fresh
        self.resumed: Resumed | None = None

    @classmethod
    def open(cls, run_dir: str | Path | None, cfg: TrainConfig, *, fresh: bool = False) -> RunFolder | None:
        """Check ``run_dir`` (writable, or creatable) and read a checkpoint of this config from it, if any, without
        creating anything; a checkpoint of another config is a DeeplimitError naming the differing fields."""
        if run_dir is None:
            return None
        folder = cls(check_folder(run_dir, "run folder") / CHECKPOINT, cfg, cfg.fingerprint(), fresh)
        if folder.path.exists() and not fresh:
            folder.resumed = _resumed(_load(folder.path, cfg, folder.fingerprint))
        return folder

    @property
    def folder(self) -> Path:
        return self.path.parent

    def start(self, plan: Any) -> None:
        """Create the folder once the run is under way (a run refused for its data or size leaves nothing behind),
        clear what a run killed while saving left, discard the old checkpoint with ``fresh`` and, on a new run,
        write the plan for people and ``dl.load_checkpoint``."""
        ensure_dir(self.folder, "run folder")
        remove_stale_temps(self.path)
        if self.fresh:
            self.path.unlink(missing_ok=True)
        if self.resumed is None:
            atomic_write_json(self.path.with_name(CHECKPOINT + ".plan.json"), plan.to_dict())

    def save(self, model: nn.Module, opt: torch.optim.Optimizer, *, step: int, losses: list[float],
             rows: list[dict], wall_s: float, result: dict | None = None) -> None:
        """Write the checkpoint of ``step`` atomically (``result``: the finished run's summary)."""
        blob = {
            "format": CHECKPOINT_FORMAT,
            "model": {canonical_name(k): v for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "extra": {
                "config": json.dumps(self.cfg.to_dict(), default=list),
                "fingerprint": self.fingerprint,
                "step": step,
                "losses": torch.tensor(losses, dtype=torch.float64),
                # JSON keeps rows to plain types (a weights_only load accepts no numpy scalars); floats round-trip
                "rows": json.dumps(rows, default=float),
                "wall_s": wall_s,
                "result": json.dumps(result) if result is not None else "",
            },
        }
        atomic_torch_save(blob, self.path)


def check_output_folder(out: str | Path) -> None:
    """Refuse an output folder that cannot be written, before any work (nothing is created)."""
    check_folder(out, "output folder")


def write_outputs(out: str | Path, rows: list[dict], summary: dict) -> None:
    """Write a run's tidy rows (``rows.csv``) and its summary (``summary.json``) into ``out``, atomically."""
    import pandas as pd

    out_dir = ensure_dir(out, "output folder")
    table = pd.DataFrame(rows)
    atomic_save(out_dir / "rows.csv", lambda fh: fh.write(table.to_csv(index=False).encode()))
    atomic_write_json(out_dir / "summary.json", summary)


def restore(resumed: Resumed, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Load a checkpoint's weights (saved under canonical names: a compiled or wrapped model resumes too) and
    optimizer state into a freshly built model and optimizer."""
    own = {canonical_name(k): k for k in model.state_dict()}
    model.load_state_dict({own[k]: v for k, v in resumed.model.items()})
    opt.load_state_dict(resumed.optimizer)


def _resumed(blob: dict) -> Resumed:
    extra = blob["extra"]
    result = json.loads(extra["result"]) if extra.get("result") else None
    return Resumed(step=int(extra["step"]), wall_s=float(extra["wall_s"]), losses=extra["losses"].tolist(),
                   rows=json.loads(extra["rows"]), model=blob["model"], optimizer=blob["optimizer"], result=result)


def _config_diff(saved: dict, cfg: TrainConfig) -> str:
    now = cfg.to_dict()
    diffs = []
    for k in sorted(set(saved) | set(now)):
        if k in _NOT_IN_FINGERPRINT:
            continue
        a, b = saved.get(k), now.get(k)
        if isinstance(a, list) and isinstance(b, tuple):
            b = list(b)
        if a != b:
            diffs.append(f"{k}: {a!r} → {b!r}")
    return ", ".join(diffs[:6]) + (" …" if len(diffs) > 6 else "") if diffs else "the content of the data file(s)"



def _load(path: Path, cfg: TrainConfig, fingerprint: str) -> dict:
    """The checkpoint's contents, or a DeeplimitError if it belongs to another config or is unreadable."""
    blob = safe_torch_load(path, "checkpoint")
    extra = blob.get("extra", {}) if isinstance(blob, dict) else {}
    if not isinstance(extra, dict) or "fingerprint" not in extra:
        raise DeeplimitError(f"checkpoint {path} has no config record (written by another tool or an older "
                             "deeplimit), so it cannot be matched to this run; start over with --fresh "
                             "(fresh=True) or use another run folder")
    if extra["fingerprint"] != fingerprint:
        saved = json.loads(extra["config"]) if extra.get("config") else {}
        raise DeeplimitError(f"{path.parent} holds a checkpoint of a different run ({_config_diff(saved, cfg)}); "
                             "start over with --fresh (fresh=True) to discard it, or use another run folder")
    combined = isinstance(blob.get("optimizer"), dict) and "parts" in blob["optimizer"]
    check_fields(blob, {**_CHECKPOINT_FIELDS, "optimizer": _COMBINED_OPTIMIZER_FIELDS} if combined
                 else _CHECKPOINT_FIELDS, path, "checkpoint")
    if combined:
        for name, part in blob["optimizer"]["parts"].items():
            check_fields({"optimizer": part}, {"optimizer": _CHECKPOINT_FIELDS["optimizer"]}, path,
                         f"checkpoint (optimizer part {name!r} of)")
    return blob


