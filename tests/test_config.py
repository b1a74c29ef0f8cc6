import json

import pytest

from virtualcell.config import ConfigError, Configurable


class Scaler(Configurable):
    def __init__(self, factor: float = 2.0, names=("a", "b"), *, options=None):
        self.factor = factor


class Child(Scaler):
    def __init__(self, extra: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra


def test_init_arguments_are_captured_with_defaults():
    s = Scaler(3.0)
    assert dict(s.config) == {"factor": 3.0, "names": ("a", "b"), "options": None}
    assert json.loads(s.config_json()) == {"factor": 3.0, "names": ["a", "b"], "options": None}


def test_config_is_read_only():
    s = Scaler()
    with pytest.raises(TypeError):
        s.config["factor"] = 5  # type: ignore[index]


def test_subclass_captures_outermost_arguments_once():
    c = Child(extra=4, factor=1.5)
    assert dict(c.config) == {"extra": 4, "factor": 1.5}
    assert Child.from_config(c.config).config == c.config


def test_from_config_rejects_unknown_keys_but_accepts_overrides():
    s = Scaler.from_config({"factor": 1.0}, names=["x"])
    assert s.config["names"] == ("x",)
    with pytest.raises(ConfigError, match="does not take"):
        Scaler.from_config({"factor": 1.0, "bogus": 1})


@pytest.mark.parametrize("bad", [object(), float("nan"), {1: 2}])
def test_non_json_arguments_are_refused(bad):
    with pytest.raises(ConfigError):
        Scaler(factor=bad)
