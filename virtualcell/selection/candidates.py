"""Candidate pipelines for :func:`virtualcell.selection.select_pipeline`, written as short specs.

A spec joins registered component names with ``+``, each optionally followed by init options in
parentheses (values read as JSON, else text)::

    mean-shift                                   one name: a manipulator in gene space (identity encoder)
    pca+latent-arithmetic                        encoder + manipulator (the encoder's own decoder)
    vae(n_hidden=256,max_epochs=20)+latent-arithmetic
    pca(n_components=20)+cgan(max_epochs=5)+pca-decoder    encoder + manipulator + decoder

A dict ``{"encoder": ..., "manipulator": ..., "decoder": ..., "label": ...}`` (each part a name or a
``{"name": ..., **options}`` dict) is accepted too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Candidate", "parse_candidate", "parse_candidates", "split_specs", "DEFAULT_CANDIDATES", "is_auto",
           "capped"]

#: the default candidate set, simplest first (the one-standard-error rule prefers the earlier entry); each
#: component at its own defaults, so an inner fit is the fit a user makes (the VAE: 40 epochs)
DEFAULT_CANDIDATES: tuple[str, ...] = (
    "mean-shift",
    "pca+latent-arithmetic",
    "vae+latent-arithmetic",
)
_PART = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\((.*)\))?\s*$", re.S)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One candidate pipeline: its label and the ``{"name": ..., **options}`` spec of each role."""

    label: str
    encoder: dict[str, Any]
    manipulator: dict[str, Any]
    decoder: dict[str, Any] | None = None

    def specs(self) -> dict[str, Any]:
        """``{"encoder": ..., "manipulator": ..., "decoder": ...}`` (fresh dicts, for PerturbationPipeline)."""
        return {"encoder": dict(self.encoder), "manipulator": dict(self.manipulator),
                "decoder": None if self.decoder is None else dict(self.decoder)}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **self.specs()}


def capped(candidate: Candidate, max_epochs: int | None) -> Candidate:
    """``candidate`` with every component that trains for ``max_epochs`` capped at ``max_epochs`` (same label).

    The quick inner CV of :func:`virtualcell.selection.select_pipeline`; None: unchanged.
    """
    if max_epochs is None:
        return candidate
    import inspect

    from ..registry import registry

    def cap(spec: dict[str, Any] | None) -> dict[str, Any] | None:
        if spec is None:
            return None
        parameter = inspect.signature(registry.get(spec["name"]).__init__).parameters.get("max_epochs")
        if parameter is None:
            return spec
        current = spec.get("max_epochs", parameter.default)
        limit = max_epochs if not isinstance(current, int) else min(current, max_epochs)
        return {**spec, "max_epochs": limit}

    return Candidate(candidate.label, cap(candidate.encoder), cap(candidate.manipulator), cap(candidate.decoder))


def is_auto(spec: Any) -> bool:
    """Whether a manipulator spec asks for selection (``"auto"`` or ``{"name": "auto", ...}``)."""
    if isinstance(spec, str):
        return spec.strip().lower() == "auto"
    return isinstance(spec, Mapping) and str(spec.get("name", "")).lower() == "auto"


def split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside brackets, parts stripped (empty parts kept)."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def split_specs(text: str) -> list[str]:
    """``"a,b(x=1,y=[1,2]),c"`` -> ``["a", "b(x=1,y=[1,2])", "c"]``: commas inside brackets are kept."""
    return [item for item in split_top_level(text, ",") if item]


