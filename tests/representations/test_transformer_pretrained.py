"""Starting the transformer from a local BERT masked-LM folder (Geneformer's layout), saved by the test itself."""

import json
import pickle

import pytest
import torch

from virtualcell import DataError
from virtualcell.representations.transformer import TransformerEncoder
from virtualcell.representations.transformer.vocabulary import PickleRefusedError
from virtualcell.testing.pretrained import write_tiny_bert

GENES = [f"ENSG{i:011d}" for i in range(1, 21)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny BertForMaskedLM saved as config.json + model.safetensors, with a JSON token dictionary and medians."""
    return write_tiny_bert(tmp_path_factory.mktemp("geneformer-tiny"), GENES, hidden_size=16, layers=2, medians=True)


def _cells(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    normalised = torch.rand(n, len(GENES), generator=g) * 8                   # distinct values: no rank ties
    return torch.log1p(normalised * (torch.rand(n, len(GENES), generator=g) < 0.7))


def test_rank_value_encoding_matches_the_bert_run_by_hand(checkpoint):
    from transformers import BertForMaskedLM

    encoder = TransformerEncoder.from_pretrained(checkpoint, gene_medians=checkpoint / "gene_medians.json")
    assert encoder.mode == "rank" and encoder.input_features == GENES and encoder.n_latent == 16
    assert encoder.config["max_tokens"] == 12                                  # no <cls>: all positions are genes
    x = _cells()
    z = encoder.encode(x)
    bert = BertForMaskedLM.from_pretrained(checkpoint).eval()
    medians = torch.tensor([1.0 + (i % 4) for i in range(len(GENES))])
    for cell in range(x.shape[0]):
        score = torch.expm1(x[cell]) / medians
        order = [int(i) for i in torch.argsort(score, descending=True, stable=True) if score[i] > 0][:12]
        ids = torch.tensor([[i + 2 for i in order]])
        with torch.no_grad():
            hidden = bert.bert(input_ids=ids).last_hidden_state[0]
        torch.testing.assert_close(z[cell], hidden.mean(0), atol=1e-4, rtol=1e-4)


def test_pretrained_encoder_saves_in_our_artifact_format(checkpoint, tmp_path):
    encoder = TransformerEncoder.from_pretrained(checkpoint, gene_medians=checkpoint / "gene_medians.json")
    with pytest.warns(UserWarning, match=r"2 of 17 genes .*NOT_A_GENE"):
        encoder.align_genes(GENES[:15] + ["ENSG99999999999", "NOT_A_GENE"])
    encoder.save(tmp_path / "enc")
    loaded = TransformerEncoder.load(tmp_path / "enc")
    assert loaded.input_features == GENES[:15] and loaded.vocabulary == GENES
    x = _cells()[:, :15]
    torch.testing.assert_close(loaded.encode(x), encoder.encode(x), atol=1e-5, rtol=0)
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["state"]["special_tokens"]["mask"] == 1 and config["state"]["bert_config"]["model_type"] == "bert"


def test_symbols_against_an_ensembl_vocabulary_are_refused(checkpoint):
    encoder = TransformerEncoder.from_pretrained(checkpoint, gene_medians=checkpoint / "gene_medians.json")
    with pytest.raises(DataError, match=r"uses ensembl gene IDs .*symbol"):
        encoder.align_genes(["CD4", "CD8A", "MS4A1", "LYZ"])


def test_pickled_token_tables_are_refused_unread(checkpoint, tmp_path):
    payload = pickle.dumps({"<pad>": 0, "<mask>": 1})
    for name in ("token_dictionary.pkl", "disguised.json"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(PickleRefusedError, match="does not load pickles"):
            TransformerEncoder.from_pretrained(checkpoint, token_table=tmp_path / name)


def test_missing_safetensors_is_refused(checkpoint, tmp_path):
    folder = tmp_path / "bin-only"
    folder.mkdir()
    (folder / "config.json").write_text((checkpoint / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors \(only pickled weights"):
        TransformerEncoder.from_pretrained(folder)


def test_tsv_token_table_with_medians(checkpoint, tmp_path):
    lines = ["gene\ttoken_id\tmedian", "<pad>\t0\t", "<mask>\t1\t"]
    lines += [f"{g}\t{i + 2}\t{1.0 + (i % 4)}" for i, g in enumerate(GENES)]
    (tmp_path / "tokens.tsv").write_text("\n".join(lines) + "\n")
    from_tsv = TransformerEncoder.from_pretrained(checkpoint, token_table=tmp_path / "tokens.tsv")
    from_json = TransformerEncoder.from_pretrained(checkpoint, gene_medians=checkpoint / "gene_medians.json")
    torch.testing.assert_close(from_tsv.encode(_cells()), from_json.encode(_cells()))
