"""The store on a real S3 server (moto's server mode on loopback): write, append, read, query, index."""

import numpy as np
import pandas as pd

from virtualcell.store import EmbeddingStore


def test_store_round_trip_on_s3(s3_bucket):
    url = f"{s3_bucket}/cells.zarr"
    obs = pd.DataFrame({"cell_type": pd.Categorical(["B", "T", "B", "NK"]), "n": pd.array([1, None, 3, 4], dtype="Int64"),
                        "note": ["a", None, "c", "d"]}, index=[f"c{i}" for i in range(4)])
    values = np.arange(8, dtype=np.float32).reshape(4, 2)
    store = EmbeddingStore(url)
    store.write("k", values, obs=obs, provenance={"component": "test"})
    store.append("k", values + 100, obs=obs.rename(index=lambda i: i + "b"))
    reopened = EmbeddingStore(url, mode="r")
    assert reopened.keys() == ["k"] and reopened.snapshot("k").n_rows == 8
    read = reopened.read("k")
    np.testing.assert_array_equal(read.values, np.vstack([values, values + 100]))
    pd.testing.assert_frame_equal(read.obs.iloc[:4], obs, check_index_type=False)
    assert reopened.select("k", 'cell_type == "B" & n >= 3').tolist() == [2, 6]
    assert reopened.nearest("k", values[:1] + 99.5, k=1)[0].tolist() == [[4]]
    store.build_index("k", k=2, n_check=8, progress=False)
    assert EmbeddingStore(url, mode="r").nearest("k", values[:1] + 99.5, k=1, approximate=True)[0].tolist() == [[4]]
    store.write("k", values, obs=obs, overwrite=True)
    assert EmbeddingStore(url, mode="r").snapshot("k").n_rows == 4
