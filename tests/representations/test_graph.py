"""The graph encoder: exact k-hop blocks, neighbours change the output, save/load with the graph rebuilt."""

import pytest
import torch

from virtualcell.data.simulate_spatial import simulate_spatial
from virtualcell.data.spatial import graph_of
from virtualcell.representations.graph import GraphEncoder
from virtualcell.representations.graph_sampling import csr_from_edge_index, khop_block, self_loop_csr


@pytest.fixture(scope="module")
def slide():
    adata = simulate_spatial(150, 12, n_domains=3, seed=0)
    return torch.from_numpy(adata.X), list(adata.var_names), graph_of(adata, n_neighbors=5).edge_index()


def _fit(slide, **kwargs):
    x, genes, edge_index = slide
    config = {"n_latent": 4, "hidden": 8, "max_steps": 5, "batch_size": 32, **kwargs}
    return GraphEncoder(**config).fit(x, genes, edge_index=edge_index, seed=1, progress=False)


def test_khop_block_is_the_k_hop_neighbourhood(slide):
    from torch_geometric.utils import k_hop_subgraph

    x, _, edge_index = slide
    graph = csr_from_edge_index(edge_index, x.shape[0])
    seeds = torch.tensor([3, 40, 41])
    block = khop_block(graph, seeds, 2, torch.full((x.shape[0],), -1))
    subset, _, _, _ = k_hop_subgraph(seeds, 2, edge_index, num_nodes=x.shape[0])
    assert set(block.nodes.tolist()) == set(subset.tolist())
    assert block.nodes[:3].tolist() == [3, 40, 41]
    # every in-edge of the seeds and of their 1-hop neighbours is in the block
    src, dst = block.nodes[block.edge_index]
    inner = set(khop_block(graph, seeds, 1, torch.full((x.shape[0],), -1)).nodes.tolist())
    expected = {(int(s), int(d)) for s, d in edge_index.T.tolist() if d in inner}
    assert set(zip(src.tolist(), dst.tolist())) == expected


@pytest.mark.parametrize("layer", ["sage", "gcn", "gat"])
def test_blocks_equal_the_whole_graph(slide, layer, tmp_path):
    x, _, edge_index = slide
    encoder = _fit(slide, layer=layer, inference_batch_size=7)      # layer-wise inference, 22 blocks of 7 cells
    blocks = encoder.encode(x, edge_index)
    graph = csr_from_edge_index(edge_index, x.shape[0])
    everything = khop_block(graph, torch.arange(x.shape[0]), 2, torch.full((x.shape[0],), -1))
    with torch.no_grad():   # the training path: all layers at once on one block holding the whole slide
        whole = encoder._run(encoder.net.encoder, encoder._standardise(x), graph, everything)
    torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=1e-5)
    if layer != "gcn":     # PyG's own forward on the whole graph (GCN here is normalised by us)
        torch.testing.assert_close(blocks, encoder.net.encoder(encoder._standardise(x), edge_index), atol=1e-5, rtol=1e-5)
    encoder.save(tmp_path / "enc")
    loaded = GraphEncoder.load(tmp_path / "enc")
    torch.testing.assert_close(loaded.encode(x, edge_index), blocks, atol=1e-6, rtol=0)


def test_neighbours_change_the_representation(slide):
    x, _, edge_index = slide
    encoder = _fit(slide)
    with_graph, alone = encoder.encode(x, edge_index), encoder.encode(x)
    assert not torch.allclose(with_graph, alone, atol=1e-3)
    n = x.shape[0]
    loops = torch.arange(n).repeat(2, 1)
    torch.testing.assert_close(alone, encoder.encode(x, loops))   # no graph = the self-loop graph
    assert self_loop_csr(n).indices.tolist() == list(range(n))


@pytest.mark.parametrize("objective", ["reconstruct", "dgi"])
def test_objectives_train_and_are_seeded(slide, objective):
    x, _, edge_index = slide
    a, b = (_fit(slide, objective=objective, max_steps=40, lr=1e-2) for _ in range(2))
    torch.testing.assert_close(a.encode(x, edge_index), b.encode(x, edge_index), atol=0, rtol=0)
    assert a.training_summary["last_loss"] < a.training_summary["first_loss"]


def test_bad_arguments_are_explained(slide):
    x, genes, edge_index = slide
    with pytest.raises(ValueError, match="layer must be one of"):
        GraphEncoder(layer="transformer")
    with pytest.raises(ValueError, match="objective must be one of"):
        GraphEncoder(objective="contrastive")
    with pytest.raises(ValueError, match="outside"):
        GraphEncoder(max_steps=1).fit(x, genes, edge_index=edge_index + 1000, progress=False)
    with pytest.raises(ValueError, match="fitted on 12 genes"):
        _fit(slide).encode(x[:, :5], edge_index)


def test_neighbor_loader_needs_missing_extensions():
    """Why the encoder samples its own blocks: PyG's NeighborLoader needs pyg-lib or torch-sparse."""
    import torch_geometric.typing as pyg_typing

    if pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE:
        pytest.skip("pyg-lib or torch-sparse is installed here; NeighborLoader would work")
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    data = Data(x=torch.zeros(10, 2), edge_index=torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ImportError, match="pyg-lib"), pytest.warns(UserWarning):
        next(iter(NeighborLoader(data, num_neighbors=[2], batch_size=2)))
