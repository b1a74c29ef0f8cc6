"""Combinations that cannot work are refused or warned about at fit (virtualcell.pipelines.compatibility)."""

import warnings

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.compatibility import IncompatibleCombinationWarning


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)


def test_gene_space_relu_on_a_signed_latent_is_refused(adata):
    pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5},
                                   manipulator={"name": "cgan", "output": "affine-relu", "max_epochs": 1})
    with pytest.raises(ValueError, match="clips every moved coordinate at 0"):
        pipe.fit(adata, context_key="cell_type", progress=False)


def test_a_decoder_paired_with_another_encoder_is_refused(adata):
    pipe = vc.PerturbationPipeline(encoder="identity-encoder", manipulator="mean-shift", decoder="pca-decoder")
    with pytest.raises(ValueError, match="inverts the 'pca' encoder"):
        pipe.fit(adata, context_key="cell_type", progress=False)


def test_cgan_reading_part_of_a_latent_warns(adata):
    pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 8},
                                   manipulator={"name": "cgan", "gan_features": 4, "max_epochs": 1, "hidden": 16,
                                                "n_groups": 2, "token_dim": 8, "cond_dim": 8, "patience": None})
    with pytest.warns(IncompatibleCombinationWarning, match="gan_features=4"):
        pipe.fit(adata, context_key="cell_type", progress=False)


def test_sound_combinations_pass_silently(adata):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompatibleCombinationWarning)
        pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5}, manipulator="latent-arithmetic")
        pipe.fit(adata, context_key="cell_type", progress=False)
    assert np.isfinite(pipe.predict(adata[:5], target="stimulated").X).all()
