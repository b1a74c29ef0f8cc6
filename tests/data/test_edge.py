"""The AnnData edge: value checks, gene alignment, vocabularies, preprocessing recipes."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from virtualcell.data.align import align_matrix, feature_indexer
from virtualcell.data.checks import DataError, check_expression, looks_like_counts
from virtualcell.data.preprocess import Preprocessing, get_matrix
from virtualcell.data.vocabulary import Vocabulary


def test_counts_detection():
    counts = np.random.default_rng(0).poisson(5, (20, 10)).astype(float) * 10
    assert looks_like_counts(counts) and looks_like_counts(sp.csr_matrix(counts))
    assert not looks_like_counts(np.log1p(counts))


def test_check_expression_errors():
    with pytest.raises(DataError, match="NaN"):
        check_expression(np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match="negative"):
        check_expression(sp.csr_matrix(np.array([[-1.0, 1.0]])))
    check_expression(np.array([[0.5, 2.0]]))  # fine


def test_alignment_reorders_and_names_missing():
    x = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(align_matrix(x, ["a", "b", "c"], ["c", "a"]), [[2, 0], [5, 3]])
    with pytest.raises(DataError, match=r"2 of 3 genes.*\['x', 'y'\]"):
        feature_indexer(["a", "b"], ["a", "x", "y"])
    with pytest.raises(DataError, match="duplicated gene names"):
        feature_indexer(["a", "a"], ["a"])


def test_vocabulary():
    vocab = Vocabulary.from_values(["stim", "ctrl", "stim"], first=["ctrl"], what="condition")
    assert vocab.labels == ["ctrl", "stim"]
    np.testing.assert_array_equal(vocab.encode(["stim", "ctrl"]), [1, 0])
    with pytest.raises(DataError, match=r"Unknown condition\(s\) \['IFN'\]; the model knows \['ctrl', 'stim'\]"):
        vocab.encode(["IFN"])


def test_preprocessing_presets_and_hvg():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(1.0, 3.0, 40), (60, 40)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.var_names = [f"g{i}" for i in range(40)]
    recipe = Preprocessing.from_spec({"normalize_total": 1e4, "log1p": True, "n_top_genes": 10}).fit(adata)
    assert len(recipe.genes) == 10
    x = recipe.transform(adata)
    assert x.shape == (60, 10) and x.dtype == np.float32
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)[:, [int(g[1:]) for g in recipe.genes]]
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    assert adata.X.sum() == counts.sum(), "the user's AnnData is untouched"
    again = Preprocessing.from_spec(recipe.to_dict())
    assert again.genes == recipe.genes
    with pytest.raises(ValueError, match="Unknown preprocessing preset"):
        Preprocessing.from_spec("scanpy-magic")


def test_missing_layer_lists_layers():
    adata = ad.AnnData(np.ones((2, 2)), layers={"counts": np.ones((2, 2))})
    with pytest.raises(DataError, match=r"Layer 'raw' not found; adata has layers \['counts'\]"):
        get_matrix(adata, "raw")