def _options(text: str | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in split_specs(text or ""):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Option {item!r} in candidate {where!r} is not key=value (e.g. vae(max_epochs=20)).")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _known(kind: str) -> list[str]:
    import warnings

    from ..registry import registry

    with warnings.catch_warnings():   # a broken plugin is reported when it is asked for, not in this list
        warnings.simplefilter("ignore")
        return registry.names(kind)


def _checked(spec: dict[str, Any], kind: str, where: str) -> dict[str, Any]:
    """``spec`` after checking that its name is a registered ``kind`` (errors list the registered ones)."""
    from ..registry import registry
    from ..registry.registry import UnknownComponentError

    name = spec.get("name")
    if not isinstance(name, str):
        raise ValueError(f"Candidate {where!r}: the {kind} needs a registered name; got {name!r}.")
    try:
        cls = registry.get(name)
    except UnknownComponentError:
        raise ValueError(f"Unknown {kind} {name!r} in candidate {where!r}. Registered {kind}s: {_known(kind)}. "
                         "A candidate is encoder+manipulator[+decoder], or one manipulator name (gene space).") from None
    if cls.kind != kind:
        raise ValueError(f"{name!r} in candidate {where!r} is {_article(cls.kind)} {cls.kind}, not {_article(kind)} {kind}. Registered {kind}s: "
                         f"{_known(kind)}. Write encoder+manipulator[+decoder].")
    return {**spec, "name": registry.name_of(cls)}


def _part(text: str, where: str) -> dict[str, Any]:
    match = _PART.match(text)
    if not match:
        raise ValueError(f"Cannot read {text!r} in candidate {where!r}; write name or name(key=value,...).")
    return {"name": match.group(1), **_options(match.group(2), where)}


def _as_spec(value: Any, kind: str, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _checked(_part(value, where), kind, where)
    if isinstance(value, Mapping):
        return _checked(dict(value), kind, where)
    raise TypeError(f"Candidate {where!r}: the {kind} must be a name or a dict with 'name'; got {type(value).__name__}.")


def _label(specs: Sequence[dict[str, Any] | None]) -> str:
    def one(spec: dict[str, Any]) -> str:
        options = ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in spec.items() if k != "name")
        return spec["name"] + (f"({options})" if options else "")

    return "+".join(one(s) for s in specs if s is not None)


def parse_candidate(spec: "str | Mapping[str, Any] | Candidate") -> Candidate:
    """A :class:`Candidate` from a spec string (see the module doc) or a dict; unknown names list the registered ones."""
    if isinstance(spec, Candidate):
        return spec
    if isinstance(spec, Mapping):
        where = str(spec.get("label", dict(spec)))
        encoder = _as_spec(spec.get("encoder", "identity-encoder"), "encoder", where)
        manipulator = _as_spec(spec.get("manipulator"), "manipulator", where)
        if manipulator is None:
            raise ValueError(f"Candidate {where!r} has no manipulator.")
        decoder = _as_spec(spec.get("decoder"), "decoder", where)
        label = str(spec.get("label") or _label([encoder, manipulator, decoder]))
        return Candidate(label, encoder, manipulator, decoder)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"A candidate is a spec such as 'pca+latent-arithmetic'; got {spec!r}.")
    parts = [p for p in _split_plus(spec)]
    if len(parts) > 3:
        raise ValueError(f"Candidate {spec!r} has {len(parts)} parts; write encoder+manipulator[+decoder].")
    if len(parts) == 1:
        encoder, manipulator, decoder = {"name": "identity-encoder"}, _part(parts[0], spec), None
    else:
        encoder, manipulator = _part(parts[0], spec), _part(parts[1], spec)
        decoder = _part(parts[2], spec) if len(parts) == 3 else None
    encoder = _checked(encoder, "encoder", spec)
    manipulator = _checked(manipulator, "manipulator", spec)
    decoder = None if decoder is None else _checked(decoder, "decoder", spec)
    label = spec.strip() if len(parts) > 1 else _label([manipulator])
    return Candidate(label, encoder, manipulator, decoder)


def _split_plus(text: str) -> list[str]:
    parts = split_top_level(text, "+")
    if any(not p for p in parts):
        raise ValueError(f"Candidate {text!r} has an empty part; write encoder+manipulator[+decoder].")
    return parts


def parse_candidates(specs: "Sequence[str | Mapping[str, Any] | Candidate] | str | None") -> list[Candidate]:
    """Candidates from specs (a comma-separated string is split; None: :data:`DEFAULT_CANDIDATES`)."""
    if specs is None:
        specs = DEFAULT_CANDIDATES
    if isinstance(specs, str):
        specs = split_specs(specs)
    candidates = [parse_candidate(s) for s in specs]
    if not candidates:
        raise ValueError(f"No candidates given; pass at least one, e.g. {list(DEFAULT_CANDIDATES)}.")
    labels = [c.label for c in candidates]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"Candidates {duplicates} are listed twice; give each once.")
    return candidates


def _article(word: str) -> str:
    """'an' before a vowel ('an encoder'), else 'a'."""
    return "an" if word[:1].lower() in "aeiou" else "a"
