"""The PCA encoder asks for no more components than the data has (issue 21, item 26)."""

import warnings

import pytest

from virtualcell.representations.pca import PCAEncoder
from virtualcell.testing import tiny_expression


def test_more_components_than_possible_warns_and_says_what_it_used():
    x, genes = tiny_expression(n_cells=30, n_genes=12)
    with pytest.warns(UserWarning, match=r"n_components=50.*30 cells x 12 genes.*12 dimensions.*n_components<=12"):
        encoder = PCAEncoder(n_components=50).fit(x, genes)
    assert encoder.n_latent == 12


def test_a_possible_number_of_components_is_silent():
    x, genes = tiny_expression(n_cells=30, n_genes=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PCAEncoder(n_components=12).fit(x, genes).n_latent == 12
