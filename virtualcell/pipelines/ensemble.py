"""EnsemblePipeline: fitted pipelines combined by weights, saved in the one pipeline folder format.

Two ways to combine (:func:`stack_cells`), recorded in ``pipeline.json``:

- ``combine="mean"`` (what ``select`` fits): the members' *mean* responses are stacked and the cells are
  those of one member, the ``base``: ``P = P_base + (sum_k w_k mean(P_k) - mean(P_base))`` per gene,
  so the base member's cell-to-cell variation is kept (averaging cells shrinks it);
- ``combine="cells"`` (the default, and every ensemble saved before it was recorded): each cell is
  ``sum_k w_k P_k``.

With ``n_samples > 1`` each sample ``s`` combines the members' draws ``P_k^(s)`` (paired by index) the
same way, which gives the intervals. With ``spread`` factors each prediction's per-gene spread is then scaled around its mean
(:func:`apply_spread`); a one-member ensemble with ``spread`` is how ``select`` returns ``<entry>+spread``.
The weights come from :mod:`virtualcell.selection.stacking`, the factors from
:mod:`virtualcell.selection.spread`.

Saved like every pipeline (:mod:`virtualcell.registry.pipeline_format`)::

    <ensemble>/  pipeline.json   class EnsemblePipeline, parts member-<i> of kind "pipeline", labels,
                                 weights, spread, metadata, the Merkle record over every member's files
                 member-<i>/     one pipeline folder per member (itself hash-checked on load)

so a member folder replaced by another pipeline's is refused on load and before a publish.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from ..registry.pipeline_format import PIPELINE_KIND
from .intervals import add_conformal_columns, predictive_quantiles
from .pipeline import Pipeline

__all__ = ["EnsemblePipeline", "apply_spread", "stack_cells", "COMBINE"]

_MEMBER = re.compile(r"^member-(0|[1-9][0-9]{0,3})$")
_EPS = 1e-6
#: how an ensemble combines its members (see the module doc)
COMBINE = ("cells", "mean")


def stack_cells(members: Sequence[np.ndarray], weights: Sequence[float], base: int | None) -> np.ndarray:
    """Members' predictions ``[n, g]`` of the same cells combined (float64).

    ``base=None``: ``sum_k w_k P_k`` per cell. ``base=b``: ``P_b + (sum_k w_k mean(P_k) - mean(P_b))``,
    the stacked mean response on member ``b``'s cells; when every member predicts non-negative values
    (log-normalised expression) the result is clipped at 0 (as clamped mean-shift is).
    """
    parts = [np.asarray(m, dtype=np.float64) for m in members]
    if base is None:
        return sum(float(w) * p for w, p in zip(weights, parts))
    mean = sum(float(w) * p.mean(axis=0) for w, p in zip(weights, parts))
    out = parts[base] + (mean - parts[base].mean(axis=0))
    if all(p.size == 0 or p.min() >= 0 for p in parts):
        out = np.maximum(out, 0.0)
    return out


def apply_spread(pred: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``pred`` [n, g] with each gene's deviations from its mean scaled by ``factors`` [g] (mean kept).

    Non-negative predictions (log-normalised expression) stay non-negative: values below 0 are set to 0
    and the column is then rescaled to its mean again (a gene with many predicted zeros widens less).
    """
    pred = np.asarray(pred, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if factors.shape != (pred.shape[1],):
        raise ValueError(f"factors must have one value per gene ({pred.shape[1]}); got shape {factors.shape}.")
    mean = pred.mean(axis=0)
    out = mean + factors * (pred - mean)
    if pred.size and pred.min() >= 0:
        out = np.maximum(out, 0.0)
        now = out.mean(axis=0)
        scale = np.divide(mean, now, out=np.ones_like(mean), where=now > _EPS)
        out = out * scale
    return out


def _combine(n_members: int, combine: str, base: int | None) -> tuple[str, int | None]:
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {list(COMBINE)}; got {combine!r}.")
    if combine == "cells":
        return combine, None
    if not isinstance(base, int) or isinstance(base, bool) or not 0 <= base < n_members:
        raise ValueError(f"combine='mean' needs base = the index of one of the {n_members} members; got {base!r}.")
    return combine, base


def _checked(n_members: int, weights: Sequence[float], labels: Sequence[str],
             spread: Mapping[str, float] | None) -> tuple[np.ndarray, list[str], dict[str, float] | None]:
    if not n_members or n_members != len(weights) or n_members != len(labels):
        raise ValueError(f"An ensemble needs one weight and one label per member; got {n_members} members, "
                         f"{len(weights)} weights, {len(labels)} labels.")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any() or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"Ensemble weights must be >= 0 and sum to 1; got {w.tolist()}.")
    factors = {str(g): float(k) for g, k in spread.items()} if spread else None
    if factors and not all(np.isfinite(k) and k > 0 for k in factors.values()):
        raise ValueError("Spread factors must be finite and > 0.")
    return w, [str(label) for label in labels], factors


