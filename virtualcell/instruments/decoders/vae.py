"""The decoder half of a trained VAE (``vae`` encoder): latent ``z`` back to expected expression."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from ...component import Decoder
from ...execution import batched_apply
from ...nn.vae_module import ExpressionDecoderNet

__all__ = ["VAEDecoder"]


class VAEDecoder(Decoder):
    """``decode(z [n, n_latent]) -> E[x | z]`` [n, genes], always in inference mode.

    Gaussian: the decoded mean (log-normalised expression, as scGen; scGen's LeakyReLU output can
    dip slightly below 0, which pipelines clip). NB / ZINB: expected counts
    ``mu`` / ``(1 - pi) mu`` at the mean library size of the training cells. Built by
    ``VAEEncoder.paired_decoder()`` with its own copy of the weights; the arguments repeat the
    encoder's network shape so that a saved decoder can be rebuilt alone.
    """

    paired_encoder = "vae"

    def __init__(self, n_hidden: int = 800, n_layers: int = 2, n_latent: int = 100, dropout: float = 0.0,
                 likelihood: str = "gaussian", output_activation: str = "leaky_relu") -> None:
        super().__init__()
        self.net: ExpressionDecoderNet | None = None

    @classmethod
    def from_encoder(cls, encoder) -> "VAEDecoder":
        """Copy the decoder network of a fitted ``VAEEncoder``."""
        encoder._check_fitted()
        c = encoder.config
        decoder = cls(**{k: c[k] for k in ("n_hidden", "n_layers", "n_latent", "dropout", "likelihood",
                                           "output_activation")})
        decoder.net = copy.deepcopy(encoder.vae.decoder)
        decoder.features = list(encoder.input_features)
        decoder.is_fitted = True
        return decoder.eval()

    def _build(self, n_output: int) -> ExpressionDecoderNet:
        c = self.config
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten on load; keep the global RNG as it was
            return ExpressionDecoderNet(c["n_latent"], n_output, c["n_hidden"], c["n_layers"], c["dropout"],
                                        c["likelihood"], c["output_activation"])

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_output": len(self.features or [])}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.net = self._build(int(state["n_output"]))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if z.ndim != 2 or z.shape[1] != self.config["n_latent"]:
            raise ValueError(f"VAEDecoder expects z [n, {self.config['n_latent']}]; got {tuple(z.shape)}.")
        was_training = self.net.training
        self.net.eval()
        try:
            return batched_apply(self.net.expected, z.float(), batch_size=4096, device=self.device)
        finally:
            self.net.train(was_training)
