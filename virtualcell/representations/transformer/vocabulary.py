"""Gene-token tables (JSON / TSV, never pickle), gene-ID types, and how much of the data a vocabulary covers.

A token table maps gene IDs to integer token ids, as Geneformer's ``token_dictionary`` does
(``{"<pad>": 0, "<mask>": 1, "ENSG00000000003": 2, ...}``). Accepted forms:

- JSON: ``{"gene": id, ...}``, or ``{"gene": {"token_id": id, "median": m}, ...}``;
- TSV with a header: columns ``gene`` and ``token_id`` (and optionally ``median``).

Pickled tables (Geneformer ships ``.pkl``) are refused before a byte is unpickled: loading a pickle
runs whatever code it names.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path

from ...data.checks import DataError

__all__ = ["read_token_table", "read_gene_medians", "gene_id_type", "check_coverage", "PickleRefusedError",
           "SPECIAL_NAMES", "refuse_pickle"]

#: names of special tokens in Geneformer-style tables, by role
SPECIAL_NAMES = {"pad": ("<pad>", "[PAD]"), "mask": ("<mask>", "[MASK]"), "cls": ("<cls>", "[CLS]"),
                 "eos": ("<eos>", "[SEP]")}
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9\-\.\_@]*$")
_EXAMPLES = {"ensembl": "ENSG00000141510", "symbol": "TP53"}
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pk", ".p")


class PickleRefusedError(ValueError):
    """A file given as a table is a pickle; virtualcell never unpickles."""


def refuse_pickle(path: Path, what: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(2)
    pickled_magic = len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5   # pickle protocol 2-5 header
    if path.suffix.lower() in _PICKLE_SUFFIXES or pickled_magic:
        raise PickleRefusedError(
            f"{path} is a Python pickle; virtualcell does not load pickles, because unpickling runs whatever code "
            f"the file names. Convert the {what} once, in a Python session you trust, to JSON: "
            f"`import pickle, json; json.dump(pickle.load(open({str(path)!r}, 'rb')), open('{path.stem}.json', 'w'))` "
            "and pass the .json file.")


def _read_rows(path: Path, what: str) -> list[dict[str, str]] | dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    refuse_pickle(path, what)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} is not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise DataError(f"{path} must hold a JSON object mapping gene -> token id; got a {type(data).__name__}.")
        return data
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    if not rows:
        raise DataError(f"{path} has no rows; a TSV {what} needs a header line and one line per gene.")
    return rows


def read_token_table(path: str | Path) -> tuple[dict[str, int], dict[str, float]]:
    """``gene -> token id`` and (when the table has them) ``gene -> median`` from a JSON or TSV file."""
    data = _read_rows(Path(path), "gene-token table")
    tokens, medians = {}, {}
    if isinstance(data, dict):
        for gene, value in data.items():
            if isinstance(value, dict):
                tokens[str(gene)] = value.get("token_id")
                if value.get("median") is not None:
                    medians[str(gene)] = float(value["median"])
            else:
                tokens[str(gene)] = value
    else:
        header = set(data[0])
        if not {"gene", "token_id"} <= header:
            raise DataError(f"{path} needs TSV columns 'gene' and 'token_id' (optionally 'median'); found {sorted(header)}.")
        for row in data:
            tokens[row["gene"]] = row["token_id"]
            if row.get("median") not in (None, ""):
                medians[row["gene"]] = float(row["median"])
    bad = [g for g, t in tokens.items() if not ((isinstance(t, int) and not isinstance(t, bool) and t >= 0)
                                                or (isinstance(t, str) and t.isdigit()))]
    if bad:
        raise DataError(f"{path}: token ids must be non-negative integers; genes {bad[:10]} have {[tokens[g] for g in bad[:3]]}.")
    tokens = {g: int(t) for g, t in tokens.items()}
    if len(set(tokens.values())) != len(tokens):
        raise DataError(f"{path}: several genes share one token id; each gene needs its own id.")
    return tokens, medians


def read_gene_medians(path: str | Path) -> dict[str, float]:
    """``gene -> median`` from JSON ``{"gene": m}`` or a TSV with columns ``gene`` and ``median``."""
    data = _read_rows(Path(path), "gene-median table")
    if isinstance(data, dict):
        return {str(g): float(v) for g, v in data.items()}
    if not {"gene", "median"} <= set(data[0]):
        raise DataError(f"{path} needs TSV columns 'gene' and 'median'; found {sorted(data[0])}.")
    return {row["gene"]: float(row["median"]) for row in data}


def gene_id_type(names: Sequence[str]) -> str:
    """``"ensembl"`` (ENSG00000141510), ``"symbol"`` (TP53) or ``"unknown"``: what most of ``names`` look like."""
    names = [str(n) for n in names if not str(n).startswith(("<", "["))]
    if not names:
        return "unknown"
    sample = names[:: max(1, len(names) // 2000)]
    ensembl = sum(bool(_ENSEMBL.match(n)) for n in sample) / len(sample)
    if ensembl > 0.5:
        return "ensembl"
    symbol = sum(bool(_SYMBOL.match(n)) and not _ENSEMBL.match(n) for n in sample) / len(sample)
    return "symbol" if symbol > 0.5 else "unknown"


def check_coverage(data_genes: Sequence[str], vocabulary: Sequence[str], *, min_fraction: float) -> dict:
    """How many of ``data_genes`` the ``vocabulary`` has; refuse below ``min_fraction``.

    Returns ``{"n_genes", "n_covered", "fraction", "missing" (first 20 names), "n_missing", "id_type"}``.
    Raises ``DataError`` when the gene-ID types differ (symbols vs Ensembl) or too few genes are covered.
    """
    vocab = set(vocabulary)
    data_genes = [str(g) for g in data_genes]
    covered = [g for g in data_genes if g in vocab]
    missing = [g for g in data_genes if g not in vocab]
    fraction = len(covered) / max(len(data_genes), 1)
    expected, found = gene_id_type(list(vocabulary)), gene_id_type(data_genes)
    if fraction < min_fraction and expected != "unknown" and found != expected:
        raise DataError(
            f"The vocabulary uses {expected} gene IDs (e.g. {_EXAMPLES.get(expected, next(iter(vocabulary)))}), but the "
            f"data's gene names look like {'an unknown ID type' if found == 'unknown' else found + ' IDs'} "
            f"(e.g. {data_genes[:3]}); only {len(covered)} of {len(data_genes)} match. Use {expected} IDs as var_names "
            f"(e.g. adata.var_names = adata.var['gene_ids'] when that column holds them).")
    report = {"n_genes": len(data_genes), "n_covered": len(covered), "fraction": round(fraction, 4),
              "n_missing": len(missing), "missing": missing[:20], "id_type": expected}
    if fraction < min_fraction:
        raise DataError(
            f"Only {len(covered)} of {len(data_genes)} genes ({fraction:.1%}) are in the model's vocabulary, below the "
            f"required {min_fraction:.0%}; {len(missing)} are missing, e.g. {missing[:20]}. Use data measured on the "
            "model's genes, or lower min_coverage if you accept encoding cells from fewer genes.")
    return report
