import deeplimit as dl


def test_version():
    assert dl.__version__
