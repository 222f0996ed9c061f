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
