"""benchmarks/make_results.py: RESULTS.md is the concatenation of every report_*.render(), in a fixed order."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sections_follow_the_fixed_order_and_a_broken_report_becomes_a_note(tmp_path):
    make = _module("make_results")
    (tmp_path / "report_zeta.py").write_text("def render():\n    return '## zeta\\n'\n")
    (tmp_path / "report_selection.py").write_text("def render():\n    return '## selection\\n'\n")
    (tmp_path / "report_harness.py").write_text("def render():\n    return '## harness\\n'\n")
    (tmp_path / "report_broken.py").write_text("def render():\n    raise KeyError('missing.json')\n")
    text, failed = make.build(tmp_path)
    assert text.startswith("# virtualcell benchmark results") and "Generated file: do not edit" in text
    assert text.index("## harness") < text.index("## selection") < text.index("could not be rendered") < text.index("## zeta")
    assert failed == ["report_broken.py"] and "KeyError" in text
    out = tmp_path / "RESULTS.md"
    make.RESULTS, make.HERE = out, tmp_path
    assert make.main(["--out", str(out)]) == 1 and out.read_text() == text      # written, but the failure is reported
    assert make.main(["--out", str(out), "--check"]) == 1


def test_the_selection_report_renders_from_json_only():
    text = _module("report_selection").render()
    assert text.startswith("## Choosing a pipeline on the data")


def test_the_committed_results_and_readme_headline_are_what_the_json_gives():
    make = _module("make_results")
    text, failed = make.build()
    assert not failed and text == (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    headline = _module("headline")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert headline.headline() in readme                    # the table, as printed by benchmarks/headline.py
    for line in headline.notes().splitlines():
        assert line in readme, line
