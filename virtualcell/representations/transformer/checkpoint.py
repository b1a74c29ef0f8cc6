"""Start a ``transformer`` encoder from a local BERT masked-LM checkpoint (Geneformer's layout).

```
<folder>/  config.json             transformers BertConfig (model_type "bert")
           model.safetensors       the weights (pickled pytorch_model.bin is refused)
           token_dictionary.json   gene -> token id (or pass token_table=...; JSON or TSV, never pickle)
```
Cells are rank-value encoded as Geneformer does: expression normalised to 10,000 counts (``expm1``
of the log-normalised input), divided by each gene's median non-zero expression in the model's
pretraining corpus (``gene_medians``, or a ``median`` column of the table), genes ordered from the
highest, ``max_tokens`` of them. Nothing in the folder can name code: the class is always
``BertForMaskedLM`` and ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ...config import to_json_value
from ...data.checks import DataError
from .model import GeneTokenModel
from .pretrained_checks import check_bert_weights, read_bert_config
from .vocabulary import SPECIAL_NAMES, read_gene_medians, read_token_table, refuse_pickle

__all__ = ["load_pretrained", "TABLE_NAMES"]

#: token tables looked for in the checkpoint folder when ``token_table`` is not given
TABLE_NAMES = ("token_dictionary.json", "gene_tokens.json", "token_table.json", "token_dictionary.tsv",
               "gene_tokens.tsv", "token_table.tsv")


def _find_table(folder: Path) -> Path:
    for name in TABLE_NAMES:
        if (folder / name).is_file():
            return folder / name
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".pkl", ".pickle"))
    if pickles:
        refuse_pickle(folder / pickles[0], "gene-token table")
    raise FileNotFoundError(f"{folder} has no gene-token table ({', '.join(TABLE_NAMES)}); pass token_table=<path to a "
                            "JSON {gene: token id} or a TSV with columns gene, token_id>.")


def _special(tokens: dict[str, int]) -> dict[str, int | None]:
    found = {role: next((tokens[n] for n in names if n in tokens), None) for role, names in SPECIAL_NAMES.items()}
    for role in ("pad", "mask"):
        if found[role] is None:
            raise DataError(f"The gene-token table has no {role} token ({' or '.join(SPECIAL_NAMES[role])}); a BERT "
                            "masked-LM vocabulary needs both <pad> and <mask>.")
    return found


def load_pretrained(cls, path: str | Path, *, token_table: str | Path | None = None,
                    gene_medians: str | Path | None = None, pooling: str = "mean", max_tokens: int | None = None,
                    min_coverage: float = 0.5, log_input: bool = True):
    """Build a fitted ``cls`` (a ``TransformerEncoder``) from the checkpoint folder ``path``.

    Args:
        token_table: gene -> token id (JSON / TSV); default: a table in the folder (``TABLE_NAMES``).
        gene_medians: gene -> median non-zero expression (JSON / TSV); default: the table's ``median``
            column, else 1 (a plain expression rank, with a warning).
        pooling: ``"mean"`` over gene tokens (Geneformer's cell embedding) or ``"cls"`` (needs ``<cls>``).
        max_tokens: genes per cell (default: as many as the position embeddings allow).
        log_input: cells arrive log1p-normalised (ranked after ``expm1``); False for normalised counts.
    """
    from transformers import BertForMaskedLM

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; from_pretrained takes a local folder with config.json and "
                                "model.safetensors (the Hugging Face layout).")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json; found {sorted(p.name for p in folder.iterdir())}.")
    if not (folder / "model.safetensors").is_file():
        pickled = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        raise FileNotFoundError(
            f"{folder} has no model.safetensors{f' (only pickled weights {pickled})' if pickled else ''}; virtualcell loads "
            "safetensors only. Convert once in a Python session you trust: "
            "BertForMaskedLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True).")
    config = read_bert_config(folder)          # sizes checked before anything is built
    check_bert_weights(folder, config)          # a real safetensors file whose shapes match the config
    table = Path(token_table) if token_table is not None else _find_table(folder)
    tokens, table_medians = read_token_table(table)
    medians = read_gene_medians(gene_medians) if gene_medians is not None else table_medians
    special = _special(tokens)
    too_big = {g: t for g, t in tokens.items() if t >= config.get("vocab_size", 0)}
    if too_big:
        raise DataError(f"{table} has token ids beyond the model's vocab_size {config.get('vocab_size')}, e.g. "
                        f"{dict(list(too_big.items())[:3])}; the table does not belong to this checkpoint.")
    special_names = {n for names in SPECIAL_NAMES.values() for n in names}
    genes = [g for g in tokens if g not in special_names]
    if not medians:
        warnings.warn(f"No gene medians for {folder.name}: cells are ranked by normalised expression alone, not "
                      "Geneformer's median-scaled rank. Pass gene_medians=<JSON/TSV> from the model's authors.",
                      stacklevel=3)
    if pooling == "cls" and special["cls"] is None:
        raise DataError(f"pooling='cls' needs a <cls> token, which {table.name} does not have; use pooling='mean'.")

    bert = BertForMaskedLM.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                           attn_implementation="sdpa")
    limit = int(bert.config.max_position_embeddings) - (1 if special["cls"] is not None else 0)
    bert_config = to_json_value({k: v for k, v in bert.config.to_dict().items() if _jsonable(v)}, where="bert config")
    encoder = cls(mode="rank", max_tokens=min(int(max_tokens or limit), limit), hidden_size=bert.config.hidden_size,
                  num_layers=bert.config.num_hidden_layers, num_heads=bert.config.num_attention_heads,
                  pooling=pooling, dropout=float(bert.config.hidden_dropout_prob), min_coverage=min_coverage)
    encoder.model = GeneTokenModel(bert_config, n_bins=0, pooling=pooling, bert=bert).eval()
    encoder.bert_config = bert_config
    encoder.special = special
    encoder.vocabulary = genes
    encoder.features = list(genes)
    encoder.log_input = bool(log_input)
    encoder.vocab_token_ids = torch.as_tensor([tokens[g] for g in genes], dtype=torch.long)
    encoder.vocab_medians = torch.as_tensor([float(medians.get(g, 1.0)) for g in genes], dtype=torch.float32).clamp_min(1e-6)
    encoder.training_summary = {"pretrained_from": folder.name, "token_table": table.name,
                                "has_medians": bool(medians)}
    encoder.is_fitted = True
    return encoder.eval()


def _jsonable(value: Any) -> bool:
    try:
        to_json_value(value)
        return True
    except Exception:  # noqa: BLE001 - a config entry that is not JSON is left out (e.g. a dtype object)
        return False
