"""A bad ``deeplimit train`` or ``deeplimit sde`` command line is refused before torch is imported (in a fraction of
a second, not the 3-4 s of CPU an import of torch costs), with the same one-line message and exit code 2; the light
modules that make this possible (``deeplimit.train.config``, ``deeplimit.scaling.rules``, ``deeplimit.sde.names``)
still expose the same API."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# (argv, exit code, a piece of the one line on stderr); each is checked in one fresh process, in this order.
CASES = [
    (["train", "--batch-size", "0", "-q"], 2, "training option batch_size must be a positive integer, got 0"),
    (["train", "--lr", "-1"], 2, "training option lr must be a finite positive number, got -1.0"),
    (["train", "--steps", "1000000000"], 2, "training option steps must be at most 100,000,000"),
    (["train", "--seed", "-3"], 2, "training option seed must be an integer ≥ 0, got -3"),
    (["train", "--optimizer", "rmsprop"], 2, "training option optimizer must be one of"),
    (["train", "--data", " "], 2, "training option data must be a dataset name or a file path"),
    (["train", "--rule", "nope"], 2, "argument --rule: unknown rule 'nope'"),
    (["train", "--hf", "llama", "--model", "x"], 2, "give either --hf TYPE or --model NAME, not both"),
    (["train", "--help"], 0, ""),
    (["sde", "--bootstrap", "-1", "-q"], 2, "bootstrap must be an integer ≥ 0 (resamples; 0 skips standard errors)"),
    (["sde", "--seed", "-1"], 2, "seed must be an integer ≥ 0, got -1"),
    (["sde", "--help"], 0, ""),
]
HEAVY = ("torch", "pandas", "optuna", "scipy", "matplotlib")

CHILD = f"""
import contextlib, io, json, sys
from deeplimit.cli import main

out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    out.append([rc, err.getvalue(), sorted(m for m in {HEAVY!r} if m in sys.modules)])
out.append("deeplimit.train.config" in sys.modules)  # the refusals above went through the trainer's own checks
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refusals() -> list:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([argv for argv, _, _ in CASES])],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_command_lines_are_refused_in_one_line_without_torch(refusals, i):
    argv, code, message = CASES[i]
    rc, err, heavy = refusals[i]
    assert rc == code, err
    if code:
        assert err.count("\n") == 1 and err.startswith(f"deeplimit {argv[0]}: error: ") and message in err, err
    assert heavy == [], f"deeplimit {' '.join(argv)} imported {heavy} before refusing"


def test_the_refusals_came_from_the_trainers_config_and_the_model_is_still_checked(refusals):
    """The light path is the real one (the trainer's config module ran in the child), and the one check that needs
    the models (the model's name and options, after the cheap ones) still runs and still names the fix."""
    from deeplimit.errors import DeeplimitError
    from deeplimit.train import TrainConfig

    assert refusals[-1] is True
    with pytest.raises(DeeplimitError, match=r"^training option model must be one of mlp-resnet, .*got 'nope'$"):
        TrainConfig(model="nope")
    with pytest.raises(DeeplimitError, match="training option batch_size must be a positive integer"):
        TrainConfig(model="nope", batch_size=0)  # the cheap checks first, as before the split


def test_lazy_packages_resolve_every_public_name():
    import deeplimit.scaling as scaling
    import deeplimit.sde as sde
    import deeplimit.train as train

    for package in (scaling, sde, train):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        assert dir(package) == sorted(package.__all__)
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018 - the look-up is the test
    assert train.TrainConfig is train.config.TrainConfig and callable(train.train)
    assert scaling.hf.__name__ == "deeplimit.scaling.hf"  # a submodule nothing imported by name yet still resolves
    assert {"train_io", "mean_subtract", "readout_zero_init", "decay_vectors"} <= train.BOOL_KEYS
    assert not {"width", "lr", "activation"} & train.BOOL_KEYS


@pytest.mark.parametrize("package", ["scaling", "sde", "train"])
def test_readers_of_the_source_still_see_what_a_lazy_package_holds(package):
    """The report's code fingerprint and the import-graph tests follow ``import`` statements, not the strings of
    ``_LAZY``: the package's ``__init__`` names every module its lazy names come from, so an edit to one of them
    still changes the fingerprint of whatever imports the package."""
    import importlib

    from deeplimit.report.provenance import code_files

    lazy = importlib.import_module(f"deeplimit.{package}")._LAZY
    wanted = {module.removeprefix("deeplimit.").replace(".", "/") + ".py" for module in lazy.values()}
    seen = set(code_files([f"{package}/__init__.py"], skip=()))
    assert wanted <= seen, sorted(wanted - seen)
