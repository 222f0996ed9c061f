"""The run's context (output folder, tier, workers, storage, overrides, code fingerprints), the settings of
the non-sweep sections per tier, and the cache of their JSON summaries (keyed on their settings, on the code
that computes them and, for the trained ones, on the content of their data)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.io import atomic_write_text, read_json
from deeplimit.protocol import protocol

# SDE settings per tier: paths of the comparisons (and of their unshaped control), samples of the ablations,
# stopping-map grid and paths, the widths of the stopping width check and of the KS-vs-n convergence study.
SDE_TIER = {
    "smoke": dict(paths=256, ctrl_paths=128, abl_paths=64, map_gammas=[0.1, 0.5, 1.0], map_tau0s=[0.25, 1.0, 4.0],
                  map_paths=16, n_att=64, d_att=48, width_ns=[50, 200], width_gammas=[0.5], width_tau0s=[1.0],
                  width_paths=16, conv_ns=[3, 6, 12, 24], conv_gammas=[0.5, 1.0], conv_paths=512, conv_reps=20),
    "quick": dict(paths=4096, ctrl_paths=1024, abl_paths=512, map_gammas=[0.0, 0.125, 0.25, 0.5, 0.75, 1.0],
                  map_tau0s=[2.0**k for k in range(-6, 7, 2)], map_paths=48, n_att=200, d_att=150,
                  width_ns=[200, 800, 3200], width_gammas=[0.125, 0.5], width_tau0s=[1.0, 4.0], width_paths=32,
                  conv_ns=[3, 6, 12, 24, 48, 96], conv_gammas=[0.1, 0.25, 0.5, 1.0], conv_paths=8192, conv_reps=50),
    "full": dict(paths=4096, ctrl_paths=4096, abl_paths=8192, map_gammas=None, map_tau0s=None, map_paths=100,
                 n_att=200, d_att=150, width_ns=[200, 800, 3200, 12800], width_gammas=[0.125, 0.5],
                 width_tau0s=[1.0, 4.0], width_paths=48, conv_ns=[3, 6, 12, 24, 48, 96, 192],
                 conv_gammas=[0.1, 0.25, 0.5, 1.0], conv_paths=8192, conv_reps=100),
}
SDE_TIER["standard"] = SDE_TIER["quick"]


def _sde_settings(tier: str) -> dict:
    t = SDE_TIER[tier]
    return {"paths": t["paths"], "n": t["n_att"], "d": t["d_att"], "bootstrap": 100, "control_paths": t["ctrl_paths"]}


def _rank_settings(tier: str) -> dict:
    return {"paths": SDE_TIER[tier]["abl_paths"], "m": 3}


def _stopping_settings(tier: str) -> dict:
    t = SDE_TIER[tier]
    return {"paths": t["map_paths"], "gammas": t["map_gammas"], "tau0s": t["map_tau0s"], "source": "both",
            "width_ns": t["width_ns"], "width_gammas": t["width_gammas"], "width_tau0s": t["width_tau0s"],
            "width_paths": t["width_paths"]}


def _convergence_settings(tier: str) -> dict:
    t = SDE_TIER[tier]
    return {"kind": "resnet", "ratio": 1 / 3, "ns": t["conv_ns"], "gammas": t["conv_gammas"],
            "paths": t["conv_paths"], "reps": t["conv_reps"], "m": 2, "seed": 0}


def _coord_settings(tier: str) -> dict:
    # lr 2^-4 for 40 Adam steps with input and readout frozen: large enough that the LR exponent shows —
    # at 2^-8 over 10 steps (the old setting) the (½, 0) rule also came out flat (measured, docs/reproduce.md).
    # smoke (1 seed, decides nothing): 3 steps, so its figure draws 4 panels a row, not 6 (drawing is most of its time)
    depths = {"smoke": [4, 16], "full": [4, 8, 16, 32, 64, 128]}.get(tier, [4, 8, 16, 32, 64])
    return {"depths": depths, "seeds": 1 if tier == "smoke" else 3, "steps": 3 if tier == "smoke" else 40,
            "width": 64, "lr": 2**-4, "train_io": False}


def _fd_settings(tier: str) -> dict:
    depths, steps, seeds = {"smoke": ([8, 16], 20, 1), "full": ([64, 128, 256, 512], 300, 3),
                            "standard": ([16, 64, 256], 300, 3)}.get(tier, ([16, 64], 300, 3))
    return {"depths": depths, "steps": steps, "seeds": seeds, "width": 128, "lr": 2**-8}


# Section → its settings at a tier (the sweep sections take theirs from their sweep grid).
SECTION_SETTINGS: dict[str, Callable[[str], dict]] = {
    "sde": _sde_settings,
    "rank-collapse": _rank_settings,
    "stopping": _stopping_settings,
    "coord-check": _coord_settings,
    "feature-diversity": _fd_settings,
    "sde-convergence": _convergence_settings,
    "coord-check-width": lambda tier: protocol().tier("coord-check-width", tier),
}


@dataclass
class Context:
    out: Path
    tier: str
    workers: int
    storage: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = False
    fresh: bool = False  # ignore every cache: recompute (sweeps under a new name, summaries rewritten)
    code: dict[str, str] = field(default_factory=dict)  # code fingerprints per kind (report.provenance)
    # "confirmation" decides verdicts; "pilot" tunes settings (protocol.toml) and its verdicts are exploratory
    seed_set: str = "confirmation"

    def sweep_tier(self) -> str:
        return self.tier

    def stamp(self, kind: str, data: str | None = None) -> str:
        """What a cached summary of ``kind`` must have been computed by: the code fingerprint of ``kind`` and,
        for a summary trained on ``data``, the data's content (:func:`data_fingerprint`)."""
        code = self.code.get(kind, "")
        return code if data is None else f"{code} data {data} {data_fingerprint(data)}"

    def settings(self, section: str) -> dict:
        """The section's settings at this tier with this run's overrides applied."""
        return {**SECTION_SETTINGS[section](self.tier), **self.overrides.get(section, {})}


