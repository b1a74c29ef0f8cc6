"""Which components train from disk, how, and the small-file rule (used by ``fit_from_disk``).

Encoders: ``vae`` and ``transformer`` (minibatches from the loader) and ``pca`` (exact streamed covariance,
two sequential passes) train from :class:`~virtualcell.train.disk_loader.DiskRows`; ``identity-encoder``
when the codes are streamed (:func:`streams_codes`); a fitted encoder of any kind only encodes. Decoders:
the encoder's paired one, or an ``mlp-decoder`` trained on (latent code of the row, the row read from disk) pairs; the identity decoder only names its genes. Anything else is
refused with the fix. Small files (every cell fits in one loader pool) are read whole and fitted as in
memory: :func:`reads_whole`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.checks import DataError
from ..train.disk_loader import DiskRows

__all__ = ["reads_whole", "fit_encoder_from_disk", "fit_decoder_from_disk", "disk_decoder", "disk_refusal",
           "streams_codes", "DEFAULT_BLOCKS"]

#: the loader's default ``(block_size, pool_blocks)``: one pool is 64 x 64 = 4,096 cells
DEFAULT_BLOCKS = (64, 64)


def reads_whole(disk: dict[str, Any], n_cells: int) -> bool:
    """The small-file rule, decided before any read: True when ``disk`` leaves ``"exact"`` unset, one
    process runs, and one shuffle pool (``block_size * pool_blocks`` cells, 4,096 by default) holds
    every cell of the file. Then the block shuffle gains nothing (the loader would hold all the rows
    at once anyway), so the file is read whole (no more memory than one pool) and fitted as in memory:
    the same numbers as ``fit`` on the AnnData. ``disk={"exact": False}`` forces the block loader."""
    from ..train.distributed import world

    if disk.get("exact") is not None or world() > 1:
        return False
    block = int(disk.get("block_size", DEFAULT_BLOCKS[0]))
    pool = int(disk.get("pool_blocks", DEFAULT_BLOCKS[1]))
    return block * pool >= n_cells


def streams_codes(pipe: Any) -> bool:
    """Whether a fit from disk never holds the latent codes [n_cells, d]: the manipulator is fitted on per-group
    sums of them (a ``GroupSumsManipulator``: control, mean-shift, mean-perturbation, latent-arithmetic) and no
    mlp-decoder trains on them (``pipelines/fit_from_disk_codes.py``)."""
    from ..instruments.decoders.mlp import MLPDecoder
    from ..instruments.manipulators.group_sums import GroupSumsManipulator

    trains_on_codes = pipe.decoder is None and pipe.encoder.is_fitted and pipe.encoder.paired_decoder() is None
    trains_on_codes |= isinstance(pipe.decoder, MLPDecoder) and not pipe.decoder.is_fitted
    return isinstance(pipe.manipulator, GroupSumsManipulator) and not trains_on_codes


def disk_refusal(pipe: Any) -> tuple[str, str] | None:
    """``("encoder" | "decoder", why)`` when ``pipe`` cannot be fitted from disk (a part that trains in memory
    only, or the identity encoder when the codes, its rows, would all be held), else None."""
    from ..instruments.decoders.identity import IdentityDecoder
    from ..instruments.decoders.mlp import MLPDecoder
    from ..representations.identity import IdentityEncoder
    from ..representations.pca import PCAEncoder
    from ..representations.transformer import TransformerEncoder
    from ..representations.vae import VAEEncoder

    encoder, decoder = pipe.encoder, pipe.decoder
    if not encoder.is_fitted and isinstance(encoder, IdentityEncoder) and not streams_codes(pipe):
        return "encoder", ("The identity encoder's codes are the expression rows themselves: from disk it only runs "
                "with a manipulator fitted on group means, so that they are never all held, and "
                f"{type(pipe.manipulator).__name__} needs every code (or an mlp-decoder would train on them). Use "
                "manipulator='mean-shift', 'mean-perturbation', 'latent-arithmetic' or 'control' with the encoder's "
                "own decoder, or encoder='vae' / 'pca' (a small latent space), or fit on an in-memory AnnData.")
    if not encoder.is_fitted and not isinstance(encoder, (VAEEncoder, PCAEncoder, IdentityEncoder, TransformerEncoder)):
        return "encoder", (f"{type(encoder).__name__} trains in memory only, so it cannot be fitted from disk. Either use "
                "encoder='vae', 'pca' or 'transformer' (they train from disk), or fit this encoder on an in-memory AnnData "
                "(a subsample is enough to pretrain it) and pass it fitted: from disk it then only encodes, and an "
                "mlp-decoder trains from disk when it has no paired decoder.")
    if decoder is not None and not decoder.is_fitted and not isinstance(decoder, (MLPDecoder, IdentityDecoder)):
        return "decoder", (f"{type(decoder).__name__} trains in memory only, so it cannot be fitted from disk. Use "
                "decoder='mlp-decoder' (trains from disk) or None (the encoder's own), or pass it fitted.")
    return None


def fit_encoder_from_disk(pipe: Any, rows: DiskRows, genes: list[str], *, seed: int, progress: bool) -> None:
    """Train ``pipe.encoder`` from the on-disk rows (a fitted one is kept): VAE and PCA; else refused."""
    refusal = disk_refusal(pipe)
    if refusal:
        raise DataError(refusal[1])
    if not pipe.encoder.is_fitted:
        pipe.encoder.fit(rows, genes, seed=seed, progress=progress)


def disk_decoder(pipe: Any) -> Any:
    """The decoder a fit from disk ends with, on ``pipe.device``: the one passed (an unfitted one other than
    mlp / identity is refused), else the encoder's paired one, else a new ``mlp-decoder`` (what the in-memory
    fit does for an encoder without an inverse)."""
    from ..instruments.decoders.mlp import MLPDecoder

    decoder = pipe.decoder
    if decoder is None:
        decoder = pipe.encoder.paired_decoder()
        if decoder is None:
            decoder = MLPDecoder(likelihood="nb" if pipe.preprocessing.raw_counts else "gaussian")
    elif not decoder.is_fitted:
        refusal = disk_refusal(pipe)
        if refusal:
            raise DataError(refusal[1])
    return decoder.to(pipe.device)


def fit_decoder_from_disk(pipe: Any, z: torch.Tensor, rows: DiskRows, genes: list[str], *, seed: int,
                          progress: bool) -> None:
    """Set ``pipe.decoder`` (:func:`disk_decoder`), trained when unfitted: an ``mlp-decoder`` on ``(z[i], row i)``
    (``z`` [n_cells, d] in file order); the identity decoder only names its genes (``z``: any codes, their width)."""
    decoder = disk_decoder(pipe)
    if not decoder.is_fitted:
        decoder.fit(z, rows, genes, seed=seed, progress=progress)
    pipe.components["decoder"] = decoder
