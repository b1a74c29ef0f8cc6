"""Streaming moments and the batch recipe on CSR batches: never densified, the same numbers as dense."""

import numpy as np
import scipy.sparse as sp

from virtualcell.data.preprocess import Preprocessing
from virtualcell.data.streaming import StreamingMoments, batch_recipe


def test_sparse_batches_give_the_dense_moments():
    x = sp.random(500, 60, density=0.1, random_state=1, format="csr", dtype=np.float32) * 30
    sparse, dense = StreamingMoments(), StreamingMoments()
    for begin in range(0, 500, 73):
        sparse.update(x[begin:begin + 73])
        dense.update(x[begin:begin + 73].toarray())
    reference = x.toarray().astype(np.float64)
    np.testing.assert_allclose(sparse.mean, reference.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sparse.var, reference.var(0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(sparse.var, dense.var, rtol=1e-9)


def test_batch_recipe_keeps_csr_sparse_when_asked():
    x = sp.random(40, 30, density=0.2, random_state=2, format="csr", dtype=np.float32) * 10
    names = [f"g{i}" for i in range(30)]
    prep = Preprocessing.from_spec("log1p")
    kept = batch_recipe(prep, names, names[::2], dense=False)(x)
    assert sp.issparse(kept) and kept.shape == (40, 15)
    np.testing.assert_array_equal(kept.toarray(), batch_recipe(prep, names, names[::2])(x))
