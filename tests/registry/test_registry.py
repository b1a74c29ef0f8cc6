"""The entry-point registry, proven with the toy plugin package in tests/plugins (installed by the test setup)."""

import importlib.metadata
import warnings

import pytest

from virtualcell.registry import PluginImportError, Registry, UnknownComponentError, normalize_name

needs_plugin = pytest.mark.skipif(
    not any(ep.name == "toy-scaled-shift" for ep in importlib.metadata.entry_points(group="virtualcell.components")),
    reason="the test plugin is not installed (tests/conftest.py installs it for the session; see its warning)",
)


@pytest.fixture
def fresh():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = Registry()
        registry.names()
    return registry


def test_builtins_are_registered_through_entry_points(fresh):
    for name in ("pca", "pca-decoder", "identity-encoder", "identity-decoder", "control", "mean-shift", "latent-arithmetic"):
        assert name in fresh.names()
    assert fresh.get("pca").__name__ == "PCAEncoder"


@pytest.mark.parametrize("spelling", ["latent-arithmetic", "Latent_Arithmetic", "LatentArithmetic", " latent arithmetic "])
def test_names_are_lenient(fresh, spelling):
    assert fresh.get(spelling).__name__ == "LatentArithmeticManipulator"
    assert normalize_name(spelling) == "latent-arithmetic"


def test_unknown_name_lists_known_ones_and_suggests(fresh):
    with pytest.raises(UnknownComponentError) as info:
        fresh.get("latent-arithmatic")
    message = str(info.value)
    assert "Did you mean ['latent-arithmetic']" in message and "'pca'" in message


def test_lookup_is_lazy(fresh):
    entry = fresh._discover()["pca"]
    assert entry.loaded is None
    fresh.get("pca")
    assert entry.loaded is not None


@needs_plugin
def test_plugin_component_is_found_and_usable():
    import torch

    from virtualcell.testing import tiny_labels

    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = registry.get("toy-scaled-shift")
    z, labels = tiny_labels()
    manipulator = cls(alpha=0.5).fit(z, labels)
    assert registry.distribution_of("toy-scaled-shift") == "virtualcell-toy-plugin"
    assert manipulator.manipulate(z[:4], type(labels)(torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))).shape == (4, 8)


@needs_plugin
def test_broken_plugin_is_isolated_until_asked_for():
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "toy-broken" in registry.names()  # listing imports nothing that fails loudly
        registry.get("pca")                      # other names keep working
    with pytest.raises(PluginImportError, match="virtualcell-toy-plugin.*failed to import"):
        registry.get("toy-broken")


@needs_plugin
def test_duplicate_name_warns_and_builtin_wins():
    registry = Registry()
    with pytest.warns(UserWarning, match="'mean-shift' is claimed by both 'virtualcell'.*virtualcell-toy-plugin.*using 'virtualcell'"):
        registry._discover()
    assert registry.get("mean-shift").__name__ == "MeanShiftManipulator"


def test_runtime_register_and_name_of(fresh):
    from virtualcell.instruments.manipulators.control import ControlManipulator

    class Local(ControlManipulator):
        pass

    with pytest.raises(UnknownComponentError, match="not registered"):
        fresh.name_of(Local)
    fresh.register("my-local", Local)
    assert fresh.name_of(Local) == "my-local"
    with pytest.raises(ValueError, match="already registered"):
        fresh.register("my-local", ControlManipulator)
