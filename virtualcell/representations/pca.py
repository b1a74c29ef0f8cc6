"""PCA encoder: a linear representation by truncated SVD, with its inverse as a decoder."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..component import Decoder, Encoder
from ..nn.pca import fit_pca

__all__ = ["PCAEncoder", "fit_pca"]  # fit_pca: re-exported from virtualcell.nn.pca


class PCAEncoder(Encoder):
    """``z = (x - mean) @ components.T`` with ``n_components`` principal axes.

    Args:
        n_components: size of the representation (capped by the data's rank).
    """

    def __init__(self, n_components: int = 50) -> None:
        super().__init__()
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1; got {n_components}.")
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("components", torch.zeros(0, 0))
        self.register_buffer("explained_variance", torch.zeros(0))

    @property
    def n_latent(self) -> int:
        self._check_fitted()
        return int(self.components.shape[0])

    def fit(self, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "PCAEncoder":
        """Principal axes of ``x`` [n, genes]: a tensor, or on-disk rows (``train.disk_loader.DiskRows``,
        anything indexed ``x[rows] -> [len(rows), genes]``), which are read in two sequential passes."""
        if x.shape[1] != len(features):
            raise ValueError(f"x has {x.shape[1]} columns but {len(features)} feature names were given.")
        possible = min(x.shape)
        if self.config["n_components"] > possible:
            warnings.warn(f"PCAEncoder(n_components={self.config['n_components']}) on {x.shape[0]} cells x {x.shape[1]} "
                          f"genes: at most {possible} principal components exist, so the representation has "
                          f"{possible} dimensions. Pass n_components<={possible} (CLI: --encoder-option "
                          f"n_components={possible}) to ask for what the data allows.", UserWarning, stacklevel=2)
        if isinstance(x, torch.Tensor):
            fitted = fit_pca(x, self.config["n_components"], seed=kwargs.get("seed", 0))
        else:
            fitted = _fit_streaming(x, self.config["n_components"])
        device = x.device if isinstance(x, torch.Tensor) else getattr(x, "device", "cpu")
        self.mean, self.components, self.explained_variance = (t.to(device) for t in fitted)
        self.features = list(features)
        self.is_fitted = True
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return (x - self.mean) @ self.components.T

    def paired_decoder(self) -> Decoder:
        from ..instruments.decoders.pca import PCADecoder

        return PCADecoder.from_encoder(self)


#: genes above which the streamed covariance [g, g] (float64) is refused: 16,384 genes = 2 GiB
MAX_STREAMING_GENES = 16_384


def _fit_streaming(rows: Any, n_components: int, chunk: int = 8192) -> tuple[torch.Tensor, ...]:
    """``fit_pca``'s result from on-disk rows: exact streamed covariance, then a pass for the signs."""
    from ..data.streaming import pca_in_passes

    n, g = rows.shape
    if g > MAX_STREAMING_GENES:
        raise ValueError(f"A PCA fitted from disk holds the {g} x {g} gene covariance ({8 * g * g / 2**30:.1f} GiB); "
                         f"at most {MAX_STREAMING_GENES} genes. Select genes first (preprocess n_top_genes=2000).")
    if n < 2:
        raise ValueError(f"PCAEncoder needs at least 2 cells; got {n}.")

    def batches():
        return (x for _, x in rows.chunks(chunk))

    return pca_in_passes(batches, n_components)
