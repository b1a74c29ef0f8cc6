"""Holds the package to docs/architecture.md: import floors, no import circle, small files, no private name
shared across files, lazy heavy imports, naming and API conventions.

Every import of ``virtualcell`` counts: module level, inside functions, under ``TYPE_CHECKING`` and
``importlib.import_module("virtualcell....")`` with a constant string. There is no exception list: a name
that must be reachable from a lower floor moves down, a re-export for an old path lives in the higher floor.

``python tests/test_package_structure.py`` prints every violation, grouped by area.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import virtualcell

PACKAGE = Path(virtualcell.__file__).parent
MAX_LINES = 300
HEAVY = ("diffusers", "transformers", "torch_geometric", "dask", "ot", "scanpy", "matplotlib", "zarr")

#: The floors, lowest first (docs/architecture.md). An area may import its own files, every area of a lower
#: floor, and the areas of its own floor named in SAME_FLOOR. ``__init__`` is ``virtualcell/__init__.py``
#: (the lazy public facade) and ``__main__`` is ``python -m virtualcell``.
FLOORS: list[set[str]] = [
    {"config", "errors", "execution", "io", "nn"},                                 # 0: ground, pure
    {"registry"},                                                                  # 1: entry points, formats
    {"component"},                                                                 # 1: the component contract
    {"data", "train", "metrics", "store", "instruments", "representations"},      # 2
    {"pipelines"},                                                                 # 3
    {"selection"},                                                                 # 4
    {"evaluate"},                                                                  # 5: the harness only
    {"testing", "datasets"},                                                       # above the harness
    {"demo"},
    {"cli"},                                                                       # 6: every command, thin
    {"__init__", "__main__"},                                                      # the public facade
]
#: which areas of its own floor an area may import (anything not named is forbidden)
SAME_FLOOR: dict[str, set[str]] = {
    "config": {"errors", "execution", "io", "nn"}, "execution": {"config", "errors", "io", "nn"},
    "io": {"config", "errors", "execution", "nn"}, "nn": {"config", "errors", "execution", "io"}, "errors": set(),
    "metrics": {"data"}, "store": {"data"}, "instruments": {"data", "train"},
    "representations": {"data", "train", "store", "instruments"},
}
#: areas further restricted to a subset of the lower floors
ONLY: dict[str, set[str]] = {"train": {"nn", "config", "errors", "execution", "io"}}


def _allowed(area: str) -> set[str]:
    if area in ONLY:
        return ONLY[area] | {area}
    floor = next(i for i, areas in enumerate(FLOORS) if area in areas)
    lower = set().union(*FLOORS[:floor])
    return lower | SAME_FLOOR.get(area, set()) | {area}


# ---------------------------------------------------------------- the import graph, file by file


@dataclass(frozen=True)
class Import:
    source: Path     # the importing file
    line: int
    module: str      # dotted target module, e.g. "virtualcell.store.knn"
    names: tuple[str, ...]  # names taken from it (empty for ``import x``)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _package_of(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE.parent).parent.parts)


def _import_module_target(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    target = node.args[0].value
    return target if isinstance(target, str) and not target.startswith(".") else None


@cache
def _imports(path: Path) -> tuple[Import, ...]:
    """Every import of a ``virtualcell`` module that ``path`` makes, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            if module == "virtualcell" or module.startswith("virtualcell."):
                found.append(Import(path, node.lineno, module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found += [Import(path, node.lineno, a.name, ()) for a in node.names
                      if a.name == "virtualcell" or a.name.startswith("virtualcell.")]
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)):
            if target == "virtualcell" or target.startswith("virtualcell."):
                found.append(Import(path, node.lineno, target, ()))
    return tuple(found)


def _targets(imp: Import) -> list[Path]:
    """The files an import executes directly: ``from a import b`` reaches ``a/b.py`` when b is a module."""
    modules = _modules()
    if not imp.names:
        module = imp.module
        while module not in modules and "." in module:
            module = module.rsplit(".", 1)[0]
        return [modules[module]] if module in modules else []
    targets = []
    for name in imp.names:
        sub = f"{imp.module}.{name}"
        if sub in modules:
            targets.append(modules[sub])
        elif imp.module in modules:
            targets.append(modules[imp.module])
    return sorted(set(targets))


def _area_of_file(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _area_of_module(module: str, names: tuple[str, ...]) -> list[str]:
    parts = module.split(".")
    if len(parts) > 1:
        return [parts[1]]
    return list(names) or ["__init__"]  # ``from virtualcell import x`` reaches area x (or the facade)


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


# ---------------------------------------------------------------- the checks (each returns its violations)


def floor_violations() -> dict[str, list[str]]:
    by_area: dict[str, list[str]] = defaultdict(list)
    for path in _files():
        area = _area_of_file(path)
        if not any(area in floor for floor in FLOORS):
            by_area[area].append(f"{_rel(path)}: area {area!r} has no floor in FLOORS (place it in docs/architecture.md)")
            continue
        allowed = _allowed(area)
        for imp in _imports(path):
            for target in _area_of_module(imp.module, imp.names):
                # ``from virtualcell import x`` of a public name reaches the facade virtualcell/__init__.py
                target = target if any(target in floor for floor in FLOORS) else "__init__"
                if target not in allowed:
                    by_area[area].append(f"{_rel(path)}:{imp.line} imports {imp.module}"
                                         f"{' (' + ', '.join(imp.names) + ')' if imp.names else ''} -> area {target!r}")
    return dict(by_area)


def import_cycles() -> list[list[str]]:
    """The import circles between files (strongly connected components of the file graph, each as a cycle)."""
    graph = {path: {t for imp in _imports(path) for t in _targets(imp) if t != path} for path in _files()}
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    components: list[list[Path]] = []

    def visit(node: Path) -> None:  # Tarjan, iterative enough for a package of this size
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(sorted(c), graph) for c in components]


