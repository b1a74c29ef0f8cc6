"""The demo (issue 21 item 16): a response that differs by cell type, select's choice beside both baselines."""

import json

import numpy as np

from virtualcell.demo import DEMO_CANDIDATES, run_demo, simulate_demo


def test_simulated_response_differs_by_family():
    adata = simulate_demo(n_cell_types=4, n_genes=60, n_cells_per_group=30, seed=0)
    x = np.asarray(adata.X)
    obs = adata.obs
    delta = {t: x[((obs.cell_type == t) & (obs.condition == "stimulated")).to_numpy()].mean(0)
             - x[((obs.cell_type == t) & (obs.condition == "control")).to_numpy()].mean(0) for t in ("type_0", "type_1", "type_2")}
    same, other = np.corrcoef(delta["type_0"], delta["type_2"])[0, 1], np.corrcoef(delta["type_0"], delta["type_1"])[0, 1]
    assert same > 0.8 and other < 0.5, (same, other)


def test_demo_select_beats_the_global_shift(tmp_path):
    results = run_demo(tmp_path / "demo", n_genes=60, n_cell_types=4, seed=0)
    chosen = next(label for label in results if label.startswith("select → "))
    assert results[chosen]["pearson_delta"] > results["mean-shift"]["pearson_delta"] + 0.2
    assert results[chosen]["edistance_ratio"] < results["mean-shift"]["edistance_ratio"]
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert saved["candidates"] == list(DEMO_CANDIDATES) and {"control", "mean-shift"} <= set(saved["results"])
    assert (tmp_path / "demo" / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "demo" / "pipeline" / "pipeline.json").exists()
