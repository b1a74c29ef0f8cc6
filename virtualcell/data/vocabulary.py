"""String labels <-> integer ids, with errors that list the known labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .checks import DataError

__all__ = ["Vocabulary"]


class Vocabulary:
    """An ordered set of labels (conditions or contexts) and their ids ``0..len-1``."""

    def __init__(self, labels: Iterable[str], *, what: str = "label") -> None:
        self.labels: list[str] = [str(x) for x in labels]
        self.what = what
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"duplicated {what}s in {self.labels}")
        self._ids = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_values(cls, values: Sequence, *, first: Sequence[str] = (), what: str = "label") -> "Vocabulary":
        """Labels in category order (or sorted), with ``first`` moved to the front."""
        series = pd.Series(values)
        if isinstance(series.dtype, pd.CategoricalDtype):   # the categories present, from the codes: no string a cell
            present = np.unique(series.cat.codes.to_numpy())
            seen = {str(series.cat.categories[c]) for c in present[present >= 0]}
            labels = [str(c) for c in series.cat.categories if str(c) in seen]
        else:
            labels = sorted(series.astype(str).unique())
        first = [f for f in first if f in labels]
        return cls(first + [x for x in labels if x not in first], what=what)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return str(label) in self._ids

    def id(self, label: str) -> int:
        try:
            return self._ids[str(label)]
        except KeyError:
            raise DataError(f"Unknown {self.what} {label!r}; known {self.what}s: {self.labels}.") from None

    def encode(self, values: Sequence) -> np.ndarray:
        """Labels [n] -> ids [n] (int64); unknown labels are an error that lists them."""
        values = pd.Series(values).astype(str)
        ids = values.map(self._ids)
        if ids.isna().any():
            unknown = sorted(values[ids.isna()].unique().tolist())
            raise DataError(f"Unknown {self.what}(s) {unknown[:10]}; the model knows {self.labels}.")
        return ids.to_numpy(dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.labels[int(i)] for i in ids]
