"""``gene-network``: a knockout encoded by its target gene's place in a gene network, for unseen targets.

Each gene of the network (:mod:`.network_conditions`) starts from fixed features measured on the
training control cells (its loadings in a PCA of the standardised cells, its mean and spread);
a linear layer and ``layers`` rounds of PyG message passing (``GCNConv`` or ``GraphConv`` with
edge weights, residual) give a propagated embedding ``h_g`` [hidden]; an MLP maps it to a
deviation ``f(h_g)`` [d]. The shift added to a control cell's representation for target ``g``::

    shift(g) = mean response of the training targets + scale * f(h_g)   (+ own * s * e_g in gene space)

so that with no information the prediction is the ``mean-perturbation`` baseline. ``e_g`` is the
unit vector of gene ``g``'s own column when the representation is the gene space (identity
encoder): a learned ``self_effect`` ``s`` for the knocked-out gene's own expression. A target seen
in training gets its observed response. Training: full-batch Adam on the squared error between
predicted and observed pseudobulk responses of the seen targets that are genes of the network.
``scale="cv"`` picks ``scale`` from ``(0, 0.25, 0.5, 1)`` and ``own`` from ``(0, 1)`` by
leave-one-target-out over the training targets only (refitting the network model without each
one), never by held-out data; a fixed ``scale`` keeps ``own = 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...component import Condition
from ...execution import progress_bar, seeded, torch_threads
from ...nn.group_means import repeat_samples
from .network_conditions import CONTROL, NetworkManipulator

__all__ = ["GeneNetworkManipulator", "SCALE_GRID"]

SCALE_GRID = (0.0, 0.25, 0.5, 1.0)


class _NetworkModel(nn.Module):
    """Node features [G, f] -> propagated embeddings [G, hidden] -> deviations [G, d]."""

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int, conv: str) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv, GraphConv

        make = {"gcn": lambda: GCNConv(hidden, hidden), "graph": lambda: GraphConv(hidden, hidden, aggr="mean")}
        if conv not in make:
            raise ValueError(f"conv must be one of {sorted(make)}; got {conv!r}.")
        self.project = nn.Linear(n_in, hidden)
        self.convs = nn.ModuleList(make[conv]() for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.self_effect = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(features))
        for conv in self.convs:
            h = h + torch.relu(conv(h, edge_index, edge_weight))
        return self.head(h)


def _node_features(pending: dict[str, Any], nodes: list[str], n_components: int) -> torch.Tensor:
    """Standardised gene features [G, f] from the control cells (one-hot ids in the fallback)."""
    if pending["x_control"] is None:
        return torch.eye(len(nodes))
    from ...data.gene_networks import gene_embedding

    x = pending["x_control"]
    per_gene = np.concatenate([gene_embedding(x, n_components), x.mean(0)[:, None], x.std(0)[:, None]], 1)
    features = np.zeros((len(nodes), per_gene.shape[1]))
    features[: len(pending["genes"])] = per_gene                         # nodes start with the genes
    spread = features.std(0)
    features = (features - features.mean(0)) / np.where(spread > 1e-12, spread, 1.0)
    return torch.as_tensor(features, dtype=torch.float32)


class GeneNetworkManipulator(NetworkManipulator):
    """Predicts a knockout's shift from its target's propagated embedding in a gene network.

    Args:
        network: ``"coexpression"`` (top-``k`` |r| on the training control cells), ``"knn"`` (``k``
            nearest genes in PCA-loading space), ``"none"`` (no edges: features only) or an edge-list path.
        k: partners per gene for the built networks.
        n_components: PCA loadings per gene in the node features.
        hidden, layers, conv: width, message-passing rounds, ``"gcn"`` or ``"graph"`` (PyG layers).
        epochs, lr, weight_decay: full-batch Adam.
        scale: the deviation's weight, a number or ``"cv"`` (inner leave-one-target-out; see module doc).
    """

    test_config = {"hidden": 8, "epochs": 20}

    def __init__(self, network: str = "coexpression", k: int = 10, n_components: int = 16, hidden: int = 32,
                 layers: int = 2, conv: str = "gcn", epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-3,
                 scale: float | str = "cv") -> None:
        super().__init__()
        if not (scale == "cv" or isinstance(scale, (int, float))):
            raise ValueError(f"scale must be a number or 'cv'; got {scale!r}.")
        self.model: _NetworkModel | None = None
        self.register_buffer("node_features", torch.zeros(0, 0))      # [G, f]
        self.register_buffer("mean_shift", torch.zeros(0))             # [d]
        self.register_buffer("self_index", torch.zeros(0, dtype=torch.long))  # [N] own output column or -1
        self.register_buffer("scale_used", torch.zeros(()))                 # weight of the network part
        self.register_buffer("self_used", torch.zeros(()))                  # 1: add the own-gene effect
        self.n_node_features = 0

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_node_features": self.n_node_features}

    def load_fitted_state(self, state) -> None:
        super().load_fitted_state(state)
        self.n_node_features = int(state["n_node_features"])
        self.model = self._new_model()

    def _new_model(self) -> _NetworkModel:
        c = self.config
        return _NetworkModel(self.n_node_features, self.n_features, c["hidden"], c["layers"], c["conv"])

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int = 0, progress: bool = True, **kwargs: Any) -> None:
        pending = self._prepare_network(z, labels)
        self.node_features = _node_features(pending, self.nodes, self.config["n_components"]).to(z.device)
        self.n_node_features = int(self.node_features.shape[1])
        n_genes = len(pending["genes"] or [])
        gene_space = pending["gene_space"]
        self.self_index = torch.where((self.node_of >= 0) & (self.node_of < n_genes) & gene_space, self.node_of,
                                      torch.full_like(self.node_of, -1))
        seen = torch.nonzero(self.seen).flatten()
        self.mean_shift = self.observed_shift[seen].double().mean(0).float()
        train = seen[self.node_of[seen] >= 0]                              # seen targets that are nodes
        self.model = self._train(train, seen, seed, progress)
        scale, own = self.config["scale"], 1.0
        if scale == "cv":
            scale, own = self._cross_validated_scale(train, seen, seed) if len(train) >= 3 else (1.0, 1.0)
        self.scale_used, self.self_used = torch.tensor(float(scale)), torch.tensor(float(own))

    def _train(self, train: torch.Tensor, seen: torch.Tensor, seed: int, progress: bool) -> _NetworkModel:
        """A network model fitted to the responses of ``train`` ids, deviations from the mean over ``seen``."""
        # One torch CPU thread while training: the graph has hundreds of nodes, and on a loaded machine
        # more threads only spin-wait (measured 8x slower with 2 threads on 2 shared cores).
        with torch_threads(1):
            return self._train_steps(train, seen, seed, progress)

    def _train_steps(self, train: torch.Tensor, seen: torch.Tensor, seed: int, progress: bool) -> _NetworkModel:
        with seeded(seed):
            model = self._new_model().to(self.node_features.device)
        if len(train) == 0:
            return model
        base = self.observed_shift[seen].double().mean(0).float()
        targets = self.observed_shift[train] - base                        # [T, d]
        nodes = self.node_of[train]
        own = self.self_index[train]
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config["lr"], weight_decay=self.config["weight_decay"])
        for _ in progress_bar(range(self.config["epochs"]), desc="gene-network", enabled=progress):
            optimizer.zero_grad()
            loss = ((sum(self._parts(model, nodes, own)) - targets) ** 2).mean()
            loss.backward()
            optimizer.step()
        return model.eval()

    def _parts(self, model: _NetworkModel, nodes: torch.Tensor, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deviations from the mean response for targets at ``nodes`` [T]: the network's [T, d] and the
        knocked-out genes' own-column effect [T, d] (``self_effect`` at columns ``own``; zeros off gene space)."""
        network = model(self.node_features, self.edge_index, self.edge_weight)[nodes]
        own_effect = torch.zeros_like(network)
        if bool((own >= 0).any()):
            rows = torch.nonzero(own >= 0).flatten()
            own_effect = own_effect.index_put((rows, own[rows]), model.self_effect.expand(len(rows)))
        return network, own_effect

    def _cross_validated_scale(self, train: torch.Tensor, seen: torch.Tensor, seed: int) -> tuple[float, float]:
        """``(scale, own)``: the network part's weight in :data:`SCALE_GRID` and whether (1) or not (0) to add
        the own-gene effect, minimising the leave-one-target-out squared error over the training targets."""
        grid = [(a, b) for b in (0.0, 1.0) for a in SCALE_GRID]
        errors = np.zeros(len(grid))
        for t in train.tolist():
            rest_train, rest_seen = train[train != t], seen[seen != t]
            model = self._train(rest_train, rest_seen, seed, progress=False)
            with torch.no_grad():
                base = self.observed_shift[rest_seen].double().mean(0).float()
                network, own = (p[0] for p in self._parts(model, self.node_of[[t]], self.self_index[[t]]))
            for i, (a, b) in enumerate(grid):
                errors[i] += float(((base + a * network + b * own - self.observed_shift[t]) ** 2).sum())
        return grid[int(np.argmin(errors))]

    # -- prediction ------------------------------------------------------------------------------
    def shifts(self, ids: torch.Tensor) -> torch.Tensor:
        """The shift [len(ids), d] of each condition id (0 for control; observed for seen targets)."""
        out = torch.zeros(len(ids), self.n_features, device=self.mean_shift.device)
        for c in torch.unique(ids).tolist():
            self.check_predictable(c, needs_edges=self.config["network"] != "none")
            if c == CONTROL:
                continue
            if bool(self.seen[c]):
                value = self.observed_shift[c]
            else:
                with torch.no_grad():
                    network, own = (p[0] for p in self._parts(self.model, self.node_of[[c]], self.self_index[[c]]))
                value = self.mean_shift + self.scale_used * network + self.self_used * own
            out[ids == c] = value
        return out

    def _manipulate(self, z, condition, *, n_samples, generator):
        source = condition.source if condition.source is not None else torch.full_like(condition.target, CONTROL)
        out = z + (self.shifts(condition.target) - self.shifts(source)).to(z.dtype)
        return repeat_samples(out, n_samples)
