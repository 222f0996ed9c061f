"""One command-line grammar: one typed ``--set`` parser, one set of exit codes, one thread helper, ``rule``
everywhere a scaling rule is meant (sweeps stored as ``preset`` still load), rule names with ``-`` or ``_``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from deeplimit.cli._args import fields_of, parse_sets, rule_arg
from deeplimit.errors import DeeplimitError

SRC = Path(__file__).resolve().parents[1] / "src" / "deeplimit"


# ---------------------------------------------------------------------------------------------------------
# 1. One --set parser, typed by a config's fields
@dataclass
class _Config:
    flag: bool = False
    count: int = 1
    rate: float = 0.5
    name: str = "relu"
    sizes: list[int] = field(default_factory=list)
    betas: tuple[float, float] = (0.9, 0.999)
    base: int | None = None


def test_values_are_read_as_their_fields_types():
    sets = parse_sets(["flag=true", "count=3", "rate=1", "name=abs", "sizes=8,16", "betas=(0.9, 0.95)",
                       "base=none"], fields_of(_Config))
    assert sets == {"flag": True, "count": 3, "rate": 1.0, "name": "abs", "sizes": [8, 16], "betas": (0.9, 0.95),
                    "base": None}
    assert type(sets["flag"]) is bool and type(sets["rate"]) is float
    assert parse_sets(["sizes=4"], fields_of(_Config)) == {"sizes": [4]}  # one item is a list of one
    assert parse_sets(["flag=0", "base=4"], fields_of(_Config)) == {"flag": False, "base": 4}


@pytest.mark.parametrize("item, fragment", [
    ("flag=perhaps", "--set flag is a yes/no option"),
    ("flag=2", "--set flag is a yes/no option"),
    ("count=2.5", "--set count=2.5: expected a whole number"),
    ("rate=fast", "expected a number"),
    ("sizes=8,x", "expected a comma-separated list of whole numbers"),
    ("betas=0.9", "betas"),
    ("nope=1", "--set nope: no such setting here; valid: base, betas, count, flag, name, rate, sizes"),
    ("count=", "has no value"),
    ("count", "expects KEY=VALUE"),
])
def test_bad_values_and_unknown_names_are_one_line_errors(item, fragment):
    with pytest.raises(DeeplimitError, match=re.escape(fragment)) as info:
        parse_sets([item], fields_of(_Config))
    assert "\n" not in str(info.value)


def test_names_take_dashes_or_underscores_and_come_back_as_the_field_spells_them():
    fields = {"block_mult": float, "train_io": bool}
    assert parse_sets(["block-mult=0.35", "Train-IO=yes"], fields) == {"block_mult": 0.35, "train_io": True}
    with pytest.raises(DeeplimitError, match="given twice"):
        parse_sets(["block-mult=1", "block_mult=2"], fields)


def test_sweep_set_reads_a_flag_as_a_bool_and_takes_dashed_names():
    from deeplimit.transfer.grids import grid_fields

    # before: 'true' stayed the string 'true' in sweep (True in train), and block-mult was refused
    sets = parse_sets(["train_io=true", "block-mult=0.35", "depth=8,16", "log2_lr=-10:-5:0.5", "tier=smoke"],
                      grid_fields("activation"))
    assert sets == {"train_io": True, "block_mult": 0.35, "depth": [8, 16], "log2_lr": "-10:-5:0.5",
                    "tier": "smoke"}
    assert parse_sets(["log2_lr=-9"], grid_fields("activation")) == {"log2_lr": -9.0}  # the trainer's float
    assert parse_sets(["seeds=3", "depths=1,4"], grid_fields("demo-quadratic")) == {"seeds": 3, "depths": [1, 4]}
    with pytest.raises(DeeplimitError, match="no such setting here; valid: .*block_mult"):
        parse_sets(["blok_mult=1"], grid_fields("activation"))


def test_sweep_create_stores_typed_settings(tmp_path, capsys):
    from deeplimit.cli.sweep import main
    from deeplimit.sweep.create import load_sweep
    from deeplimit.sweep.storage import open_storage

    run = tmp_path / "run"
    assert main(["create", "--name", "a", "--run-dir", str(run), "--grid", "activation", "--set", "tier=smoke",
                 "--set", "data=digits", "--set", "block-mult=0.35", "--set", "train_io=true"]) == 0
    url = f"sqlite:///{run / 'sweep.db'}"
    _, spec = load_sweep(open_storage(url, create=False), "a", url)
    assert spec.fixed["block_mult"] == 0.35 and spec.fixed["train_io"] is True
    capsys.readouterr()
    assert main(["create", "--name", "b", "--run-dir", str(run), "--grid", "activation", "--set",
                 "train_io=perhaps"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--set train_io is a yes/no option" in err and len(err.splitlines()) == 1


def test_reproduce_set_is_typed_by_the_sections_settings():
    from deeplimit.cli.reproduce import _overrides

    assert _overrides(["coord-check.train-io=false", "stopping.paths=64", "coord_check.depths=4,8"]) == {
        "coord-check": {"train_io": False, "depths": [4, 8]}, "stopping": {"paths": 64}}
    with pytest.raises(DeeplimitError, match="--set coord-check.train_io is a yes/no option"):
        _overrides(["coord-check.train_io=maybe"])
    with pytest.raises(DeeplimitError, match="sde.paths=1.5: expected a whole number"):
        _overrides(["sde.paths=1.5"])


# ---------------------------------------------------------------------------------------------------------
# 2. One set of exit codes
def _code(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def test_exit_codes_are_defined_once():
    from deeplimit import runtime
    from deeplimit.cli import EXIT_BAD_INPUT
    from deeplimit.sweep import launch, worker

    assert (runtime.EXIT_OK, runtime.EXIT_FAILED, runtime.EXIT_BAD_INPUT, runtime.EXIT_INTERRUPTED) == (0, 1, 2, 130)
    assert EXIT_BAD_INPUT is runtime.EXIT_BAD_INPUT and worker.EXIT_FAILED is launch.EXIT_FAILED
    define = re.compile(r"^\s*(EXIT_(?:OK|FAILED|BAD_INPUT|ERROR|INTERRUPTED)\b[\w, ]*)=", re.M)
    literal = re.compile(r"sys\.exit\(\s*\d|return\s+(?:2|130)\b|codes\.append\(\s*\d")
    where = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if define.search(_code(p))}
    assert where == {"runtime.py"}, where
    bare = [str(p.relative_to(SRC)) for p in [*SRC.glob("cli/*.py"), *SRC.glob("sweep/*.py")]
            if literal.search(_code(p))]
    assert not bare, f"exit codes written as numbers: {bare}"


# ---------------------------------------------------------------------------------------------------------
# 3. Thread setting in one place
def test_threads_are_set_in_one_place():
    # sde/_linalg.py's blas_threads is not a process setting: it limits BLAS inside one solver call, to torch's count
    hits = sorted({str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if re.search(r"set_num_threads|OMP_NUM_THREADS|threadpool_limits", _code(p))} - {"sde/_linalg.py"})
    assert hits == ["runtime.py"], hits


def test_set_threads_sets_torch_the_environment_and_blas(monkeypatch):
    import torch

    from deeplimit.runtime import THREAD_VARS, set_threads, thread_env

    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and all(os.environ[v] == "1" for v in THREAD_VARS)
        set_threads(None)  # leaves things as they are
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert thread_env(3) == {v: "3" for v in THREAD_VARS}


# ---------------------------------------------------------------------------------------------------------
# 4. `rule` wherever a scaling rule is meant; stored `preset` sweeps still load; rule names with - or _
def test_rule_names_take_dashes_or_underscores():
    from deeplimit.transfer.grids import build_grid

    assert rule_arg("depth-mup") == rule_arg("Depth_MuP") == "depth_mup" and rule_arg("standard") == "sp"
    assert build_grid("depth-transfer", rule="depth-mup").axes["rule"] == ("depth_mup",)
    from deeplimit.cli import main

    assert main(["plan", "--rule", "blocks-only", "--width", "8", "--depth", "2"]) == 0


def test_no_preset_means_a_rule_in_the_grids_the_report_or_the_command_line():
    from deeplimit.report.context import Context
    from deeplimit.report.sweeps import sweep_command
    from deeplimit.transfer.experiments import ANALYSIS, EXPERIMENTS
    from deeplimit.transfer.grids import EXPERIMENT_GRIDS, build_grid

    for name in EXPERIMENT_GRIDS:
        spec = build_grid(name, tier="smoke") if name in EXPERIMENTS else build_grid(name)
        assert "preset" not in {*spec.axes, *spec.fixed}, name
    ctx = Context(Path("out"), "smoke", 2, "sqlite:///x.db")
    commands = " ".join(sweep_command(ctx, name, "n") for name in ANALYSIS)
    assert "--group rule" in commands and "preset" not in commands
    assert not [p for p in SRC.rglob("*.py") if "--preset" in p.read_text()]


def test_grids_doc_cites_only_names_that_exist():
    import importlib

    from deeplimit.transfer import grids

    refs = re.findall(r":data:`(deeplimit\.[\w.]+)`", grids.__doc__)
    assert refs
    for ref in refs:
        module, _, name = ref.rpartition(".")
        assert hasattr(importlib.import_module(module), name), ref


def _old_demo_spec():
    """A demo sweep as versions before the rename stored it: the rule axis is called ``preset``."""
    from deeplimit.sweep.grid import SweepSpec
    from deeplimit.transfer.experiments import log2_grid

    return SweepSpec(axes={"preset": ["sp", "depth_scaled"], "depth": [1, 4], "log2_lr": log2_grid(-11.0, 1.0, 12.0),
                           "seed": [0]},
                     fixed={"width": 16, "steps": 50}, objective="deeplimit.transfer.demo:quadratic",
                     metric="train_loss_final", description="old demo")


def test_a_sweep_stored_as_preset_still_runs_resumes_and_reads_as_rule(tmp_path, capsys):
    from deeplimit.cli.sweep import main
    from deeplimit.sweep import create_sweep, run_worker
    from deeplimit.transfer.sweeps import create_transfer_sweep
    from deeplimit.transfer.table import transfer_results

    run = tmp_path / "old"
    old = create_sweep("old", _old_demo_spec(), run_dir=run)
    assert run_worker(old.storage, "old", heartbeat_interval=1, threads=None).completed == len(old.spec) == 8
    # today's grid resumes it: same points (the stored axis keeps its name), nothing runs again
    again = create_transfer_sweep("old", grid="demo-quadratic", run_dir=run,
                                  overrides={"depths": [1, 4], "seeds": 1, "steps": 50, "lr_step": 12.0})
    assert (again.points, again.done) == (8, 8)
    table = transfer_results(old.storage, "old")
    assert "rule" in table.columns and "preset" not in table.columns and list(table.columns[:3]) == [
        "experiment", "run_id", "rule"]
    assert set(table["rule"]) == {"sp", "depth_scaled"}
    assert main(["results", "--name", "old", "--run-dir", str(run)]) == 0 and "8 runs" in capsys.readouterr().out
    assert "rule" in pd.read_csv(run / "results" / "long.csv").columns


def test_a_json_spec_and_a_point_that_say_preset_still_load(tmp_path):
    from deeplimit.transfer.objectives import current_point, train_objective
    from deeplimit.transfer.sweeps import spec_from

    path = tmp_path / "old.json"
    path.write_text(json.dumps({k: v for k, v in _old_demo_spec().to_dict().items()}))
    assert spec_from(spec_file=path).axes["preset"] == ("sp", "depth_scaled")
    assert current_point({"preset": "mup", "width": 8}) == {"rule": "mup", "width": 8}
    with pytest.raises(DeeplimitError, match="both 'preset' and 'rule'"):
        current_point({"preset": "mup", "rule": "sp"})
    point = {"preset": "depth_mup", "model": "mlp-resnet", "width": 8, "depth": 2, "data": "digits", "steps": 2}
    train_objective.validate(point)  # a stored trainer point naming its rule 'preset' is still valid


def test_coord_check_sizes_name_their_axis_and_a_list_for_the_other_axis_is_refused(capsys):
    """`--widths` alone means a width check (it was silently ignored by a default depth check); a size list that does
    not match --axis, or both lists, is a one-line error before any work."""
    from deeplimit.cli import main
    from deeplimit.cli.coord_check import _axis

    assert _axis(None, [32, 64], None) == "width"
    assert _axis(None, None, [2, 4]) == "depth" and _axis(None, None, None) == "depth"
    assert _axis("width", [32, 64], None) == "width"
    for argv, fragment in ((["--axis", "depth", "--widths", "32", "64"], "--widths does not apply to --axis depth"),
                           (["--axis", "width", "--depths", "2", "4"], "--depths does not apply to --axis width"),
                           (["--widths", "32", "64", "--depths", "2", "4"], "--widths and --depths both given")):
        assert main(["coord-check", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
