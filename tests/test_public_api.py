"""The package's public surface: dir(deeplimit) lists the API and the subpackages only, each name resolves, and
no module is shadowed by a function of the same name."""

import types

import deeplimit as dl


def test_dir_lists_the_api_only() -> None:
    names = dir(dl)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    assert not {"Any", "annotations", "importlib"} & set(names)
    for name in names:
        assert getattr(dl, name) is not None, name


def test_subpackages_resolve_like_sweep() -> None:
    for name in ("transfer", "sweep", "protocol", "train"):
        assert isinstance(getattr(dl, name), types.ModuleType), name
    assert dl.TrainConfig is dl.train.TrainConfig
    assert callable(dl.train.train)


def test_no_module_is_shadowed_by_a_function() -> None:
    """``import deeplimit.x.y as m`` must give the module: a function ``y`` exported by ``deeplimit.x`` would
    shadow it (the coordinate-check module was ``diagnostics.coord_check`` beside the function of that name)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(dl.__path__, "deeplimit."):
        if info.name.startswith("deeplimit.cli"):
            continue  # the CLI's modules are named after its commands, not exported
        parent, _, leaf = info.name.rpartition(".")
        value = getattr(importlib.import_module(parent), leaf, None)
        assert value is None or isinstance(value, types.ModuleType), f"{info.name} is shadowed by {value!r}"


def test_no_top_level_module_shares_its_name_with_a_module_of_a_subpackage() -> None:
    """``deeplimit.studies`` beside ``deeplimit.sde.studies`` read as one thing; a top-level module's name says what
    it holds only if no subpackage module has it too (the CLI's modules are named after its commands: exempt)."""
    from pathlib import Path

    root = Path(dl.__file__).parent
    top = {p.stem for p in root.glob("*.py")} - {"__init__", "__main__"}
    nested = {p.stem: p.relative_to(root) for p in root.glob("*/**/*.py") if p.parts[len(root.parts)] != "cli"}
    clashes = sorted(f"deeplimit.{n} vs {nested[n]}" for n in top & set(nested))
    assert not clashes, clashes
