"""A weighted ensemble of fitted pipelines, with weights stacked from inner cross-validation only.

Weights (Breiman's stacking, 1996): for inner units ``u`` with predicted mean responses
``D_u = [mean(P_uk) - mean(C_u)]_k`` [genes, K] and real responses ``d_u = mean(S_u) - mean(C_u)``,
``w = argmin sum_u ||D_u w - d_u||^2`` subject to ``w >= 0`` and ``sum(w) = 1``. The ensemble
predicts each cell as ``sum_k w_k P_k`` (each member's central prediction); with ``n_samples > 1``
sample ``s`` is ``sum_k w_k P_k^(s)`` (members' draws paired by index), which gives the intervals.
With ``spread`` factors (:mod:`.select_spread`) each prediction's per-gene spread is then scaled
around its mean; a one-member ensemble with ``spread`` is how ``select`` returns ``<entry>+spread``.

Saved as a folder like a pipeline::

    <ensemble>/  pipeline.json   class EnsemblePipeline, labels, weights, metadata, sha256
                 members/<i>/    one PerturbationPipeline artifact per member
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

__all__ = ["EnsemblePipeline", "stacking_weights", "leave_fold_out_ensemble", "ensemble_view"]

_FORMAT = 2   # 2: optional per-gene spread factors (files without them stay format 1)


def stacking_weights(deltas: Sequence[np.ndarray], truths: Sequence[np.ndarray], penalty: float = 1e4) -> np.ndarray:
    """Non-negative weights summing to 1 [K] minimising the squared error of the weighted mean response.

    ``deltas``: per unit, the K candidates' predicted mean responses [genes, K]; ``truths``: per unit,
    the real mean response [genes]. Solved by NNLS with the sum-to-one constraint as a heavily
    weighted extra row (``penalty`` times the data's scale).
    """
    from scipy.optimize import nnls

    if not deltas:
        raise ValueError("stacking_weights needs at least one unit.")
    a = np.vstack([np.asarray(d, dtype=np.float64) for d in deltas])
    b = np.concatenate([np.asarray(t, dtype=np.float64) for t in truths])
    scale = penalty * max(float(np.abs(a).max()), 1e-12)
    a = np.vstack([a, np.full((1, a.shape[1]), scale)])
    b = np.append(b, scale)
    weights, _ = nnls(a, b, maxiter=50 * a.shape[1])
    total = weights.sum()
    return weights / total if total > 0 else np.full(a.shape[1], 1.0 / a.shape[1])


def leave_fold_out_ensemble(preds: Mapping[str, Mapping[str, np.ndarray]], responses: Mapping[str, tuple],
                            folds: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str]):
    """Stacked-ensemble predictions of each inner unit with weights fitted on the *other* folds' units.

    ``preds[label][unit]`` [n, g]; ``responses[unit]`` = ``(control mean [g], real mean [g])``;
    ``folds``: ``(name, units)``. Returns ``({unit: [n, g]}, final weights [K] from every unit,
    {fold name: weights [K]})``.
    """
    def design(names):
        deltas = [np.stack([preds[label][n].mean(0) - responses[n][0] for label in labels], 1) for n in names]
        return deltas, [responses[n][1] - responses[n][0] for n in names]

    out, per_fold = {}, {}
    for name, units in folds:
        others = [u for other, members in folds if other != name for u in members]
        w = stacking_weights(*design(others))
        per_fold[name] = w.tolist()
        for unit in units:
            out[unit] = _weighted(preds, labels, w, unit)
    final = stacking_weights(*design([u for _, members in folds for u in members]))
    return out, final, per_fold


def ensemble_view(preds: Mapping[str, Mapping[str, np.ndarray]], labels: Sequence[str], per_fold: Sequence,
                  final: Sequence[float]):
    """``view(fold, unit)`` (see :data:`.select_spread.View`): the ensemble's prediction of ``unit`` with the
    weights fitted without fold ``fold`` (``per_fold[fold]``), or with the ``final`` weights (fold None)."""
    def view(fold, unit):
        return _weighted(preds, labels, final if fold is None else per_fold[fold], unit)
    return view


def _weighted(preds, labels, weights, unit) -> np.ndarray:
    return sum(float(w) * preds[label][unit].astype(np.float64) for w, label in zip(weights, labels))


def _hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class EnsemblePipeline:
    """``predict`` = the ``weights``-weighted mean of fitted ``members``' predictions (same genes, same cells)."""

    def __init__(self, members: Sequence[Any], weights: Sequence[float], labels: Sequence[str],
                 metadata: Mapping[str, Any] | None = None, spread: Mapping[str, float] | None = None) -> None:
        if not members or len(members) != len(weights) or len(members) != len(labels):
            raise ValueError(f"An ensemble needs one weight and one label per member; got {len(members)} members, "
                             f"{len(weights)} weights, {len(labels)} labels.")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"Ensemble weights must be >= 0 and sum to 1; got {w.tolist()}.")
        self.members = list(members)
        self.weights = w
        self.labels = [str(label) for label in labels]
        self.spread = {str(g): float(k) for g, k in spread.items()} if spread else None
        if self.spread and not all(np.isfinite(k) and k > 0 for k in self.spread.values()):
            raise ValueError("Spread factors must be finite and > 0.")
        self.metadata: dict[str, Any] = {**dict(metadata or {}), "ensemble": dict(zip(self.labels, w.tolist()))}

    def _spread(self, x: np.ndarray, genes: Sequence[str]) -> np.ndarray:
        """``x`` [n, len(genes)] with the spread factors applied (genes without a factor keep 1)."""
        if not self.spread:
            return x
        from .select_spread import apply_spread

        return apply_spread(x, np.array([self.spread.get(g, 1.0) for g in genes]))

    @property
    def decoder(self):
        """The first member's decoder: its ``output_features`` order the ensemble's genes."""
        return self.members[0].decoder

    def predict(self, adata: ad.AnnData, *, target: str, n_samples: int = 1, seed: int = 0,
                quantiles: tuple[float, float] = (0.05, 0.95), key_added: str = "virtualcell",
                **kwargs: Any) -> ad.AnnData:
        """The weighted mean of the members' ``predict`` (``X``); with ``n_samples > 1`` also
        ``variance`` and the ``quantiles`` interval from the paired weighted samples (``layers``)."""
        outs = [m.predict(adata, target=target, seed=seed, key_added=key_added, **kwargs) for m in self.members]
        genes = list(map(str, outs[0].var_names))
        x = sum(w * np.asarray(o[:, genes].X, dtype=np.float64) for w, o in zip(self.weights, outs))
        result = ad.AnnData(X=self._spread(x, genes).astype(np.float32), obs=outs[0].obs.copy(),
                            var=outs[0].var.copy())
        result.uns[key_added] = {"ensemble": {label: float(w) for label, w in zip(self.labels, self.weights)},
                                 "spread": bool(self.spread), "labels": list(self.labels),
                                 "members": {str(i): o.uns.get(key_added, {}) for i, o in enumerate(outs)},
                                 "call": {"target": target, "n_samples": n_samples, "seed": seed}}
        if n_samples > 1:
            from ..pipelines.intervals import predictive_quantiles

            samples, _ = self.predict_samples(adata, target=target, n_samples=n_samples, seed=seed, **{
                k: v for k, v in kwargs.items() if k in ("source", "covariates", "layer", "context_effect_scale")})
            order = list(self.members[0].decoder.output_features)
            decoded = samples[..., [order.index(g) for g in genes]].double()
            lo, hi = predictive_quantiles(decoded, quantiles, dim=0)
            result.layers["variance"] = decoded.var(0).float().numpy()
            result.layers[f"q{round(quantiles[0] * 100):02d}"] = lo.float().numpy()
            result.layers[f"q{round(quantiles[1] * 100):02d}"] = hi.float().numpy()
        return result

    def predict_samples(self, adata: ad.AnnData, *, target: str, n_samples: int = 1, seed: int = 0,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
        """Paired weighted samples ``[S, n, genes]`` of the first member's genes (see the module doc)."""
        genes = list(self.members[0].decoder.output_features)
        total = None
        for w, member in zip(self.weights, self.members):
            samples, _ = member.predict_samples(adata, target=target, n_samples=n_samples, seed=seed, **kwargs)
            index = [list(member.decoder.output_features).index(g) for g in genes]
            part = float(w) * samples[..., index].double()
            total = part if total is None else total + part
        if self.spread:
            total = torch.stack([torch.from_numpy(self._spread(s.numpy(), genes)) for s in total])
        return total.float(), None

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One folder: ``pipeline.json`` (weights, labels, metadata, hash) and ``members/<i>/`` (atomic)."""
        from ..registry.artifact import atomic_directory, package_version

        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            folders = []
            for i, member in enumerate(self.members):
                member.save(tmp / "members" / str(i))
                folders.append(f"members/{i}")
            spec = {"format_version": _FORMAT if self.spread else 1, "class": type(self).__name__,
                    "members": folders, "labels": self.labels, "weights": self.weights.tolist(),
                    "metadata": self.metadata, "virtualcell_version": package_version("virtualcell")}
            if self.spread:
                spec["spread"] = self.spread
            spec["sha256"] = _hash(spec)
            (tmp / "pipeline.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            rows = "\n".join(f"| {label} | {w:.3f} |" for label, w in zip(self.labels, self.weights))
            (tmp / "README.md").write_text(f"---\nlibrary_name: virtualcell\npipeline: EnsemblePipeline\n---\n\n"
                                           f"# EnsemblePipeline\n\n| member | weight |\n|---|---|\n{rows}\n",
                                           encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> "EnsemblePipeline":
        """Load a saved ensemble; each member through ``PerturbationPipeline.load`` (hash-checked)."""
        from ..pipelines.perturbation import PerturbationPipeline
        from ..registry.artifact import ArtifactError, TamperedArtifactError
        from ..registry.limits import read_json

        path = Path(path)
        file = path / "pipeline.json"
        if not file.exists():
            raise ArtifactError(f"{path} is not a pipeline folder (no pipeline.json).")
        spec = read_json(file)                    # size-checked before it is read
        if not isinstance(spec, dict) or spec.get("class") != cls.__name__:
            kind = spec.get("class") if isinstance(spec, dict) else type(spec).__name__
            raise ArtifactError(f"{path} holds a {kind}, not an {cls.__name__}.")
        if spec.get("format_version", 0) > _FORMAT:
            raise ArtifactError(f"{path} uses ensemble format {spec['format_version']}; upgrade virtualcell.")
        digest = spec.pop("sha256", None)
        if digest != _hash(spec):
            raise TamperedArtifactError(f"{file} was edited after the ensemble was saved (hash mismatch). Re-save it.")
        members = []
        for folder in spec["members"]:
            target = (path / folder).resolve()
            if path.resolve() not in target.parents:
                raise TamperedArtifactError(f"{file} names member {folder!r} outside the folder.")
            members.append(PerturbationPipeline.load(target, device=device))
        ensemble = cls(members, spec["weights"], spec["labels"], spread=spec.get("spread"))
        ensemble.metadata = spec["metadata"]
        return ensemble
