"""Hostile input to the pipelines (issue 21 items 23 and 26): each refused or handled, never silently wrong.

A backed AnnData, a one-cell condition, a reference whose labels are not labels, a screen from mixed
cells, coordinates scaled by 1e200 and a radius without neighbours. (1e6 in log data: test_values.py.)
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from virtualcell.data.checks import DataError
from virtualcell.data.simulate_screen import simulate_screen
from virtualcell.data.simulate_spatial import simulate_spatial
from virtualcell.data.spatial import SpatialGraphError
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines import PerturbationPipeline
from virtualcell.pipelines.annotate import annotate
from virtualcell.pipelines.domains import spatial_domains
from virtualcell.pipelines.fit_labels import FewCellsWarning
from virtualcell.pipelines.screen import screen


@pytest.fixture(scope="module")
def slide() -> ad.AnnData:
    return simulate_spatial(200, 20, n_domains=3, seed=2)


# -- item 23 ---------------------------------------------------------------------------------------------------

def test_predict_reads_a_backed_anndata(sim, fitted, tmp_path):
    """An h5py TypeError (Dataset.astype ... 'copy') before."""
    control = sim[sim.obs["condition"] == "control"].copy()
    control.write_h5ad(tmp_path / "control.h5ad")
    backed = ad.read_h5ad(tmp_path / "control.h5ad", backed="r")
    try:
        expected = fitted.predict(control, target="stimulated").X
        np.testing.assert_allclose(fitted.predict(backed, target="stimulated").X, expected, rtol=1e-6)
        view = backed[backed.obs_names[::3]]                                  # only the rows asked are read
        np.testing.assert_allclose(fitted.predict(view, target="stimulated").X, expected[::3], rtol=1e-5, atol=1e-6)
        samples, _ = fitted.predict_samples(backed, target="stimulated")
        assert samples.shape == (1, control.n_obs, control.n_vars)
    finally:
        backed.file.close()


def test_coordinates_scaled_by_1e200_get_a_clear_error(slide):
    """An IndexError before (the KD-tree's squared distances overflow)."""
    adata = slide.copy()
    adata.obsm["spatial"] = adata.obsm["spatial"] * 1e200
    with pytest.raises(SpatialGraphError, match=r"span 9.*e\+202 units.*wrong units.*adata.obsm\['spatial'\] / 1e\+199"):
        spatial_domains(adata, method="pca", n_domains=3, copy=True)


# -- item 26 ---------------------------------------------------------------------------------------------------

def test_a_one_cell_condition_warns(sim):
    one = sim.copy()
    one.obs["condition"] = one.obs["condition"].cat.add_categories("IFNG")
    one.obs.iloc[0, one.obs.columns.get_loc("condition")] = "IFNG"
    with pytest.warns(FewCellsWarning, match=r"\{'IFNG': 1\}.*fewer than 3 cells"):
        PerturbationPipeline("identity-encoder", "mean-shift").fit(one, context_key="cell_type", progress=False)


def _reference_and_query():
    adata = simulate_perturbation(n_cells_per_group=40, n_genes=30, n_cell_types=3, seed=1)
    reference = adata[adata.obs["condition"] == "control"].copy()
    query = adata[adata.obs["condition"] == "stimulated"].copy()
    reference.obs["one"] = "B"
    reference.obs["score"] = np.linspace(0.1, 7.3, reference.n_obs)
    reference.obs["barcode"] = [f"AC{i}" for i in range(reference.n_obs)]
    return reference, query


@pytest.mark.parametrize("column, match", [("one", r"has one label \(\['B'\]\).*at least 2 labels.*--label-key"),
                                           ("score", r"looks continuous.*pd.cut"),
                                           ("barcode", r"looks like an identifier \(120 distinct values")])
def test_labels_that_are_not_labels_are_refused(column, match):
    """Every cell was labelled with confidence 1.000 before."""
    reference, query = _reference_and_query()
    with pytest.raises(DataError, match=match):
        annotate(query, reference, label_key=column, encoder={"name": "pca", "n_components": 5}, copy=True,
                 progress=False)


def test_screen_from_mixed_cells_uses_the_control_cells():
    """Perturbed cells were mixed into the baseline and changed the ranking."""
    adata = simulate_screen(n_genes=30, n_modules=3, n_targets=5, n_control=80, n_per_target=20, seed=6)
    pipe = PerturbationPipeline("identity-encoder", "mean-perturbation").fit(adata, progress=False)
    targets = adata.uns["simulate_screen"]["targets"]
    expected = screen(pipe, adata[adata.obs.condition == "control"], targets, progress=False)
    with pytest.warns(UserWarning, match=r"uses the 80 'control' cells of the 180 given.*--cells 'condition=control'"):
        mixed = screen(pipe, adata, targets, progress=False)
    pd.testing.assert_frame_equal(mixed, expected)
    with pytest.raises(DataError, match=r"None of the 20 cells is 'control'.*--cells 'condition=control'"):
        screen(pipe, adata[adata.obs.condition == targets[0]], targets[1:], progress=False)


def test_a_radius_without_neighbours_is_refused_and_a_thin_one_warns(slide):
    """'Spatial' domains of expression alone before."""
    from scipy.spatial import cKDTree

    with pytest.raises(SpatialGraphError, match=r"No cell has a neighbour within radius=1e-06.*median distance.*--radius"):
        spatial_domains(slide, method="neighbour-average", n_domains=3, radius=1e-6, copy=True)
    coords = slide.obsm["spatial"]
    nearest = float(np.median(cKDTree(coords).query(coords, k=2)[0][:, 1]))
    with pytest.warns(UserWarning, match=r"cells have no neighbour within radius"):
        spatial_domains(slide, method="neighbour-average", n_domains=3, radius=nearest, copy=True)
