"""Conditions that are genes of a gene network: the shared base of ``gene-network`` and ``nearest-target``.

A targeted gene never perturbed in training has no condition id at the AnnData edge. A
:class:`NetworkManipulator` names the conditions it can predict: a pipeline calls
:meth:`NetworkManipulator.prepare_conditions` with the observed condition labels (control first)
and the preprocessed expression before ``fit``; the manipulator builds its gene network from the
training control cells (``virtualcell.data.gene_networks``) and returns the labels extended by
every gene of the network, so that an unseen target gets an id. The names, the network's nodes and
edges (``edge_index`` [2, E], ``edge_weight`` [E]) are saved with the artifact (JSON + safetensors).

Fitted directly (``fit(z, labels)`` without ``prepare_conditions``, as the contract tests do, where
conditions have no gene names) the network is the complete graph over the perturbed condition ids,
named ``condition_<id>``: a fallback that makes every seen condition a neighbour of every other.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...component import Condition, Manipulator
from ...nn.group_means import group_means

__all__ = ["NetworkManipulator", "CONTROL"]

CONTROL = 0


class NetworkManipulator(Manipulator):
    """A manipulator whose conditions are control + genes of a network (see the module docstring).

    Subclasses call :meth:`_prepare_network` at the start of ``_fit`` and use ``node_of`` [N] (node
    index of each condition id, -1 if none), ``edge_index``, ``edge_weight``, ``observed_shift``
    [N, d] and ``seen`` [N] (condition ids with cells at fit).
    """

    def __init__(self) -> None:
        super().__init__()
        self.condition_names: list[str] = []
        self.nodes: list[str] = []
        self.network_summary: str = ""
        self._pending: dict[str, Any] | None = None
        self.register_buffer("edge_index", torch.zeros(2, 0, dtype=torch.long))   # [2, E] both directions
        self.register_buffer("edge_weight", torch.zeros(0))                        # [E]
        self.register_buffer("node_of", torch.zeros(0, dtype=torch.long))          # [N] node index or -1
        self.register_buffer("observed_shift", torch.zeros(0, 0))                  # [N, d] mean(z|c) - mean(z|control)
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))            # [N]

    # -- the pipeline's hook ---------------------------------------------------------------------
    def prepare_conditions(self, labels: Sequence[str], *, x: torch.Tensor, z: torch.Tensor, genes: Sequence[str],
                           condition_ids: torch.Tensor) -> list[str]:
        """Build the network from the control cells of ``x`` [n, genes] and name the conditions it can predict.

        Args:
            labels: observed condition labels, control first (their ids are their positions).
            x: preprocessed expression [n, genes]; z: its representation [n, d] (the manipulator's input).
            genes: the columns of ``x``.
            condition_ids: [n] each cell's condition id.
        Returns: ``labels`` followed by the network's genes that are not among them.
        """
        from ...data.gene_networks import build_network

        labels = [str(v) for v in labels]
        control = (condition_ids.to(x.device) == CONTROL)
        if int(control.sum()) < 3:
            raise ValueError(f"The gene network is built from control cells; only {int(control.sum())} found.")
        x_control = x[control].detach().cpu().double().numpy()
        graph, report = build_network(self.config["network"], x_control, list(genes), k=self.config["k"],
                                      extra_nodes=labels[1:])
        if report.dropped_genes:   # an edge list naming genes the data lacks: say how many were dropped
            warnings.warn(report.summary(), UserWarning, stacklevel=2)
        nodes = [str(g) for g in genes] + sorted(set(graph.nodes) - set(map(str, genes)))
        same_space = z.shape == x.shape and torch.equal(z.to(x.device, x.dtype), x)
        names = labels + [g for g in nodes if g not in set(labels)]
        self._pending = {"graph": graph, "nodes": nodes, "summary": report.summary(), "x_control": x_control,
                         "genes": [str(g) for g in genes], "gene_space": bool(same_space), "names": names}
        return names

    def _prepare_network(self, z: torch.Tensor, labels: Condition) -> dict[str, Any]:
        """Names, nodes, edges and observed shifts; returns the pending build (or the fallback's)."""
        n = self.n_conditions
        pending = self._pending
        if pending is not None and len(pending["names"]) != n:
            raise ValueError(f"prepare_conditions named {len(pending['names'])} conditions but fit got n_conditions={n}; "
                             "pass the size of the vocabulary it returned.")
        if pending is None:  # fallback: complete graph over the perturbed condition ids
            import networkx as nx

            names = [f"condition_{i}" for i in range(n)]
            graph = nx.complete_graph(names[1:])
            nx.set_edge_attributes(graph, 1.0, "weight")
            pending = {"graph": graph, "nodes": names[1:], "summary": "complete graph over condition ids (no gene names)",
                       "x_control": None, "genes": None, "gene_space": False, "names": names}
        self.condition_names = list(pending["names"])
        self.nodes = list(pending["nodes"])
        self.network_summary = pending["summary"]
        index = {g: i for i, g in enumerate(self.nodes)}
        node_of = torch.tensor([index.get(c, -1) for c in self.condition_names], dtype=torch.long)
        node_of[CONTROL] = -1
        self.node_of = node_of.to(z.device)
        edge_index, edge_weight = _edge_tensors(pending["graph"], self.nodes)
        self.edge_index, self.edge_weight = edge_index.to(z.device), edge_weight.to(z.device)
        means, counts = group_means(z, labels.target, None, n, 0)
        means, counts = means[0].double(), counts[0]
        if counts[CONTROL] == 0:
            raise ValueError(f"{type(self).__name__} needs control cells (condition id 0) to measure responses.")
        self.seen = counts > 0
        self.seen[CONTROL] = False
        self.observed_shift = torch.where(self.seen[:, None], means - means[CONTROL], 0.0).float()
        self._pending = None
        return {**pending, "counts": counts}

    # -- state -----------------------------------------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "condition_names": self.condition_names, "nodes": self.nodes,
                "network_summary": self.network_summary}

    def load_fitted_state(self, state) -> None:
        super().load_fitted_state(state)
        self.condition_names = list(state["condition_names"])
        self.nodes = list(state["nodes"])
        self.network_summary = str(state["network_summary"])

    # -- prediction helpers ----------------------------------------------------------------------
    def degree(self) -> torch.Tensor:
        """Edges touching each node [G] (self-loops excluded)."""
        deg = torch.zeros(len(self.nodes), dtype=torch.long)
        if self.edge_index.numel():
            deg.index_add_(0, self.edge_index[0].cpu(), torch.ones(self.edge_index.shape[1], dtype=torch.long))
        return deg

    def check_predictable(self, condition_id: int, *, needs_edges: bool = True) -> None:
        """ValueError explaining why ``condition_id`` cannot be predicted (unseen and outside the network)."""
        name = self.condition_names[condition_id]
        if condition_id == CONTROL or bool(self.seen[condition_id]):
            return
        node = int(self.node_of[condition_id])
        if node < 0:
            raise ValueError(f"Condition {name!r} was not seen in training and is not a gene of the network "
                             f"({self.network_summary}; genes e.g. {self.nodes[:8]}). Predict a gene of the network, "
                             "or rebuild it from an edge list that includes this gene.")
        if needs_edges and int(self.degree()[node]) == 0:
            raise ValueError(f"Target {name!r} is a gene of the network but no edge touches it ({self.network_summary}), "
                             "so the network says nothing about its knockout. Use a denser network (larger k, an edge "
                             "list that covers it) or a baseline such as mean-perturbation.")

    def describe(self) -> str:
        """One line: the network and how many conditions were seen."""
        return f"{self.network_summary}; {int(self.seen.sum())} perturbations seen in training"

    def coverage(self) -> str:
        """The network and examples of its genes (each a knockout it can predict)."""
        return f"its network: {self.describe()}; genes e.g. {self.nodes[:10]}"

    def was_seen(self, condition_id: int) -> bool:
        return bool(self.seen[condition_id])


def _edge_tensors(graph, nodes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``edge_index`` [2, E] (both directions) and ``edge_weight`` [E] in the order of ``nodes``
    (through ``torch_geometric.utils.from_networkx``)."""
    import networkx as nx

    ordered, known = nx.Graph(), set(nodes)
    ordered.add_nodes_from(nodes)
    ordered.add_weighted_edges_from((u, v, float(d.get("weight", 1.0))) for u, v, d in graph.edges(data=True)
                                    if u != v and u in known and v in known)
    if ordered.number_of_edges() == 0:
        return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0)
    from torch_geometric.utils import from_networkx

    data = from_networkx(ordered, group_edge_attrs=["weight"])
    return data.edge_index.long(), data.edge_attr.view(-1).float()


def dense_adjacency(edge_index: torch.Tensor, edge_weight: torch.Tensor, n_nodes: int) -> np.ndarray:
    """Symmetric weighted adjacency [G, G] (float64) from the edge tensors."""
    adjacency = np.zeros((n_nodes, n_nodes))
    if edge_index.numel():
        src, dst = edge_index.cpu().numpy()
        adjacency[src, dst] = edge_weight.detach().cpu().double().numpy()
    return adjacency
