"""benchmarks/report_harness.py renders its RESULTS.md section from saved run JSON only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate import run_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "report_harness.py"


def _module():
    spec = importlib.util.spec_from_file_location("report_harness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_tables_with_their_command(tmp_path, monkeypatch):
    adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)
    report = run_benchmark(adata, "oos", encoder_kwargs={"n_components": 4}, n_top=10, progress=False,
                           command="virtualcell benchmark oos --data tiny.h5ad")
    (tmp_path / "valid-oos-pca.json").write_text(json.dumps(report))
    module = _module()
    monkeypatch.setattr(module, "FOLDER", tmp_path)
    text = module.render()
    assert "### valid-oos-pca" in text and "`virtualcell benchmark oos --data tiny.h5ad`" in text
    assert "| noise-ceiling | 3 |" in text and "| type_1 | mean-shift |" in text
    assert "beats mean-shift on pearson_delta in" in text
    monkeypatch.setattr(module, "FOLDER", tmp_path / "empty")
    assert "no runs saved yet" in module.render()
