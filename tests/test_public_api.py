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