class EnsemblePipeline(Pipeline):
    """``predict`` = fitted ``members``' predictions (same genes, same cells) combined by ``weights``:
    per cell (``combine="cells"``) or as the stacked mean on member ``base``'s cells (``combine="mean"``)."""

    def __init__(self, members: Sequence[Pipeline], weights: Sequence[float], labels: Sequence[str],
                 metadata: Mapping[str, Any] | None = None, spread: Mapping[str, float] | None = None,
                 combine: str = "cells", base: int | None = None) -> None:
        self.weights, self.labels, self.spread = _checked(len(members), weights, labels, spread)
        self.combine, self.base = _combine(len(members), combine, base)
        super().__init__(**{f"member-{i}": member for i, member in enumerate(members)})
        self.metadata = {**dict(metadata or {}), "ensemble": dict(zip(self.labels, self.weights.tolist()))}

    @property
    def members(self) -> list[Pipeline]:
        return [self.components[f"member-{i}"] for i in range(len(self.components))]

    @property
    def decoder(self):
        """The first member's decoder: its ``output_features`` order the ensemble's genes."""
        return self.members[0].decoder

    def _spread(self, x: np.ndarray, genes: Sequence[str]) -> np.ndarray:
        """``x`` [n, len(genes)] with the spread factors applied (genes without a factor keep 1)."""
        if not self.spread:
            return x
        return apply_spread(x, np.array([self.spread.get(g, 1.0) for g in genes]))

    def predict(self, adata: ad.AnnData, *, target: str, n_samples: int = 1, seed: int = 0,
                quantiles: tuple[float, float] = (0.05, 0.95), key_added: str = "virtualcell",
                **kwargs: Any) -> ad.AnnData:
        """The weighted mean of the members' ``predict`` (``X``); with ``n_samples > 1`` also
        ``variance`` and the ``quantiles`` interval from the paired weighted samples (``layers``). A calibrated
        ensemble (``metadata["conformal"]``, e.g. ``select``'s) adds ``var["conformal_lo_90"]`` etc., as
        :meth:`PerturbationPipeline.predict` does (:func:`~.intervals.add_conformal_columns`)."""
        members = self.members
        outs = [m.predict(adata, target=target, seed=seed, key_added=key_added, **kwargs) for m in members]
        genes = list(map(str, outs[0].var_names))
        x = stack_cells([np.asarray(o[:, genes].X) for o in outs], self.weights, self.base)
        result = ad.AnnData(X=self._spread(x, genes).astype(np.float32), obs=outs[0].obs.copy(),
                            var=outs[0].var.copy())
        result.uns[key_added] = {"ensemble": {label: float(w) for label, w in zip(self.labels, self.weights)},
                                 "spread": bool(self.spread), "labels": list(self.labels),
                                 "combine": self.combine, "base": self.base,
                                 "members": {str(i): o.uns.get(key_added, {}) for i, o in enumerate(outs)},
                                 "call": {"target": target, "n_samples": n_samples, "seed": seed}}
        if n_samples > 1:
            samples, _ = self.predict_samples(adata, target=target, n_samples=n_samples, seed=seed, **{
                k: v for k, v in kwargs.items() if k in ("source", "covariates", "layer", "context_effect_scale")})
            order = list(members[0].decoder.output_features)
            decoded = samples[..., [order.index(g) for g in genes]].double()
            lo, hi = predictive_quantiles(decoded, quantiles, dim=0)
            result.layers["variance"] = decoded.var(0).float().numpy()
            result.layers[f"q{round(quantiles[0] * 100):02d}"] = lo.float().numpy()
            result.layers[f"q{round(quantiles[1] * 100):02d}"] = hi.float().numpy()
        add_conformal_columns(result, self.metadata)   # var conformal_lo_90 / _hi_90 when calibrated, as any pipeline
        return result

    def predict_samples(self, adata: ad.AnnData, *, target: str, n_samples: int = 1, seed: int = 0,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
        """Paired combined samples ``[S, n, genes]`` of the first member's genes (see the module doc)."""
        members = self.members
        genes = list(members[0].decoder.output_features)
        parts = []
        for member in members:
            samples, _ = member.predict_samples(adata, target=target, n_samples=n_samples, seed=seed, **kwargs)
            index = [list(member.decoder.output_features).index(g) for g in genes]
            parts.append(samples[..., index].double().numpy())
        total = torch.from_numpy(np.stack([stack_cells([p[s] for p in parts], self.weights, self.base)
                                           for s in range(parts[0].shape[0])]))
        if self.spread:
            total = torch.stack([torch.from_numpy(self._spread(s.numpy(), genes)) for s in total])
        return total.float(), None

    # -- the pipeline format's hooks ---------------------------------------------------------------
    @classmethod
    def check_part(cls, role: str, kind: str | None, path: Path) -> None:
        """Parts are ``member-<i>`` pipelines."""
        from ..registry.errors import ArtifactError

        if not _MEMBER.match(role) or kind != PIPELINE_KIND:
            raise ArtifactError(f"{path}: an ensemble's parts are pipelines named member-<i>; found "
                                f"{role!r} of kind {kind!r}. The folder is damaged; re-save the ensemble.")

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"labels": self.labels, "weights": self.weights.tolist()}
        if self.combine != "cells":
            fields.update(combine=self.combine, base=self.base)
        if self.spread:
            fields["spread"] = self.spread
        return fields

    def _load_fields(self, fields: Mapping[str, Any], path: Path) -> None:
        from ..registry.errors import TamperedArtifactError

        n = len(self.components)
        if sorted(self.components) != sorted(f"member-{i}" for i in range(n)):
            raise TamperedArtifactError(f"{path}: the members are not numbered member-0..member-{n - 1}; re-save it.")
        weights, labels, spread = fields.get("weights"), fields.get("labels"), fields.get("spread")
        try:
            if not isinstance(weights, list) or not isinstance(labels, list) or not isinstance(spread, (dict, type(None))):
                raise ValueError("weights and labels must be lists and spread an object.")
            self.weights, self.labels, self.spread = _checked(n, weights, labels, spread)
            self.combine, self.base = _combine(n, fields.get("combine", "cells"), fields.get("base"))
        except (TypeError, ValueError) as error:
            raise TamperedArtifactError(f"{path}/pipeline.json: {error} The record is damaged; re-save it.") from None

    @classmethod
    def _load_legacy(cls, path: Path, record: Mapping[str, Any], device: str | torch.device) -> "EnsemblePipeline":
        """An ensemble saved by virtualcell <= 0.x (``members/<i>/``, no Merkle record): loaded with a warning."""
        import warnings

        from ..execution import resolve_device
        from ..registry.errors import ArtifactError, TamperedArtifactError
        from ..registry.hashing import canonical_hash

        version = record.get("format_version", 0)
        if not isinstance(version, int) or version > 2:
            raise ArtifactError(f"{path} uses ensemble format {version!r}; upgrade virtualcell.")
        if record.get("sha256") != canonical_hash({k: v for k, v in record.items() if k != "sha256"}):
            raise TamperedArtifactError(f"{path}/pipeline.json was edited after the ensemble was saved (hash "
                                        "mismatch). Re-save it.")
        warnings.warn(f"{path} is an ensemble saved by an older virtualcell, without a hash record of its members, "
                      "so a swapped member folder cannot be detected. Save it again to upgrade "
                      "(virtualcell.load_pipeline(path).save(new_folder)).", UserWarning, stacklevel=3)
        members = []
        for folder in record["members"]:
            target = (path / str(folder)).resolve()
            if path.resolve() not in target.parents:
                raise TamperedArtifactError(f"{path}/pipeline.json names member {folder!r} outside the folder.")
            members.append(Pipeline.load(target, device=device))
        try:
            ensemble = cls(members, record.get("weights", []), record.get("labels", []), spread=record.get("spread"))
        except (TypeError, ValueError) as error:
            raise TamperedArtifactError(f"{path}/pipeline.json: {error} The record is damaged.") from None
        ensemble.metadata = record.get("metadata", {})
        ensemble.device = resolve_device(device)
        return ensemble

    def _card(self, roles: list[str], card: Mapping[str, Any]) -> str:
        from ..registry.model_card import render_card_sections

        rows = "\n".join(f"| {role} | {label} | {w:.3f} |" for role, label, w in zip(roles, self.labels, self.weights))
        name = type(self).__name__
        return (f"---\nlibrary_name: virtualcell\npipeline: {name}\n---\n\n# {name}\n\n"
                f"{card.get('description', '')}\n\n| folder | member | weight |\n|---|---|---|\n{rows}\n\n"
                + render_card_sections(card))
