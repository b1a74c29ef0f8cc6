"""``fit``'s training split: ``--exclude`` rules checked against the data, the ``--context-key`` warning,
and the split recorded in the model card.

A rule is ``key=value[&key=value]``: one ``=`` per part, every key an obs column, every value present in
its column, and the whole rule matching at least one cell (a rule that matches nothing would silently fit
on every cell, leaking the held-out response into training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import MissingColumnError

__all__ = ["parse_rule", "checked_mask", "apply_excludes", "context_key_warning", "training_card"]

_SHOWN = 20


def parse_rule(rule: str, option: str = "--exclude") -> list[tuple[str, str]]:
    """``"cell_type=CD4T&condition=stimulated"`` -> ``[("cell_type", "CD4T"), ("condition", "stimulated")]``."""
    parts = []
    for part in rule.split("&"):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value or value.startswith("=") or "=" in value:
            raise ValueError(f"{option} {rule!r}: {part!r} is not key=value (one '=', e.g. "
                             f"{option} 'cell_type=CD4T&condition=stimulated').")
        parts.append((key, value))
    return parts


def _values(obs, key: str) -> list[str]:
    return sorted(map(str, obs[key].astype(str).unique()))


def checked_mask(obs, rule: str, option: str = "--exclude") -> np.ndarray:
    """Boolean mask [n_obs] of the cells matching ``rule``; a column, value or rule that matches nothing is an error."""
    mask = np.ones(len(obs), dtype=bool)
    for key, value in parse_rule(rule, option):
        if key not in obs:
            raise MissingColumnError(f"{option} {rule!r}: obs column {key!r} not found; available: {list(obs.columns)}.")
        values = _values(obs, key)
        if value not in values:
            shown = values[:_SHOWN] + (["..."] if len(values) > _SHOWN else [])
            raise ValueError(f"{option} {rule!r}: no cell has {key}={value!r}; the values of {key!r} are {shown}.")
        mask &= (obs[key].astype(str) == value).to_numpy()
    if not mask.any():
        raise ValueError(f"{option} {rule!r}: each value exists, but no cell has them all together; check the rule "
                         "(parts joined by '&' must all hold for a cell).")
    return mask


def apply_excludes(adata, rules: Sequence[str], *, condition_key: str = "condition", option: str = "--exclude"):
    """``adata`` without the cells of every rule (a copy when any is dropped; a ``DiskCells`` selects them
    without reading); an empty result is an error."""
    if not rules:
        return adata
    drop = np.zeros(adata.n_obs, dtype=bool)
    for rule in rules:
        drop |= checked_mask(adata.obs, rule, option)
    if drop.all():
        raise ValueError(f"No cells left to fit on: {option} {list(rules)} removed all {adata.n_obs} of them.")
    kept = adata[~drop]
    return kept.copy() if hasattr(kept, "copy") else kept


def context_key_warning(obs, rules: Sequence[str], *, context_key: str | None, condition_key: str) -> str | None:
    """A warning when ``--exclude`` holds cells out by a grouping column (e.g. cell_type) that ``--context-key``
    does not name: the model then cannot tell the held-out group from the others."""
    if context_key is not None:
        return None
    for rule in rules:
        for key, _ in parse_rule(rule):
            if key == condition_key or key not in obs:
                continue
            n = obs[key].nunique()
            if 1 < n <= max(2, len(obs) // 2):
                return (f"--exclude holds cells out by {key!r}, but no --context-key was given, so the model cannot "
                        f"tell the held-out {key} from the others and predicts it with the average response; pass "
                        f"--context-key {key} (on Kang's CD4T split: R2 0.89 with it, 0.83 without).")
    return None


def training_card(data: Path, rules: Sequence[str], *, n_cells: int, n_fitted: int, condition_key: str,
                  control: str, context_key: str | None, preprocess: str | None) -> dict[str, Any]:
    """The model-card fields of a ``fit`` run: the training data and split (``--exclude`` and what it held out)."""
    held_out = [dict(parse_rule(rule)) for rule in rules]
    return {"training_data": Path(data).name,
            "training_split": {"exclude": list(rules), "held_out": held_out, "n_cells_in_data": int(n_cells),
                               "n_cells_fitted": int(n_fitted), "condition_key": condition_key, "control": control,
                               "context_key": context_key},
            "preprocessing": preprocess or "none"}
