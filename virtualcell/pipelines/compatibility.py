"""Combinations of encoder, manipulator and decoder that cannot work: refused at fit, with the reason.

Found by reading the components (issue #11), each with its reason:

- ``cgan(output="affine-relu")`` on a representation with negative values (PCA, a VAE latent):
  the ReLU built for gene space clips every moved coordinate at 0 (refused; use ``output="auto"``
  or ``"affine"``, or the identity encoder);
- a ``decoder`` paired with another encoder (``pca-decoder`` after ``vae``): it inverts a
  representation it was never given (refused; leave ``decoder=None`` for the encoder's own).
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["check_combination", "IncompatibleCombinationWarning"]


class IncompatibleCombinationWarning(UserWarning):
    """A combination that runs but ignores part of its input (see :func:`check_combination`)."""


def _name(component) -> str:
    from ..registry import registry

    try:
        return registry.name_of(type(component))
    except KeyError:
        return type(component).__name__


def check_combination(encoder, manipulator, decoder, x: torch.Tensor, z: torch.Tensor) -> None:
    """Refuse (ValueError) the combinations of the module doc; ``x`` [n, genes], ``z`` [n, d].

    Also warns (:class:`IncompatibleCombinationWarning`) when ``cgan``'s gene-space ``gan_features``
    leaves part of a learned representation to the fixed shift only.
    """
    paired = getattr(decoder, "paired_encoder", None) if decoder is not None else None
    if paired is not None and not decoder.is_fitted and _name(encoder) != paired:
        raise ValueError(f"Decoder {_name(decoder)!r} inverts the {paired!r} encoder, not {_name(encoder)!r}: it would "
                         f"decode a representation it never saw. Pass decoder=None (the encoder's own) or "
                         f"encoder={paired!r}.")
    output = manipulator.config.get("output") if _name(manipulator) == "cgan" else None
    if output == "affine-relu" and _name(encoder) != "identity-encoder" and bool((z < 0).any()):
        raise ValueError(f"cgan(output='affine-relu') clips every moved coordinate at 0, which is right for expression "
                         f"but not for the {_name(encoder)!r} representation (it has negative values, min "
                         f"{float(z.min()):.3g}). Use output='auto' (or 'affine'), or the identity encoder.")
    if _name(manipulator) == "cgan" and _name(encoder) != "identity-encoder" and manipulator.config.get("gan_features"):
        if int(manipulator.config["gan_features"]) < z.shape[1]:
            warnings.warn(f"cgan reads only its gan_features={manipulator.config['gan_features']} most variable of the "
                          f"{z.shape[1]} {_name(encoder)!r} coordinates (a gene-space default); the others move by a "
                          "fixed shift. Pass gan_features=None to read them all.", IncompatibleCombinationWarning,
                          stacklevel=3)
