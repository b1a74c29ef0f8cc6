"""Holds the package to ARCHITECTURE.md: import floors, lazy heavy imports, naming and API conventions."""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import virtualcell
from virtualcell.registry import PluginImportError, registry

PACKAGE = Path(virtualcell.__file__).parent

#: top-level area -> areas its module-level imports may reach. Components may import train/ (their
#: ``fit`` calls its loops and likelihoods, as ARCHITECTURE.md allows); function-level imports may
#: also reach the registry, which resolves classes by name.
FLOORS = {
    "config": set(), "component": {"config"}, "execution": set(),
    "data": {"config", "component", "execution", "data"},
    # store/ (zarr format, append, kNN, streaming/Dask embed) sits beside data/: encoders' outputs go into it,
    # representations/store.py re-exports it, pipelines/ and cli/ call it
    "store": {"config", "component", "execution", "data", "store"},
    "representations": {"config", "component", "execution", "data", "representations", "instruments", "train", "store"},
    "instruments": {"config", "component", "execution", "data", "representations", "instruments", "train"},
    "pipelines": {"config", "component", "execution", "data", "representations", "instruments", "pipelines"},
    "train": {"config", "component", "execution", "data", "representations", "instruments", "train"},
    "testing": {"config", "component", "execution", "data", "representations", "instruments", "testing"},
}
HEAVY = ("diffusers", "transformers", "torch_geometric", "dask", "scanpy", "matplotlib", "zarr")


def _area(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _module_level_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            package = path.relative_to(PACKAGE).parent.parts
            base = list(package[: len(package) - node.level + 1]) if node.level > 1 else list(package)
            target = (base + (node.module.split(".") if node.module else []))
            yield target[0] if target else (node.names[0].name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("virtualcell."):
            yield node.module.split(".")[1]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if _area(p) in FLOORS), ids=str)
def test_import_floors(path):
    area = _area(path)
    bad = sorted({t for t in _module_level_imports(path) if t not in FLOORS[area] and t != area})
    assert not bad, f"{path.relative_to(PACKAGE)} ({area}) imports {bad} at module level; ARCHITECTURE.md's floors forbid it"


def test_import_virtualcell_stays_light():
    code = f"import sys, virtualcell; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"`import virtualcell` imported heavy libraries {loaded}; import them inside the functions that use them"


def test_public_api_is_documented():
    for name in virtualcell.__all__:
        obj = getattr(virtualcell, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"virtualcell.{name} has no docstring"


def _components():
    for name in registry.names():
        try:
            yield name, registry.get(name)
        except PluginImportError:
            continue


@pytest.mark.parametrize("name,cls", list(_components()), ids=lambda v: v if isinstance(v, str) else "")
def test_component_conventions(name, cls):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), f"registry name {name!r} is not kebab-case"
    assert cls.kind in ("encoder", "manipulator", "decoder")
    if cls.__module__.startswith("virtualcell."):
        assert cls.__name__.endswith(cls.kind.capitalize()), f"{cls.__name__} should be named <Algorithm>{cls.kind.capitalize()}"
    assert inspect.getdoc(cls), f"{cls.__name__} has no docstring"
    signature = inspect.signature(cls.__init__)
    no_default = [p for p, v in signature.parameters.items() if p != "self" and v.default is inspect.Parameter.empty
                  and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
    assert not no_default, f"{cls.__name__}.__init__ arguments {no_default} need defaults (sensible defaults for users)"


@pytest.mark.parametrize("func", ["virtualcell.pipelines.embed:embed",
                                  "virtualcell.pipelines.perturbation:PerturbationPipeline.fit",
                                  "virtualcell.pipelines.perturbation:PerturbationPipeline.predict"])
def test_anndata_verbs_take_keyword_options(func):
    import importlib

    module, _, attr = func.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
    assert params[0].name == "adata"
    positional = [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY]
    assert len(positional) <= 1, f"{func}: options after adata should be keyword-only, got positional {positional}"
