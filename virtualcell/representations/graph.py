"""A spatial-niche graph encoder: a GNN (PyG) over the cells' neighbour graph, trained self-supervised.

``encode(x [n, genes], edge_index [2, E]) -> z [n, n_latent]``: each cell's representation mixes
its own expression with its neighbours' up to ``n_layers`` hops away, so it describes the cell in
its niche. The graph is not part of the model: it is rebuilt from the data's coordinates at apply
time (``virtualcell.data.spatial``) and passed in; without one, each cell is its own only
neighbour (a self-loop graph), and the encoder sees cells one at a time.

Training and inference run on exact k-hop blocks around batches of seed cells
(:mod:`.graph_sampling`), so memory depends on the batch size, not on the slide's size.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..component import Encoder
from ..execution import make_generator, progress_bar, seeded
from .graph_sampling import CSRGraph, Block, csr_from_edge_index, khop_block, self_loop_csr

__all__ = ["GraphEncoder", "GNN_LAYERS", "OBJECTIVES"]

GNN_LAYERS = ("sage", "gcn", "gat")
OBJECTIVES = ("dgi", "reconstruct")


class _NicheGNN(nn.Module):
    """A PyG ``BasicGNN`` (resolved by name) followed by a PReLU: ``(x, edge_index[, edge_weight]) -> z``."""

    def __init__(self, layer: str, n_input: int, hidden: int, n_layers: int, n_latent: int) -> None:
        super().__init__()
        from torch_geometric.nn.models import GAT, GCN, GraphSAGE
        from torch_geometric.nn.models.basic_gnn import BasicGNN
        from torch_geometric.resolver import resolver

        extra = {"normalize": False} if layer == "gcn" else {}  # GCN is normalised with whole-graph degrees
        self.gnn = resolver([GraphSAGE, GCN, GAT], {"sage": GraphSAGE}, layer, BasicGNN, "",
                            in_channels=n_input, hidden_channels=hidden, num_layers=n_layers,
                            out_channels=n_latent, **extra)
        self.act = nn.PReLU(n_latent)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {} if edge_weight is None else {"edge_weight": edge_weight}
        return self.act(self.gnn(x, edge_index, **kwargs))


class _Reconstruction(nn.Module):
    """Encoder + an MLP head predicting [own expression, neighbours' mean expression] from z."""

    def __init__(self, encoder: _NicheGNN, n_latent: int, hidden: int, n_genes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(n_latent, hidden), nn.ReLU(), nn.Linear(hidden, 2 * n_genes))


class GraphEncoder(Encoder):
    """Niche-aware representation of each cell from a GNN over its spatial neighbour graph.

    Genes are standardised (means and deviations of the training cells, clipped at +-10 as
    ``scanpy.pp.scale``), then ``n_layers`` PyG layers (``"sage"``: GraphSAGE, ``"gcn"``, ``"gat"``,
    resolved with ``torch_geometric.resolver``) give ``z`` [n, n_latent]. Objectives:

    - ``"reconstruct"``: an MLP head predicts the cell's own standardised expression and the mean
      of its neighbours' (mean squared error), so ``z`` must hold both the cell and its niche;
    - ``"dgi"``: deep graph infomax (PyG's ``DeepGraphInfomax``): ``z`` of true blocks must be told
      apart from ``z`` of blocks whose expression rows were shuffled, against the batch summary.

    Defaults: ``"reconstruct"`` with GCN layers, chosen among {reconstruct, dgi} x {GCN, GraphSAGE}
    by ARI against the known domains of three simulated slides (``benchmarks/bench_spatial.py
    select``), never on the real slides' labels; 2 layers, 64 hidden, 32 latent, 300 steps of 512
    seed cells were fixed a priori. (GraphSAGE's separate root weight let the reconstruction keep
    mostly the cell's own expression: on the simulated slides it scored no better than PCA.)

    Args:
        n_latent, hidden, n_layers: representation size, hidden width, GNN layers (= hops seen).
        layer: GNN layer name (see ``GNN_LAYERS``); objective: ``"reconstruct"`` or ``"dgi"``.
        max_steps, batch_size, lr: Adam steps, seed cells per step, learning rate.
        inference_batch_size: seed cells per block in ``encode``.
        device: where training runs (None: where ``x`` is).
    """

    test_config: ClassVar[dict[str, Any]] = {"n_latent": 4, "hidden": 8, "max_steps": 3, "batch_size": 32}

    def __init__(self, n_latent: int = 32, hidden: int = 64, n_layers: int = 2, layer: str = "gcn",
                 objective: str = "reconstruct", max_steps: int = 300, batch_size: int = 512, lr: float = 1e-3,
                 inference_batch_size: int = 8192, device: str | None = None) -> None:
        super().__init__()
        if str(layer).lower() not in GNN_LAYERS:
            raise ValueError(f"layer must be one of {GNN_LAYERS}; got {layer!r}.")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
        for name, value in (("n_latent", n_latent), ("hidden", hidden), ("n_layers", n_layers),
                            ("max_steps", max_steps), ("batch_size", batch_size),
                            ("inference_batch_size", inference_batch_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1; got {value}.")
        self.register_buffer("gene_mean", torch.zeros(0))
        self.register_buffer("gene_scale", torch.ones(0))
        self.net: nn.Module | None = None

    @property
    def n_latent(self) -> int:
        return int(self.config["n_latent"])

    @property
    def gnn(self) -> _NicheGNN:
        self._check_fitted()
        return self.net.encoder

    # -- construction ------------------------------------------------------------------------------
    def _build(self, n_genes: int, seed: int = 0) -> nn.Module:
        c = self.config
        with seeded(seed):  # seeded initial weights, global RNG untouched
            encoder = _NicheGNN(c["layer"].lower(), n_genes, c["hidden"], c["n_layers"], c["n_latent"])
            if c["objective"] == "reconstruct":
                return _Reconstruction(encoder, c["n_latent"], c["hidden"], n_genes)
            from torch_geometric.nn import DeepGraphInfomax

            return DeepGraphInfomax(c["n_latent"], encoder, summary=_mean_summary, corruption=_no_corruption)

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_input": len(self.features or [])}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.net = self._build(int(state["n_input"]))

    # -- graph plumbing ----------------------------------------------------------------------------
    def _graph(self, edge_index: torch.Tensor | None, n: int) -> CSRGraph:
        return self_loop_csr(n) if edge_index is None else csr_from_edge_index(edge_index, n)

    def _block_edges(self, graph: CSRGraph, block: Block, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The block's ``edge_index`` (and, for GCN, symmetric weights from whole-graph degrees + self loops)."""
        edge_index, weight = block.edge_index, None
        if self.config["layer"].lower() == "gcn":
            degree = (graph.degrees[block.nodes] + 1).float()
            loops = torch.arange(block.nodes.numel()).repeat(2, 1)
            weight = torch.cat([(degree[edge_index[0]] * degree[edge_index[1]]).rsqrt(), degree.reciprocal()])
            edge_index = torch.cat([edge_index, loops], dim=1)
            weight = weight.to(device)
        return edge_index.to(device), weight

    def _run(self, encoder: _NicheGNN, x: torch.Tensor, graph: CSRGraph, block: Block) -> torch.Tensor:
        """``z`` of the block's seeds [b, n_latent] through all layers; ``x`` [n, genes] standardised."""
        edge_index, weight = self._block_edges(graph, block, x.device)
        return encoder(x[block.nodes.to(x.device)], edge_index, weight)[: block.n_seeds]

    def _layerwise(self, encoder: _NicheGNN, x: torch.Tensor, graph: CSRGraph, progress: bool) -> torch.Tensor:
        """All cells' ``z`` one layer at a time over 1-hop blocks (PyG's layer-wise inference): each
        layer costs one pass over the cells, where k-hop blocks would recompute shared neighbours."""
        gnn, n = encoder.gnn, x.shape[0]
        step = int(self.config["inference_batch_size"])
        scratch = torch.full((n,), -1, dtype=torch.long)
        h = x
        bar = progress_bar(total=len(gnn.convs) * ((n + step - 1) // step), desc="encode", enabled=progress)
        for i, conv in enumerate(gnn.convs):
            parts = []
            for start in range(0, n, step):
                block = khop_block(graph, torch.arange(start, min(start + step, n)), 1, scratch)
                edge_index, weight = self._block_edges(graph, block, x.device)
                kwargs = {} if weight is None else {"edge_weight": weight}
                parts.append(conv(h[block.nodes.to(x.device)], edge_index, **kwargs)[: block.n_seeds])
                bar.update(1)
            h = torch.cat(parts)
            if i < len(gnn.convs) - 1:   # BasicGNN between layers: norm (identity here), then activation
                h = gnn.act(gnn.norms[i](h))
        bar.close()
        return encoder.act(h)

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.gene_mean) / self.gene_scale).clamp(-10.0, 10.0)

    def _check_input(self, x: torch.Tensor, n_genes: int | None = None) -> None:
        if x.ndim != 2:
            raise ValueError(f"GraphEncoder expects x [cells, genes]; got shape {tuple(x.shape)}.")
        if n_genes is not None and x.shape[1] != n_genes:
            raise ValueError(f"GraphEncoder was fitted on {n_genes} genes; got x with {x.shape[1]} columns.")
        if not torch.isfinite(x).all():
            raise ValueError("x has NaN or infinite values; clean or impute the data first.")

    # -- training ----------------------------------------------------------------------------------
    def fit(self, x: torch.Tensor, features: Sequence[str], *, edge_index: torch.Tensor | None = None, seed: int = 0,
            progress: bool = True, **kwargs: Any) -> "GraphEncoder":
        """Train on ``x`` [n, genes] over the graph ``edge_index`` [2, E] (PyG order: neighbour -> cell)."""
        if x.ndim != 2 or x.shape[1] != len(features):
            raise ValueError(f"x has shape {tuple(x.shape)} but {len(features)} feature names were given.")
        self._check_input(x)
        c = self.config
        device = x.device if c["device"] is None else torch.device(c["device"])
        n = x.shape[0]
        graph = self._graph(edge_index, n)
        x = x.to(device=device, dtype=torch.float32)
        self.gene_mean = x.mean(0)
        self.gene_scale = x.std(0).clamp_min(1e-6) if n > 1 else torch.ones_like(self.gene_mean)
        xs = self._standardise(x)
        self.net = net = self._build(x.shape[1], seed).to(device)
        if c["objective"] == "reconstruct":  # targets: own and neighbours' mean expression
            targets = torch.cat([xs, _neighbour_mean(graph, xs)], dim=1)
        optimizer = torch.optim.Adam(net.parameters(), lr=c["lr"])
        generator = make_generator(seed)
        scratch = torch.full((n,), -1, dtype=torch.long)
        batch = min(int(c["batch_size"]), n)
        order, cursor, losses = torch.randperm(n, generator=generator), 0, []
        started = time.perf_counter()
        net.train()
        for _ in progress_bar(range(int(c["max_steps"])), desc="graph encoder", enabled=progress):
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            seeds = order[cursor:cursor + batch]
            cursor += batch
            block = khop_block(graph, seeds, int(c["n_layers"]), scratch)
            if c["objective"] == "reconstruct":
                z = self._run(net.encoder, xs, graph, block)
                loss = nn.functional.mse_loss(net.head(z), targets[seeds.to(device)])
            else:  # corruption: shuffle the block's expression rows, keep its edges
                shuffled = Block(block.nodes[torch.randperm(block.nodes.numel(), generator=generator)],
                                 block.edge_index, block.n_seeds)
                pos, neg = self._run(net.encoder, xs, graph, block), self._run(net.encoder, xs, graph, shuffled)
                loss = net.loss(pos, neg, _mean_summary(pos))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        net.eval()
        tail = losses[-max(1, len(losses) // 10):]
        self.training_summary = {"steps": len(losses), "first_loss": round(losses[0], 5),
                                 "last_loss": round(sum(tail) / len(tail), 5),
                                 "seconds": round(time.perf_counter() - started, 3)}
        self.training_history = {"epochs": [{"epoch": i, "loss": v} for i, v in enumerate(losses)], "unit": "step",
                                 "n_epochs": len(losses), "monitor": "", "best_epoch": -1, "stopped_early": False,
                                 "seconds": self.training_summary["seconds"], "weights": "last",
                                 "weights_epoch": len(losses) - 1}
        self.features = list(features)
        self.is_fitted = True
        return self

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, edge_index: torch.Tensor | None = None, *, progress: bool = False) -> torch.Tensor:
        """``z`` [n, n_latent] of ``x`` [n, genes] over ``edge_index`` [2, E] (None: a self-loop graph)."""
        self._check_fitted()
        self._check_input(x, len(self.features or []))
        n = x.shape[0]
        device = self.device
        if n == 0:
            return torch.zeros(0, self.n_latent, device=device)
        graph = self._graph(edge_index, n)
        encoder = self.net.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            z = self._layerwise(encoder, self._standardise(x.to(device)), graph, progress)
        finally:
            encoder.train(was_training)
        return z


def _neighbour_mean(graph: CSRGraph, x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [n, g] over each cell's neighbours, as a sparse CSR product (no [E, g] gather)."""
    degrees = graph.degrees
    weights = torch.repeat_interleave(1.0 / degrees.clamp_min(1).float(), degrees)
    with warnings.catch_warnings():   # "Sparse CSR tensor support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        adjacency = torch.sparse_csr_tensor(graph.indptr, graph.indices, weights, size=(graph.n_nodes, graph.n_nodes))
    return (adjacency.to(x.device) @ x).to(x.dtype)


def _mean_summary(z: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """DGI's readout: the sigmoid of the mean representation [n_latent]."""
    return torch.sigmoid(z.mean(dim=0))


def _no_corruption(*args: Any, **kwargs: Any):
    """Unused: corruption is applied to blocks in ``GraphEncoder.fit`` (rows shuffled within the block)."""
    return args
