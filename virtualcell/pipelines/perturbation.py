"""PerturbationPipeline: encoder + manipulator + decoder, AnnData in and AnnData out."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import torch

from ..data.checks import DataError
from ..data.fingerprint import data_fingerprint
from ..data.preprocess import Preprocessing
from ..data.vocabulary import Vocabulary
from ..execution import batched_apply, make_generator, resolve_device
from .fit_labels import fit_targets, training_labels
from .intervals import add_conformal_columns
from .pipeline import Pipeline, resolve_component
from .predicted_cells import predicted_anndata, predicted_obs
from .prediction_condition import prediction_condition, source_labels

__all__ = ["PerturbationPipeline", "RESPONSE_MEANS_FILE"]

#: per-(context, condition) means and counts of the preprocessed expression (see ``context_effects``)
RESPONSE_MEANS_FILE = "response_means.safetensors"


class PerturbationPipeline(Pipeline):
    """Predict how cells respond to a condition they were not measured in.

    >>> pipe = PerturbationPipeline(encoder="pca", manipulator="latent-arithmetic")
    >>> pipe.fit(train, condition_key="condition", control="control", context_key="cell_type")
    >>> predicted = pipe.predict(control_cells, target="stimulated")   # AnnData, log-normalised

    Fitted with ``context_key``, it keeps the per-(context, condition) means of the preprocessed
    expression (``response_means``, [K, N, genes] and counts [K, N]); with ``n_samples > 1`` they
    add a random effect per sample to predictions for contexts whose response was not observed
    (``context_effect_scale``; see ``virtualcell.pipelines.context_effects``).

    Args:
        encoder: registered name, ``{"name": ..., **kwargs}`` or an ``Encoder`` (default ``"pca"``).
        manipulator: likewise a ``Manipulator`` (default ``"latent-arithmetic"``).
        decoder: likewise a ``Decoder``; None uses the encoder's paired decoder (its inverse).
        preprocess: ``None`` (X is log-normalised already), a preset (``"log1p"``, ``"kang-full"``) or
            a dict of ``Preprocessing`` options; recorded and re-applied at prediction.
        device: ``"cpu"`` (default), ``"cuda"``, ``"mps"`` or ``"auto"``.
    """

    roles = ("encoder", "manipulator", "decoder")

    def __init__(self, encoder: Any = "pca", manipulator: Any = "latent-arithmetic", decoder: Any = None, *,
                 preprocess: Any = None, device: str | torch.device = "cpu") -> None:
        super().__init__(encoder=resolve_component(encoder, "encoder"),
                         manipulator=resolve_component(manipulator, "manipulator"),
                         decoder=resolve_component(decoder, "decoder"))
        self.preprocessing = Preprocessing.from_spec(preprocess)
        self.device = resolve_device(device)
        self.batch_size = 4096
        self.response_means: tuple[torch.Tensor, torch.Tensor] | None = None   # CPU ([K, N, G], [K, N])

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, adata: ad.AnnData, *, condition_key: str = "condition", control: str = "control",
            context_key: str | None = None, covariate_keys: Sequence[str] = (), layer: str | None = None,
            seed: int = 0, progress: bool = True, extra_conditions: Sequence[str] = (),
            disk: Mapping[str, Any] | None = None) -> "PerturbationPipeline":
        """Fit encoder (unless already fitted), manipulator and decoder on ``adata``.

        ``adata`` may be a path (h5ad / zarr; a folder or list of shards), a backed AnnData or a
        :class:`~virtualcell.train.disk_cells.DiskCells` (a selection of a store's cells, e.g. a training
        split): then the pipeline trains from disk with bounded memory (``virtualcell.pipelines.fit_from_disk``,
        loader options ``disk``; docs/scale.md).

        Args:
            condition_key: obs column with each cell's condition.
            control: the label of unperturbed cells in that column.
            context_key: optional obs column of contexts (cell types); None hides it from the model.
            covariate_keys: numeric obs columns (dose, time) handed to the manipulator.
            layer: where the expression is (default ``X``).
            seed: seeds every stochastic step.
            extra_conditions: condition labels without cells that the model may be asked to predict (unseen
                targets), given ids after the observed ones. A manipulator with ``prepare_conditions`` (e.g.
                ``gene-network``) may name more: it gets the labels, ``x``, ``z`` and the genes, and returns
                them extended (kept in order), e.g. by every gene of its network.
        """
        from .fit_from_disk import fit_from_disk, is_on_disk

        if is_on_disk(adata):
            return fit_from_disk(self, adata, condition_key=condition_key, control=control, context_key=context_key,
                                 covariate_keys=covariate_keys, layer=layer, seed=seed, progress=progress,
                                 extra_conditions=extra_conditions, disk=disk)
        if self.manipulator.requires_context and not context_key:
            raise DataError(f"{type(self.manipulator).__name__} needs context_key (e.g. 'cell_type').")
        labels, conditions, contexts = training_labels(adata, condition_key=condition_key, control=control,
                                                       context_key=context_key, covariate_keys=covariate_keys)

        if self.encoder.is_fitted:  # a pre-trained encoder fixes the genes
            self.preprocessing.genes = self.encoder.input_features
        else:
            self.preprocessing.fit(adata, layer=layer)
        x_np = self.preprocessing.transform(adata, layer=layer)
        x = torch.from_numpy(x_np).to(self.device)
        self.encoder.to(self.device)
        if not self.encoder.is_fitted:
            self.encoder.fit(x, self.preprocessing.genes, seed=seed, progress=progress)
        z = self._encode(x)
        conditions, condition_ids, context_ids, target = fit_targets(
            self, labels, conditions, contexts, adata, context_key=context_key, covariate_keys=covariate_keys,
            extra=extra_conditions, x=x, z=z, genes=self.preprocessing.genes)
        self.response_means = None
        if context_ids is not None:
            from ..nn.group_means import group_means

            means, counts = group_means(x, torch.as_tensor(condition_ids, dtype=torch.long, device=self.device),
                                        torch.as_tensor(context_ids, dtype=torch.long, device=self.device),
                                        len(conditions), len(contexts))
            self.response_means = (means.cpu(), counts.float().cpu())
        self.manipulator.to(self.device)
        self.manipulator.fit(z, target, n_conditions=len(conditions), n_contexts=len(contexts) if contexts else 0,
                             seed=seed, progress=progress)
        if self.decoder is None:
            decoder = self.encoder.paired_decoder()
            if decoder is None:  # no inverse (e.g. a transformer): learn one, so every manipulator runs on it
                from ..instruments.decoders.mlp import MLPDecoder

                likelihood = "nb" if self.preprocessing.raw_counts else "gaussian"
                decoder = MLPDecoder(likelihood=likelihood).to(self.device).fit(
                    z, x, self.preprocessing.genes, seed=seed, progress=progress)
            self.components["decoder"] = decoder
        elif not self.decoder.is_fitted:
            self.decoder.to(self.device).fit(z, x, self.preprocessing.genes, seed=seed, progress=progress)
        self.decoder.to(self.device)

        self.metadata = {
            "condition_key": condition_key, "control": control, "conditions": conditions.labels,
            "context_key": context_key, "contexts": contexts.labels if contexts else None,
            "covariate_keys": list(covariate_keys), "layer": layer,
            "preprocessing": self.preprocessing.to_dict(),
            "training": {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars), "seed": seed,
                         "data_fingerprint": data_fingerprint(adata),
                         "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        }
        return self

    @classmethod
    def select(cls, *args: Any, **kwargs: Any):
        """Moved: selection sits above pipelines, so it is ``virtualcell.select(adata, candidates=..., ...)``
        (same arguments, returns the fitted pipeline; docs/selection.md)."""
        raise AttributeError("PerturbationPipeline.select moved to virtualcell.select(adata, candidates=..., "
                             "context_key=...) with the same arguments (import virtualcell as vc; vc.select(...)).")

    def _after_load(self) -> None:
        self.preprocessing = Preprocessing.from_spec(self.metadata["preprocessing"])
        self.batch_size = 4096

    def _tensor_files(self) -> dict[str, dict[str, torch.Tensor]]:
        if self.response_means is None:
            return {}
        means, counts = self.response_means
        return {RESPONSE_MEANS_FILE: {"means": means, "counts": counts}}

    def _load_tensor_files(self, files: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """``response_means`` from the saved file; None for an artifact saved without it (no random effects)."""
        tensors = files.get(RESPONSE_MEANS_FILE)
        self.response_means = None if tensors is None else (tensors["means"].float(), tensors["counts"].float())

    def _check_fitted(self) -> None:
        if not self.metadata:
            raise RuntimeError("This pipeline is not fitted; call .fit(adata, ...) or PerturbationPipeline.load(path).")

    @property
    def conditions(self) -> Vocabulary:
        self._check_fitted()
        return Vocabulary(self.metadata["conditions"], what=f"{self.metadata['condition_key']} value")

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return batched_apply(self.encoder.encode, x, batch_size=self.batch_size)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return batched_apply(self.decoder.decode, z, batch_size=self.batch_size)

    # -- prediction ------------------------------------------------------------------------------
    def prepare(self, adata: ad.AnnData, layer: str | None = None) -> torch.Tensor:
        """Preprocess ``adata`` as at fit time and align genes: [n, genes] on the pipeline's device."""
        self._check_fitted()
        layer = self.metadata["layer"] if layer is None else layer
        return torch.from_numpy(self.preprocessing.transform(adata, layer=layer)).to(self.device)

    def predict(self, adata: ad.AnnData, *, target: str, source: str | None = None, n_samples: int = 1,
                seed: int = 0, covariates: Mapping[str, float] | None = None, layer: str | None = None,
                key_added: str = "virtualcell", quantiles: tuple[float, float] = (0.05, 0.95),
                context_effect_scale: float = 1.0) -> ad.AnnData:
        """Predict ``adata``'s cells under condition ``target``; returns a new AnnData.

        Each cell's current condition is ``source`` when given, else read from the fitted condition column
        when ``adata`` has it, else the control label; cells already in ``target`` are refused (DataError).
        A backed ``adata`` is read into memory. The predicted cells are named ``<name>-pred-<target>`` and
        keep only the obs columns that describe them (:mod:`virtualcell.pipelines.predicted_cells`).
        With ``n_samples > 1``, ``X`` holds
        the central prediction: the mean of the manipulator's own samples, without the context random
        effect (the same as ``n_samples=1`` for a deterministic manipulator; a mean of samples clamped at 0
        after a random effect is biased upwards, issue #11) and ``layers`` hold the samples' ``sample_mean``,
        ``variance`` and central interval (``q05``/``q95`` for the default ``quantiles``, predictive
        quantiles of the samples: see ``virtualcell.pipelines.intervals``); ``context_effect_scale``
        scales the random effect of unobserved contexts' responses (see :meth:`predict_samples`).
        Provenance goes to ``uns[key_added]``. A calibrated pipeline (``metadata["conformal"]``) adds
        ``var["conformal_lo_90"]`` / ``["conformal_hi_90"]`` per level (``virtualcell.pipelines.intervals``).
        """
        adata = _in_memory(adata)
        decoded, samples, model_decoded = self._sample(adata, target=target, source=source, n_samples=n_samples,
                                                       seed=seed, covariates=covariates, layer=layer,
                                                       context_effect_scale=context_effect_scale)
        call = {"target": target, "n_samples": n_samples, "seed": seed, "covariates": str(dict(covariates or {})),
                "context_effect_scale": context_effect_scale}
        provenance = {"pipeline": {role: {"component": type(c).__name__, "config": c.config_json()}
                                   for role, c in self.components.items() if c is not None},
                      "call": call, "training": self.metadata["training"]}
        obs = predicted_obs(adata, self.metadata, target=target, sources=source_labels(adata, self.metadata, source),
                            covariates=covariates)
        predicted = predicted_anndata(obs, self.decoder.output_features, decoded, samples,
                                      central=None if n_samples == 1 else model_decoded, quantiles=quantiles,
                                      key_added=key_added, provenance=provenance)
        add_conformal_columns(predicted, self.metadata)   # var conformal_lo_90 / _hi_90 when calibrated
        return predicted

    def predict_samples(self, adata: ad.AnnData, *, target: str, source: str | None = None, n_samples: int = 1,
                        seed: int = 0, covariates: Mapping[str, float] | None = None,
                        layer: str | None = None, context_effect_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples behind :meth:`predict`: decoded ``[S, n, features]`` (expression clamped at 0)
        and representation ``[S, n, d]``, before they are reduced to a mean, variance and interval.

        With ``n_samples > 1`` and a pipeline fitted with ``context_key``, cells of a context whose
        response ``source -> target`` was not observed at fit (a context unknown here, or one with no
        cells in either condition at fit) get ``context_effect_scale`` times a random effect per
        sample in the decoded space (``context_effects.context_effects``, drawn on CPU from ``seed``),
        added before the clamp at 0. ``n_samples == 1`` is the central prediction, without it.
        """
        decoded, samples, _ = self._sample(_in_memory(adata), target=target, source=source, n_samples=n_samples,
                                           seed=seed, covariates=covariates, layer=layer,
                                           context_effect_scale=context_effect_scale)
        return decoded, samples

    def _sample(self, adata: ad.AnnData, *, target: str, source: str | None, n_samples: int, seed: int,
                covariates: Mapping[str, float] | None, layer: str | None,
                context_effect_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict_samples`'s decoded ``[S, n, features]`` and representation ``[S, n, d]``, plus the
        model's own decoded samples ``[S, n, features]`` without the context random effect (both clamped
        at 0 for expression): their mean is the central prediction, whatever ``n_samples``."""
        self._check_fitted()
        if context_effect_scale < 0:
            raise ValueError(f"context_effect_scale must be >= 0 (0: no random effect); got {context_effect_scale}.")
        meta = self.metadata
        if adata.n_obs == 0:
            raise DataError("No cells to predict from (the AnnData is empty).")
        condition, effect_contexts = prediction_condition(adata, meta, self.conditions, target=target, source=source,
                                                          covariates=covariates, manipulator=self.manipulator)
        x = self.prepare(adata, layer)
        z = self._encode(x)
        generator = make_generator(seed, "cpu")
        torch.manual_seed(seed)
        with torch.no_grad():
            moved = self.manipulator.manipulate(z, condition.to(self.device), n_samples=n_samples, generator=generator)
        samples = moved.unsqueeze(0) if n_samples == 1 else moved             # [S, n, d]
        model_decoded = torch.stack([self._decode(s) for s in samples])       # [S, n, genes]
        decoded = model_decoded
        if n_samples > 1 and context_effect_scale > 0 and self.response_means is not None:
            from .context_effects import pipeline_context_effects

            effects = pipeline_context_effects(self.response_means, self.decoder.output_features,
                                               self.preprocessing.genes, condition, effect_contexts, n_samples, seed)
            decoded = decoded + context_effect_scale * effects.to(decoded.device, decoded.dtype)
        if self.decoder.output_type == "expression":
            decoded, model_decoded = decoded.clamp_min(0), model_decoded.clamp_min(0)
        return decoded, samples, model_decoded


def _in_memory(adata: ad.AnnData) -> ad.AnnData:
    """``adata`` itself, or its rows read into memory when it is backed (file-backed X, ``backed="r"``)."""
    return adata.to_memory() if adata.isbacked else adata
