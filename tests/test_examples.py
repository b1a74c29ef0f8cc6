"""The scripts in examples/ run as documented (each in a fresh working folder), through current public paths."""

import ast
import importlib.util
import runpy
import warnings
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def _deprecated_imports(script: Path) -> list[str]:
    """``virtualcell`` modules the script imports that are only deprecated re-exports of a moved path."""
    found = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                   [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for module in modules:
            if module.split(".")[0] != "virtualcell":
                continue
            spec = importlib.util.find_spec(module)
            text = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
            if "DeprecationWarning" in text and len(text.splitlines()) <= 40:
                found.append(f"line {node.lineno}: {module}")
    return found


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path, monkeypatch, one_torch_thread):
    old = _deprecated_imports(script)
    assert not old, f"examples/{script.name} imports deprecated paths {old}; use the new ones (README, docs)"
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        runpy.run_path(str(script), run_name="__main__")
    ours = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning) and "virtualcell" in str(w.message)]
    assert not ours, f"examples/{script.name} uses deprecated virtualcell names: {ours}"
    if script.stem == "uncertainty":
        assert (tmp_path / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