def _check_type(section: str, key: str, value: Any, default: Any, example: Any) -> Any:
    """``value`` if it has the kind of ``default`` (an int where an int is expected, a list of numbers where a
    list is, …), else a one-line :class:`DeeplimitError`; ranges are checked by the section when it runs."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = number(value), "a finite number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a word"
    else:  # a grid: a list of numbers (one number is a grid of one), or none where the tier has no grid
        value = [value] if number(value) else list(value) if isinstance(value, tuple) else value
        ok = (value is None and default is None) or (
            isinstance(value, list) and len(value) > 0 and all(number(v) for v in value))
        kind = "a list of numbers"
    if not ok:
        raise DeeplimitError(f"--set {section}.{key}={value!r}: expected {kind}; e.g. --set {section}.{key}="
                             f"{json.dumps(example).replace(' ', '')}")
    # sizes before work: a count (paths, steps, seeds, widths…) of 0 or of billions fails here, in one line,
    # not as a crashed section or a MemoryError minutes later
    low, limit = (0, 2**32 - 1) if key == "seed" else (1, 10_000 if key == "seeds" else 10_000_000)
    if isinstance(default, int) and not isinstance(default, bool) and not low <= value <= limit:
        raise DeeplimitError(f"--set {section}.{key}={value}: expected a whole number from {low} to {limit:,}; e.g. "
                             f"--set {section}.{key}={json.dumps(example)}")
    return value


def check_settings(overrides: dict[str, dict[str, Any]] | None, tier: str = "smoke",
                   sweep_sections: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Refuse overrides of unknown sections or keys, and values of the wrong kind (a word where a number is
    expected); the ranges are checked by the section when it runs. ``sweep_sections``: the registry's sections
    that take their settings from the protocol's grid instead (named in the hint; the registry sits above the
    claim modules, which import this one, so it is passed in rather than imported)."""
    overrides = overrides or {}
    for section, values in overrides.items():
        if section not in SECTION_SETTINGS:
            hint = (" (sweep sections take their settings from the protocol's grid: deeplimit sweep create "
                    f"--grid {section} --set …)" if section in sweep_sections else "")
            raise DeeplimitError(f"no settings to override in section {section!r}{hint}; sections with "
                                 f"settings: {', '.join(SECTION_SETTINGS)}")
        known = SECTION_SETTINGS[section]("smoke")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DeeplimitError(f"unknown setting(s) {unknown} of section {section!r}; known: {', '.join(known)}")
        here = SECTION_SETTINGS[section](tier) if tier in SDE_TIER else known
        for key, value in list(values.items()):
            values[key] = _check_type(section, key, value, here[key], known[key] if here[key] is None else here[key])
    return overrides


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def data_fingerprint(name: str) -> str:
    """SHA-256 (12 hex digits) over the files of dataset ``name`` as this process would load them, or
    ``"missing"`` when one is absent: a cached summary trained on the data is reused only with the same data,
    and with the data gone it is recomputed (and fails, naming what is missing) rather than shown as if fresh.
    Only Fashion-MNIST is trained on by the report's cached sections."""
    from deeplimit.data.images import FASHION_MNIST_FILES, fashion_mnist_dir

    if name != "fashion-mnist":
        raise ValueError(f"no data fingerprint for {name!r}")
    folder = fashion_mnist_dir()
    h = hashlib.sha256()
    for split in sorted(FASHION_MNIST_FILES):
        for file in FASHION_MNIST_FILES[split]:
            path = folder / file
            try:
                st = os.stat(path)
                h.update(f"{file}\0{_file_digest(str(path), st.st_size, st.st_mtime_ns)}\0".encode())
            except OSError:
                return "missing"
    return h.hexdigest()[:12]


def cached(path: Path, settings: dict, compute: Callable[[], dict], code: str = "", fresh: bool = False) -> dict:
    """The JSON summary at ``path`` if it was computed with these ``settings`` by this ``code`` (a fingerprint
    of the source files it depends on, kept in ``<path>.code``), else ``compute()`` (which writes it).
    ``settings`` are compared as JSON, as stored; ``fresh`` always recomputes."""
    want = json.loads(json.dumps(settings, default=float))
    stamp = path.with_name(path.name + ".code")
    if path.is_file() and not fresh:
        try:
            summary = read_json(path, "cached result")
            same_code = (not code) or (stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == code)
        except (DeeplimitError, OSError, UnicodeDecodeError):  # unreadable cache or stamp: compute again (both
            # are rewritten atomically)
            summary, same_code = None, False
        if isinstance(summary, dict) and summary.get("settings") == want and same_code:
            return summary
    summary = compute()
    if code:
        atomic_write_text(stamp, code)
    return summary
