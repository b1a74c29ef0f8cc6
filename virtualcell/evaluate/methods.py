"""Methods of a benchmark run: how each is built fresh for every fit, described, and fitted."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad

from ..component import Component
from ..errors import DataError
from ..execution import seed_everything
from . import report as reporting

__all__ = ["Method", "make_method", "fresh", "describe", "load_dataset", "fit_method"]


@dataclasses.dataclass
class Method:
    """A method to benchmark: how to build its components fresh, and whether it sees the context."""

    label: str
    encoder: Any
    manipulator: Any
    decoder: Any
    sees_context: bool
    description: dict[str, Any] = dataclasses.field(default_factory=dict)


def fresh(spec: Any, kwargs: Mapping[str, Any] | None, kind: str) -> Component | None:
    """A new component from a name, a ``{"name": ...}`` dict or an instance (rebuilt from its config;
    a fitted encoder or decoder is used as it is, since pipelines never refit those)."""
    from ..pipelines.pipeline import resolve_component

    kwargs = dict(kwargs or {})
    if spec is None:
        if kwargs:
            raise ValueError(f"{kind}_kwargs {sorted(kwargs)} were given but no {kind}; pass {kind}=<name>.")
        return None
    if isinstance(spec, Component):
        if kwargs:
            raise ValueError(f"{kind}_kwargs cannot change a ready-made {type(spec).__name__}; pass its name instead.")
        if spec.is_fitted and kind != "manipulator":
            return spec  # a pre-trained encoder / decoder: pipelines use it as it is, without refitting
        return type(spec).from_config(spec.config)
    if isinstance(spec, str):
        return resolve_component({"name": spec, **kwargs}, kind)
    if isinstance(spec, Mapping):
        return resolve_component({**spec, **kwargs}, kind)
    raise TypeError(f"{kind} must be a registered name, a dict with 'name', or a component; got {type(spec).__name__}.")


def describe(component: Component | None) -> dict[str, Any] | None:
    from ..registry import registry

    if component is None:
        return None
    try:
        name = registry.name_of(type(component))
    except KeyError:
        name = type(component).__name__
    return {"name": name, "class": type(component).__name__, "config": component.config_dict()}


def make_method(encoder, manipulator, decoder, kwargs: Mapping[str, Mapping[str, Any] | None], sees_context: bool,
            label: str | None = None) -> Method:
    from ..selection.auto import auto_method
    from ..selection.candidates import is_auto

    if is_auto(manipulator):   # selection by inner CV on each task's training cells (virtualcell/selection)
        return auto_method(manipulator, kwargs.get("manipulator"), sees_context, Method, label)
    built = {role: fresh(spec, kwargs.get(role), role)
             for role, spec in (("encoder", encoder), ("manipulator", manipulator), ("decoder", decoder))}
    description = {role: describe(c) for role, c in built.items()}
    if label is None:
        label = "+".join(d["name"] for d in description.values() if d)
    specs = {role: (spec if isinstance(spec, Component) or spec is None else
                    {**({"name": spec} if isinstance(spec, str) else dict(spec)), **dict(kwargs.get(role) or {})})
             for role, spec in (("encoder", encoder), ("manipulator", manipulator), ("decoder", decoder))}
    return Method(label, specs["encoder"], specs["manipulator"], specs["decoder"], sees_context, description)


def load_dataset(data: ad.AnnData | str | Path) -> tuple[ad.AnnData, dict[str, Any]]:
    if isinstance(data, ad.AnnData):
        digest = hashlib.sha256()
        digest.update(str(data.shape).encode())
        digest.update("\n".join(map(str, data.obs_names)).encode())
        digest.update("\n".join(map(str, data.var_names)).encode())
        return data, {"path": None, "sha256": None, "fingerprint": digest.hexdigest()}
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No dataset at {path}; pass the path of an .h5ad file.")
    if path.is_dir():
        raise DataError(f"{path} is a folder (a .zarr store or shards): benchmark it from disk (from_disk=True, "
                        "--from-disk), or pass an .h5ad file.")
    return ad.read_h5ad(path), {"path": str(path.resolve()), "sha256": reporting.sha256_file(path)}


def fit_method(method: Method, train: ad.AnnData, *, condition_key: str, control: str, context_key: str | None,
         seed: int, device: str, progress: bool):
    """A fresh pipeline of ``method`` fitted on ``train`` (seeded); returns it and the seconds it took."""
    from ..pipelines.perturbation import PerturbationPipeline
    from ..selection.auto import fit_auto_method
    from ..selection.candidates import is_auto

    if is_auto(method.manipulator):
        return fit_auto_method(method, train, condition_key=condition_key, control=control, context_key=context_key,
                               seed=seed, progress=progress)
    pipeline = PerturbationPipeline(encoder=fresh(method.encoder, None, "encoder"),
                                    manipulator=fresh(method.manipulator, None, "manipulator"),
                                    decoder=fresh(method.decoder, None, "decoder"), preprocess=None, device=device)
    seed_everything(seed)
    start = time.perf_counter()
    pipeline.fit(train, condition_key=condition_key, control=control, context_key=context_key, seed=seed,
                 progress=progress)
    return pipeline, time.perf_counter() - start


