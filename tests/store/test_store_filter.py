"""The filter grammar: parsing, evaluation on obs, errors that point at the position, no eval."""

import numpy as np
import pandas as pd
import pytest

from virtualcell.store import EmbeddingStore, FilterError, parse_filter


@pytest.fixture
def obs():
    return pd.DataFrame({
        "cell_type": pd.Categorical(["CD4T", "CD4T", "B", "NK", "CD4T"]),
        "condition": ["control", "stim", "stim", "control", "other"],
        "dose": [0.0, 1.5, 3.0, 10.0, np.nan],
        "n_genes": pd.array([100, 200, None, 400, 500], dtype="Int64"),
        "ok": [True, False, True, True, False],
        "my col": ["a", "b", "a", "b", "a"],
    }, index=[f"c{i}" for i in range(5)])


@pytest.mark.parametrize("text, expected", [
    ('cell_type == "CD4T" & condition in ["control", "stim"]', [0, 1]),
    ("cell_type != 'CD4T'", [2, 3]),
    ("dose < 3", [0, 1]),
    ("dose >= 3 | cell_type == \"CD4T\"", [0, 1, 2, 3, 4]),
    ('~(cell_type == "CD4T")', [2, 3]),
    ('not cell_type == "CD4T" and dose > 1', [2, 3]),
    ("n_genes <= 200", [0, 1]),
    ("n_genes == null", [2]),
    ("dose != null", [0, 1, 2, 3]),
    ("ok == true", [0, 2, 3]),
    ('condition not in ["stim"]', [0, 3, 4]),
    ("`my col` == \"b\"", [1, 3]),
    ("(dose > 0 | n_genes > 400) & !ok", [1, 4]),
    ("dose >= 1e1", [3]),
])
def test_filters_select_the_right_rows(obs, text, expected):
    assert np.flatnonzero(parse_filter(text).evaluate(obs)).tolist() == expected


@pytest.mark.parametrize("text, position, message", [
    ('cell_type == "CD4T" &', 21, "expected a column name, found the end"),
    ('cell_type = "CD4T"', 10, "unexpected character '='"),
    ('cell_type == "CD4T" condition', 20, "expected '&', '|' or the end"),
    ("(dose > 1", 9, r"expected '\)'"),
    ('condition in "stim"', 13, "expected '\\[' starting a list"),
    ("dose > ", 7, "expected a value"),
    ('__import__("os").system("true")', 16, "unexpected character '.'"),
    ('__import__("os")', 10, "expected a comparison"),
    ("cell_type == CD4T", 13, "expected a value"),
    ("", 0, "empty filter"),
])
def test_malformed_filters_point_at_the_position(text, position, message):
    with pytest.raises(FilterError, match=message) as error:
        parse_filter(text)
    assert error.value.position == position
    assert str(error.value).rstrip().endswith(" " * position + "^")


def test_wrong_types_are_explained(obs):
    with pytest.raises(FilterError, match="holds numbers.*compare it with a number"):
        parse_filter('dose == "high"').evaluate(obs)
    with pytest.raises(FilterError, match="has no order"):
        parse_filter('condition < "b"').evaluate(obs)


def test_missing_column_lists_the_columns(tmp_path, obs):
    store = EmbeddingStore(tmp_path / "s.zarr")
    store.write("k", np.zeros((5, 2)), obs=obs)
    with pytest.raises(FilterError, match=r"no column 'celltype' \(columns: \['cell_type', 'condition'.*at position 11"):
        store.select("k", 'dose > 1 & celltype == "B"')
    assert store.select("k", 'cell_type == "CD4T" & condition in ["control", "stim"]').tolist() == [0, 1]
