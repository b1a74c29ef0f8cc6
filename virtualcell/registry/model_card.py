"""Model cards: a README.md with YAML front matter, biology-aware fields (after scvi-hub's metadata)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_model_card", "render_card_sections", "parse_front_matter", "CARD_FIELDS"]

#: fields a publisher may fill in (``card=`` of ``save``); anything else is kept under ``extra``
CARD_FIELDS = (
    "description", "organism", "tissues", "cell_types", "perturbations", "training_data",
    "training_data_sha256", "preprocessing", "metrics", "license", "authors", "references",
    "training_split", "selection",
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def render_card_sections(card: Mapping[str, Any]) -> str:
    """Markdown sections for the card fields that describe how the model was trained: ``training_split``
    (the data, ``--exclude`` rules, held-out cells) and ``selection`` (the table ``select`` ranked, one
    mapping per candidate). Empty when neither is present."""
    lines: list[str] = []
    split = card.get("training_split")
    if isinstance(split, Mapping):
        lines += ["## Training split", ""]
        if card.get("training_data"):
            lines.append(f"Trained on `{card['training_data']}`"
                         + (f" ({split['n_cells_fitted']} of {split['n_cells_in_data']} cells)."
                            if "n_cells_fitted" in split and "n_cells_in_data" in split else "."))
        held_out = split.get("held_out") or []
        if held_out:
            lines.append("Held out of training (never seen in fit): "
                         + "; ".join(", ".join(f"{k}={v}" for k, v in rule.items()) for rule in held_out) + ".")
        else:
            lines.append("No cells were held out of training.")
        lines += [f"Settings: {json.dumps({k: v for k, v in split.items() if k not in ('held_out',)}, sort_keys=True)}", ""]
    selection = card.get("selection")
    if isinstance(selection, Sequence) and not isinstance(selection, str) and selection:
        rows = [row for row in selection if isinstance(row, Mapping)]
        if rows:
            lines += ["## Selection", "", "The candidates `select` ranked by inner cross-validation on the training cells:",
                      ""] + _table(rows) + [""]
    return "\n".join(lines)


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars and flow collections are valid YAML


def render_model_card(config: Mapping[str, Any], features: Sequence[str], card: Mapping[str, Any]) -> str:
    """Render the model card for an artifact's ``config`` and user-supplied ``card`` fields."""
    front = {
        "library_name": "virtualcell",
        "component": config["component"],
        "kind": config["kind"],
        "package": config["package"],
        "package_version": config["package_version"],
        "n_features": len(features),
        "features_sha256": hashlib.sha256("\n".join(features).encode()).hexdigest(),
    }
    for key in CARD_FIELDS:
        if key in card:
            front[key] = card[key]
    extra = {k: v for k, v in card.items() if k not in CARD_FIELDS}
    if extra:
        front["extra"] = extra
    lines = ["---"] + [f"{k}: {_yaml_scalar(v)}" for k, v in front.items()] + ["---", ""]
    lines += [
        f"# {config['component']} ({config['kind']})",
        "",
        card.get("description", f"A `{config['class']}` saved by virtualcell {config['virtualcell_version']}."),
        "",
        "## Use",
        "",
        "```python",
        "import virtualcell as vc",
        "component = vc.load_component('path/to/this/folder')",
        "```",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config["init"], indent=2, sort_keys=True),
        "```",
        "",
        f"Features ({len(features)}): " + ", ".join(features[:10]) + (" ..." if len(features) > 10 else ""),
        "",
    ]
    if isinstance(config.get("training"), Mapping):   # trained components: history.json (registry/artifact.py)
        lines += ["## Training", "", str(config["training"].get("summary", "")), ""]
    sections = render_card_sections(card)
    if sections:
        lines += [sections]
    return "\n".join(lines)


def parse_front_matter(text: str) -> dict[str, Any]:
    """Read back the front matter written by :func:`render_model_card` (one JSON value per key)."""
    if not text.startswith("---\n"):
        return {}
    body = text[4:].split("\n---", 1)[0]
    out = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
    return out
