"""The scripts in examples/ run as documented (each in a fresh working folder)."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    if script.stem == "uncertainty":
        assert (tmp_path / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
