"""PerturbationPipeline: encoder + manipulator + decoder, AnnData in and AnnData out."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..component import Condition
from ..data.checks import DataError
from ..data.fields import condition_labels, context_vocabulary, covariate_tensors, make_condition
from ..data.preprocess import Preprocessing
from ..data.vocabulary import Vocabulary
from ..execution import batched_apply, make_generator, resolve_device
from .intervals import predictive_quantiles
from .pipeline import Pipeline, resolve_component

__all__ = ["PerturbationPipeline", "RESPONSE_MEANS_FILE"]

#: per-(context, condition) means and counts of the preprocessed expression (see ``context_effects``)
RESPONSE_MEANS_FILE = "response_means.safetensors"


def _data_fingerprint(adata: ad.AnnData) -> str:
    digest = hashlib.sha256()
    digest.update(str(adata.shape).encode())
    digest.update("\n".join(map(str, adata.obs_names[:1000])).encode())
    digest.update("\n".join(map(str, adata.var_names)).encode())
    return digest.hexdigest()


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
            seed: int = 0, progress: bool = True, extra_conditions: Sequence[str] = ()) -> "PerturbationPipeline":
        """Fit encoder (unless already fitted), manipulator and decoder on ``adata``.

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
        labels = condition_labels(adata, condition_key)
        conditions = Vocabulary.from_values(adata.obs[condition_key], first=[control], what=f"{condition_key} value")
        if control not in conditions:
            raise DataError(f"Control label {control!r} is not in adata.obs[{condition_key!r}]; "
                            f"found {conditions.labels}. Pass control=<the label of unperturbed cells>.")
        if len(conditions) < 2:
            raise DataError(f"adata.obs[{condition_key!r}] has only {conditions.labels}; fitting needs control and "
                            "at least one perturbed condition.")
        contexts = context_vocabulary(adata, context_key) if context_key else None
        if contexts is not None:
            has_control = adata.obs.loc[labels == control, context_key].astype(str).unique()
            orphans = [c for c in contexts.labels if c not in set(has_control)]
            if orphans:
                raise DataError(f"{context_key} value(s) {orphans} have no {control!r} cells, so their response cannot "
                                "be anchored. Drop those cells, fix the labels, or fit without context_key.")
        if self.manipulator.requires_context and contexts is None:
            raise DataError(f"{type(self.manipulator).__name__} needs context_key (e.g. 'cell_type').")

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
        from .compatibility import check_combination

        check_combination(self.encoder, self.manipulator, self.decoder, x, z)   # refuses what cannot work

        if extra_conditions:
            conditions = Vocabulary(conditions.labels + [c for c in map(str, extra_conditions) if c not in conditions],
                                    what=conditions.what)
        if callable(getattr(self.manipulator, "prepare_conditions", None)):
            named = self.manipulator.prepare_conditions(
                conditions.labels, x=x, z=z, genes=list(self.preprocessing.genes),
                condition_ids=torch.as_tensor(conditions.encode(labels), device=self.device))
            if list(named[: len(conditions)]) != conditions.labels:
                raise ValueError(f"{type(self.manipulator).__name__}.prepare_conditions must keep the observed labels "
                                 "first and in order.")
            conditions = Vocabulary(named, what=conditions.what)
        condition_ids = conditions.encode(labels)
        context_ids = contexts.encode(adata.obs[context_key]) if contexts else None
        target = make_condition(condition_ids, context_ids=context_ids,
                                covariates=covariate_tensors(adata, covariate_keys)).to(self.device)
        self.response_means = None
        if context_ids is not None:
            from ..instruments.manipulators.group_means import group_means

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
                         "data_fingerprint": _data_fingerprint(adata),
                         "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        }
        return self

    @classmethod
    def select(cls, adata: ad.AnnData, *, candidates: Sequence[Any] | str | None = None, **kwargs: Any):
        """Choose among ``candidates`` by inner leave-one-context-out CV on ``adata``; fit the winner on all of it.

        >>> pipe = PerturbationPipeline.select(train, candidates=["mean-shift", "pca+latent-arithmetic"],
        ...                                    condition_key="condition", context_key="cell_type")  # doctest: +SKIP
        >>> pipe.metadata["selection"]["table"]        # the ranked inner-CV table       # doctest: +SKIP

        Returns the fitted pipeline (an ``EnsemblePipeline`` when the ensemble or a ``+spread`` entry won), its
        selection report in ``metadata["selection"]``. Options and the protocol:
        :func:`virtualcell.evaluate.select.select_pipeline` (docs/selection.md).
        """
        from ..evaluate.select import select_pipeline

        return select_pipeline(adata, candidates=candidates, **kwargs).pipeline

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

        Each cell's current condition is read from the fitted condition column when ``adata`` has it,
        otherwise ``source`` (default: the control label) is used. With ``n_samples > 1``, ``X`` holds
        the central prediction: the mean of the manipulator's own samples, without the context random
        effect (the same as ``n_samples=1`` for a deterministic manipulator; a mean of samples clamped at 0
        after a random effect is biased upwards, issue #11) and ``layers`` hold the samples' ``sample_mean``,
        ``variance`` and central interval (``q05``/``q95`` for the default ``quantiles``, predictive
        quantiles of the samples: see ``virtualcell.pipelines.intervals``); ``context_effect_scale``
        scales the random effect of unobserved contexts' responses (see :meth:`predict_samples`).
        Provenance goes to ``uns[key_added]``.
        """
        decoded, samples, model_decoded = self._sample(adata, target=target, source=source, n_samples=n_samples,
                                                       seed=seed, covariates=covariates, layer=layer,
                                                       context_effect_scale=context_effect_scale)
        central = None if n_samples == 1 else (model_decoded, samples)
        return self._to_anndata(adata, decoded, samples, target, quantiles, key_added,
                                {"target": target, "n_samples": n_samples, "seed": seed,
                                 "covariates": dict(covariates or {}), "context_effect_scale": context_effect_scale},
                                central=central)

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
        decoded, samples, _ = self._sample(adata, target=target, source=source, n_samples=n_samples, seed=seed,
                                           covariates=covariates, layer=layer,
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
        conditions = self.conditions
        target_id = conditions.id(target)
        key = meta["condition_key"]
        if source is None and key in adata.obs:
            source_ids = conditions.encode(condition_labels(adata, key))
        else:
            source_ids = np.full(adata.n_obs, conditions.id(source or meta["control"]), dtype=np.int64)
        context_ids, effect_contexts = None, None    # the manipulator's ids; per-cell ids, -1 if unknown
        if meta["context_key"] and meta["context_key"] in adata.obs:
            known = Vocabulary(meta["contexts"])
            ids = np.array([known.id(v) if v in known else -1 for v in adata.obs[meta["context_key"]].astype(str)],
                           dtype=np.int64)
            effect_contexts = torch.as_tensor(ids)
            if (ids >= 0).all():
                context_ids = ids
        if self.manipulator.requires_context and context_ids is None:
            raise DataError(f"{type(self.manipulator).__name__} needs every cell's {meta['context_key']!r} "
                            f"among the fitted ones {meta['contexts']}.")
        condition = make_condition(np.full(adata.n_obs, target_id), source_ids=source_ids, context_ids=context_ids,
                                   covariates=covariate_tensors(adata, meta["covariate_keys"], dict(covariates or {})))
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
            decoded = decoded + context_effect_scale * self._context_effects(condition, effect_contexts, n_samples,
                                                                             seed).to(decoded.device, decoded.dtype)
        if self.decoder.output_type == "expression":
            decoded, model_decoded = decoded.clamp_min(0), model_decoded.clamp_min(0)
        return decoded, samples, model_decoded

    def _context_effects(self, condition: Condition, contexts: torch.Tensor | None, n_samples: int,
                         seed: int) -> torch.Tensor:
        """Random effects [S, n, genes] of unobserved contexts' responses (CPU; zeros for observed ones)."""
        from .context_effects import context_effects

        means, counts = self.response_means
        genes = list(self.decoder.output_features or [])
        if genes != list(self.preprocessing.genes):
            raise ValueError("context_effect_scale > 0 needs a decoder whose outputs are the fitted genes "
                             f"({len(self.preprocessing.genes)} genes); this one has {len(genes)} outputs. "
                             "Pass context_effect_scale=0.")
        seed_sequence = np.random.SeedSequence(int(seed), spawn_key=(0x5EED,))   # not the manipulator's stream
        generator = torch.Generator().manual_seed(int(seed_sequence.generate_state(1, np.uint64)[0]))
        return context_effects(means, counts, condition.source.cpu(), condition.target.cpu(), contexts, n_samples,
                               generator)

    def _to_anndata(self, adata, decoded, samples, target, quantiles, key_added, call, central=None) -> ad.AnnData:
        meta = self.metadata
        center_decoded, center_samples = (decoded, samples) if central is None else central
        mean = center_decoded.mean(0).float().cpu().numpy()
        obs = adata.obs.copy()
        key = meta["condition_key"]
        if key in obs:
            obs[f"{key}_source"] = obs[key].astype(str)
        obs[key] = pd.Categorical([target] * adata.n_obs, categories=meta["conditions"])
        out = ad.AnnData(X=mean, obs=obs, var=pd.DataFrame(index=pd.Index(self.decoder.output_features, dtype=str)))
        out.obsm[f"X_{key_added}"] = center_samples.mean(0).float().cpu().numpy()
        if decoded.shape[0] > 1:
            lo, hi = predictive_quantiles(decoded.float(), quantiles, dim=0)
            out.layers["sample_mean"] = decoded.float().mean(0).cpu().numpy()
            out.layers["variance"] = decoded.float().var(0).cpu().numpy()
            out.layers[f"q{round(quantiles[0] * 100):02d}"] = lo.cpu().numpy()
            out.layers[f"q{round(quantiles[1] * 100):02d}"] = hi.cpu().numpy()
        out.uns[key_added] = {
            "pipeline": {role: {"component": type(c).__name__, "config": c.config_json()}
                         for role, c in self.components.items() if c is not None},
            "call": {k: (str(v) if isinstance(v, dict) else v) for k, v in call.items()},
            "training": meta["training"],
        }
        return out