def _one_cycle(component: list[Path], graph: dict[Path, set[Path]]) -> list[str]:
    """One concrete circle inside a strongly connected component: a shortest path from its first file back."""
    members = set(component)
    start = component[0]
    previous: dict[Path, Path] = {}
    frontier = [start]
    while frontier:
        step = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [_rel(p) for p in [start, *reversed(path[:-1]), start]] + (
                        [f"(+{len(members)} files in this tangle)"] if len(members) > 2 else [])
                if nxt not in previous:
                    previous[nxt] = node
                    step.append(nxt)
        frontier = step
    return [_rel(p) for p in component]


def long_files() -> list[str]:
    lengths = {_rel(p): len(p.read_text().splitlines()) for p in _files()}
    return [f"{name}: {n} lines (> {MAX_LINES})" for name, n in sorted(lengths.items()) if n > MAX_LINES]


def private_imports() -> list[str]:
    """``from virtualcell.x import _name`` (or a private module) across files."""
    found = []
    for path in _files():
        for imp in _imports(path):
            parts = imp.module.split(".") + list(imp.names)
            private = [p for p in parts if p.startswith("_") and not (p.startswith("__") and p.endswith("__"))]
            if private:
                found.append(f"{_rel(path)}:{imp.line} imports {', '.join(private)} from {imp.module}")
    return found


def script_private_imports() -> list[str]:
    """Private names of ``virtualcell`` imported by benchmarks/ and examples/ (they must use public names only)."""
    root = PACKAGE.parent
    found = []
    for folder in ("benchmarks", "examples"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "virtualcell":
                    parts = node.module.split(".") + [a.name for a in node.names]
                elif isinstance(node, ast.Import):
                    parts = [p for a in node.names if a.name.split(".")[0] == "virtualcell" for p in a.name.split(".")]
                else:
                    continue
                private = [p for p in parts if p.startswith("_") and not p.endswith("__")]
                if private:
                    found.append(f"{path.relative_to(root)}:{node.lineno} imports {', '.join(private)}")
    return found


# ---------------------------------------------------------------- the tests


def test_every_area_has_a_floor():
    areas = {_area_of_file(p) for p in _files()}
    placed = set().union(*FLOORS)
    assert areas <= placed, f"areas {sorted(areas - placed)} have no floor: add them to FLOORS and docs/architecture.md"


@pytest.mark.parametrize("area", sorted(set().union(*FLOORS)))
def test_import_floors(area):
    bad = floor_violations().get(area, [])
    assert not bad, (f"{area} may import only {sorted(_allowed(area) - {area})}; {len(bad)} imports break "
                     "docs/architecture.md's floors:\n  " + "\n  ".join(bad))


def test_no_import_cycle():
    cycles = import_cycles()
    assert not cycles, f"{len(cycles)} import circle(s) between files:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_no_file_over_300_lines():
    bad = long_files()
    assert not bad, "split these files (one idea per file):\n  " + "\n  ".join(bad)


def test_no_private_name_imported_across_files():
    bad = private_imports()
    assert not bad, "make these names public (drop the underscore) or move them:\n  " + "\n  ".join(bad)


def test_benchmarks_and_examples_use_public_names_only():
    bad = script_private_imports()
    assert not bad, "benchmarks/ and examples/ may call only public names of virtualcell:\n  " + "\n  ".join(bad)


def test_the_checks_see_function_level_and_cyclic_imports(tmp_path, monkeypatch):
    """The checker itself: a function-level upward import, a circle and a private import are all reported."""
    fake = tmp_path / "virtualcell"
    (fake / "nn").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "nn" / "__init__.py").write_text("")
    (fake / "nn" / "a.py").write_text("def f():\n    from ..pipelines import run\n    from .b import _hidden\n")
    (fake / "nn" / "b.py").write_text("from . import a\n_hidden = 1\n")
    (fake / "pipelines.py").write_text("import importlib\nimportlib.import_module('virtualcell.cli')\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    for cached in (_modules, _imports):
        cached.cache_clear()
    try:
        assert any("pipelines" in v for v in floor_violations()["nn"])
        assert any("cli" in v for v in floor_violations()["pipelines"])
        assert import_cycles() == [["nn/a.py", "nn/b.py", "nn/a.py"]]
        assert private_imports() == ["nn/a.py:3 imports _hidden from virtualcell.nn.b"]
    finally:
        for cached in (_modules, _imports):
            cached.cache_clear()


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
    from virtualcell.registry import PluginImportError, registry

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


def report() -> str:
    """Every violation, grouped by area (for ``python tests/test_package_structure.py``)."""
    lines = []
    for area, bad in sorted(floor_violations().items()):
        lines += [f"## floors: {area} ({len(bad)})", *(f"  {b}" for b in bad)]
    cycles = import_cycles()
    lines += [f"## import circles ({len(cycles)})", *(f"  {' -> '.join(c)}" for c in cycles)]
    lines += [f"## files over {MAX_LINES} lines ({len(long_files())})", *(f"  {b}" for b in long_files())]
    lines += [f"## private names imported across files ({len(private_imports())})", *(f"  {b}" for b in private_imports())]
    scripts = script_private_imports()
    lines += [f"## private names imported by benchmarks/ and examples/ ({len(scripts)})", *(f"  {b}" for b in scripts)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
