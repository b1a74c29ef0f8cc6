"""The gene-token transformer: tokenization, pretraining, saving, vocabulary checks."""

import warnings

import pytest
import torch

from virtualcell import DataError
from virtualcell.representations.transformer import TransformerEncoder
from virtualcell.representations.transformer.tokenize import gene_medians, tokenize
from virtualcell.representations.transformer.vocabulary import check_coverage, gene_id_type
from virtualcell.testing.synthetic import tiny_expression

TINY = dict(TransformerEncoder.test_config)


def test_binned_tokens_take_the_most_expressed_genes_first():
    x = torch.tensor([[0.0, 3.0, 1.0, 0.0, 2.0], [0.5, 0.0, 0.0, 0.0, 0.0]])
    batch = tokenize(x, torch.arange(10, 15), mode="binned", max_tokens=3, n_bins=4)
    assert batch.input_ids.tolist() == [[2, 11, 14, 12], [2, 10, 0, 0]]       # CLS, strongest first, padding
    assert batch.value_ids.tolist() == [[0, 4, 3, 2], [0, 4, 0, 0]]          # per-cell quantile bins
    assert batch.gene_mask.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.position_ids.abs().sum() == 0                             # order carries nothing in binned mode
    torch.testing.assert_close(batch.values[0, 1:], torch.tensor([3.0, 2.0, 1.0]))
    ties = tokenize(torch.tensor([[1.0, 1.0, 0.0, 1.0, 2.0]]), torch.arange(5), mode="binned", max_tokens=5, n_bins=4)
    assert ties.value_ids.tolist() == [[0, 4, 3, 3, 3]]                     # equal values share one bin


def test_rank_tokens_divide_by_gene_medians_and_use_positions():
    x = torch.log1p(torch.tensor([[4.0, 2.0, 1.0]]))
    plain = tokenize(x, torch.tensor([5, 6, 7]), mode="rank", max_tokens=3, cls_id=None)
    scaled = tokenize(x, torch.tensor([5, 6, 7]), mode="rank", max_tokens=3, cls_id=None,
                      medians=torch.tensor([8.0, 1.0, 1.0]))
    assert plain.input_ids.tolist() == [[5, 6, 7]]
    assert scaled.input_ids.tolist() == [[6, 7, 5]]                         # a gene high everywhere drops back
    assert scaled.position_ids.tolist() == [[0, 1, 2]]


def test_gene_medians_ignore_zeros():
    x = torch.log1p(torch.tensor([[0.0, 2.0], [4.0, 0.0], [6.0, 0.0]]))
    torch.testing.assert_close(gene_medians(x), torch.tensor([4.0, 2.0]))


@pytest.mark.parametrize("mode", ["binned", "rank"])
def test_fit_learns_and_saves_vocabulary_with_weights(mode, tmp_path, one_torch_thread):
    x, genes = tiny_expression()
    encoder = TransformerEncoder(**{**TINY, "mode": mode, "max_epochs": 2}).fit(x, genes, seed=1, progress=False)
    epochs = encoder.history.epochs
    assert len(epochs) == 2 and all(torch.isfinite(torch.tensor(e["loss"])) for e in epochs)
    encoder.save(tmp_path / "t")
    loaded = TransformerEncoder.load(tmp_path / "t")
    assert loaded.input_features == genes and loaded.mode == mode
    torch.testing.assert_close(loaded.vocab_medians, encoder.vocab_medians)
    torch.testing.assert_close(loaded.encode(x), encoder.encode(x), atol=1e-5, rtol=0)
    assert not list(tmp_path.rglob("*.pkl")) and (tmp_path / "t" / "weights.safetensors").exists()


def test_representation_keeps_cell_types_apart(one_torch_thread):
    """Three types expressing different genes: a cell's nearest neighbours in z are mostly of its type (chance 1/3)."""
    x, genes = tiny_expression(n_cells=150, n_genes=40)
    x = x * (x > 1.5)                                     # sparse, as real cells are
    encoder = TransformerEncoder(hidden_size=32, num_layers=1, num_heads=2, max_tokens=40, max_epochs=3,
                                 batch_size=32, n_bins=11).fit(x, genes, seed=0, progress=False)
    z = encoder.encode(x)
    types = torch.arange(150) % 3
    distances = torch.cdist(z, z).fill_diagonal_(float("inf"))
    neighbours = distances.topk(10, largest=False).indices
    assert (types[neighbours] == types[:, None]).float().mean() > 0.7


def test_align_genes_counts_and_names_missing_genes(one_torch_thread):
    x, genes = tiny_expression()
    encoder = TransformerEncoder(**TINY).fit(x, genes, progress=False)
    data_genes = genes[:25] + ["NOT_IN_VOCAB_1", "NOT_IN_VOCAB_2"]
    with pytest.warns(UserWarning, match=r"2 of 27 genes .*NOT_IN_VOCAB_1"):
        report = encoder.align_genes(data_genes)
    assert report["n_covered"] == 25 and report["missing"] == ["NOT_IN_VOCAB_1", "NOT_IN_VOCAB_2"]
    assert encoder.input_features == genes[:25]
    assert encoder.encode(x[:, :25]).shape == (x.shape[0], encoder.n_latent)
    with pytest.raises(DataError, match=r"Only 2 of 12 genes .*below the required 50%"):
        encoder.align_genes(genes[:2] + [f"OTHER{i}" for i in range(10)])


def test_gene_id_type_mismatch_says_what_was_expected():
    vocabulary = [f"ENSG{i:011d}" for i in range(50)]
    assert gene_id_type(vocabulary) == "ensembl" and gene_id_type(["TP53", "CD4", "MS4A1"]) == "symbol"
    with pytest.raises(DataError, match=r"uses ensembl gene IDs .* look like symbol IDs"):
        check_coverage(["TP53", "CD4", "MS4A1", "CD14"], vocabulary, min_fraction=0.5)
    with pytest.raises(DataError, match=r"unknown ID type"):
        check_coverage(["1", "2", "3"], vocabulary, min_fraction=0.5)


def test_encode_rejects_bad_input(one_torch_thread):
    x, genes = tiny_expression()
    encoder = TransformerEncoder(**TINY).fit(x, genes, progress=False)
    with pytest.raises(ValueError, match="negative"):
        encoder.encode(x - 5)
    with pytest.raises(ValueError, match=r"expects x \[cells, 30\]"):
        encoder.encode(x[:, :10])


def test_pipeline_pairs_the_transformer_with_a_trained_mlp_decoder(one_torch_thread, tmp_path):
    from virtualcell.datasets import simulate_perturbation
    from virtualcell.instruments.decoders.mlp import MLPDecoder
    from virtualcell.pipelines import PerturbationPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = simulate_perturbation(n_cells_per_group=25, n_genes=40, seed=0)
    pipe = PerturbationPipeline(encoder={"name": "transformer", **TINY}, manipulator="latent-arithmetic")
    pipe.fit(adata, context_key="cell_type", progress=False)
    assert isinstance(pipe.decoder, MLPDecoder)
    control = adata[adata.obs["condition"] == "control"]
    predicted = pipe.predict(control, target="stimulated")
    assert predicted.shape == control.shape and (predicted.X >= 0).all()
    pipe.save(tmp_path / "pipe")
    again = PerturbationPipeline.load(tmp_path / "pipe").predict(control, target="stimulated")
    assert isinstance(again, type(predicted)) and (again.X == predicted.X).all()
