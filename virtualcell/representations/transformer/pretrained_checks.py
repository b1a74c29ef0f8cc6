"""Checks of a BERT checkpoint folder made before ``transformers`` builds anything from it.

A folder from elsewhere may be hostile or broken: ``config.json`` that is not a JSON object, sizes
that would allocate a model of astronomical size (``num_hidden_layers: 1000000``), a file named
``model.safetensors`` that is not one, or only pickled weights. Each is refused here with what is
wrong and what to do, reading no more than the config and the safetensors header.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...data.checks import DataError

__all__ = ["HF_WEIGHT_FILES", "MAX_PARAMETERS", "is_pretrained_folder", "read_bert_config", "check_bert_weights"]

#: weight files of the Hugging Face layout (only the first is ever loaded)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
#: the most parameters a config may describe (Geneformer's largest has ~0.3 billion)
MAX_PARAMETERS = 5_000_000_000
#: config sizes -> BertConfig defaults used when the config leaves them out
SIZES = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2}


def is_pretrained_folder(folder: Path) -> bool:
    """Whether ``folder`` is laid out as a Hugging Face checkpoint (any of ``HF_WEIGHT_FILES``)."""
    return any((folder / name).is_file() for name in HF_WEIGHT_FILES)


def read_bert_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a BERT checkpoint: a JSON object whose sizes are positive integers of a
    model that fits in memory (at most ``MAX_PARAMETERS`` parameters)."""
    from ...registry.errors import ArtifactError
    from ...registry.limits import read_json

    where = folder / "config.json"
    try:
        config = read_json(where)
    except ArtifactError as error:
        raise DataError(f"{where} cannot be read: {error}") from None
    if not isinstance(config, dict):
        raise DataError(f"{where} holds a JSON {type(config).__name__}, not an object; a Hugging Face config.json is "
                        "an object such as {\"model_type\": \"bert\", \"hidden_size\": 256, ...}. Use the model's own "
                        "config.json.")
    if config.get("model_type") != "bert":
        raise DataError(f"{where} describes a {config.get('model_type')!r} model; from_pretrained reads "
                        "BERT masked-LM checkpoints (model_type 'bert', e.g. Geneformer).")
    sizes = {name: config.get(name, default) for name, default in SIZES.items()}
    bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise DataError(f"{where}: {bad} must be positive integers; the config is damaged or not this model's.")
    if sizes["hidden_size"] % sizes["num_attention_heads"]:
        raise DataError(f"{where}: hidden_size {sizes['hidden_size']} is not a multiple of num_attention_heads "
                        f"{sizes['num_attention_heads']}; the config is damaged.")
    h, inner = sizes["hidden_size"], sizes["intermediate_size"]
    per_layer = 4 * h * h + 2 * h * inner
    total = (sizes["vocab_size"] + sizes["max_position_embeddings"] + sizes["type_vocab_size"]) * h
    total += sizes["num_hidden_layers"] * per_layer
    if total > MAX_PARAMETERS:
        raise DataError(f"{where} describes a model of about {total:.3g} parameters ({sizes}), more than the "
                        f"{MAX_PARAMETERS:.0e} virtualcell builds; the config is damaged or hostile. Use the model's "
                        "own config.json.")
    return config


def check_bert_weights(folder: Path, config: dict[str, Any]) -> None:
    """``model.safetensors`` is a safetensors file whose tensors match the config's sizes."""
    from ...registry.errors import ArtifactError
    from ...registry.limits import check_safetensors

    weights = folder / "model.safetensors"
    try:
        header = check_safetensors(weights)
    except ArtifactError as error:
        raise DataError(f"{weights} is not a valid safetensors file ({error}). Re-download the checkpoint, or "
                        "convert its weights once in a Python session you trust: BertForMaskedLM.from_pretrained("
                        "folder).save_pretrained(folder, safe_serialization=True).") from None
    shapes = {name: tuple(info.get("shape", ())) for name, info in header.items()
              if name != "__metadata__" and isinstance(info, dict)}
    layers = {int(m.group(1)) for name in shapes if (m := re.search(r"encoder\.layer\.(\d+)\.", name))}
    sizes = {name: config.get(name, default) for name, default in SIZES.items()}
    found = {"num_hidden_layers": len(layers)}
    for name, shape in shapes.items():
        if name.endswith("embeddings.word_embeddings.weight") and len(shape) == 2:
            found["vocab_size"], found["hidden_size"] = shape
        elif name.endswith("embeddings.position_embeddings.weight") and len(shape) == 2:
            found["max_position_embeddings"] = shape[0]
    wrong = {k: (sizes[k], v) for k, v in found.items() if sizes[k] != v}
    if wrong:
        described = ", ".join(f"{k} {a} (the weights have {b})" for k, (a, b) in wrong.items())
        raise DataError(f"{folder / 'config.json'} does not match {weights.name}: {described}. The config belongs to "
                        "another model or was altered; use the config.json saved with these weights.")
