"""``nearest-target``: an unseen target gets the observed response of the most similar training target.

Similarity is personalized PageRank in the gene network (:mod:`.network_conditions`): from the
unseen target's node, a random walk along weighted edges that restarts there with probability
``1 - alpha``; the training target (a seen perturbation that is a node of the network) where the
walk spends the most time is the nearest, ties broken by the lower condition id. The scores are
exact: ``PPR = (1 - alpha) (I - alpha P)^-1`` with ``P`` the row-normalised adjacency (float64).
A target whose component of the network holds no training target (e.g. no edge touches it) is
refused with an explanation. A target seen in training gets its own observed response.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...component import Condition
from ...nn.group_means import repeat_samples
from .network_conditions import CONTROL, NetworkManipulator, dense_adjacency

__all__ = ["NearestTargetManipulator", "personalized_pagerank"]


def personalized_pagerank(adjacency: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """Row ``i``: the stationary distribution of a walk restarting at node ``i`` [G, G] (dangling nodes stay put)."""
    degree = adjacency.sum(1)
    transition = np.divide(adjacency, degree[:, None], out=np.zeros_like(adjacency), where=degree[:, None] > 0)
    return (1 - alpha) * np.linalg.inv(np.eye(len(adjacency)) - alpha * transition)


class NearestTargetManipulator(NetworkManipulator):
    """The response of the training target nearest in the gene network (personalized PageRank).

    Args:
        network, k: the gene network (as for ``gene-network``).
        alpha: PageRank's continuation probability (higher: reach further along the network).
    """

    def __init__(self, network: str = "coexpression", k: int = 10, alpha: float = 0.85) -> None:
        super().__init__()
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1); got {alpha}.")
        self.register_buffer("nearest", torch.zeros(0, dtype=torch.long))   # [N] condition id whose response is used

    def _fit(self, z: torch.Tensor, labels: Condition, **kwargs: Any) -> None:
        self._prepare_network(z, labels)
        n = self.n_conditions
        nearest = torch.full((n,), -1, dtype=torch.long)
        seen = self.seen.cpu()
        nearest[seen] = torch.nonzero(seen).flatten()
        node_of = self.node_of.cpu()
        candidates = torch.nonzero(seen & (node_of >= 0)).flatten()       # training targets in the network
        if len(candidates):
            ppr = personalized_pagerank(dense_adjacency(self.edge_index, self.edge_weight, len(self.nodes)),
                                        self.config["alpha"])
            cand_nodes = node_of[candidates].numpy()
            for c in torch.nonzero(~seen & (node_of >= 0)).flatten().tolist():
                scores = ppr[int(node_of[c]), cand_nodes]
                if scores.max() > 0:
                    nearest[c] = candidates[int(np.argmax(scores))]
        self.nearest = nearest.to(z.device)

    def nearest_name(self, condition_id: int) -> str | None:
        """The label of the training target whose response ``condition_id`` gets (None: not predictable)."""
        c = int(self.nearest[condition_id])
        return None if c < 0 else self.condition_names[c]

    def shifts(self, ids: torch.Tensor) -> torch.Tensor:
        """The shift [len(ids), d] of each condition id (0 for control)."""
        out = torch.zeros(len(ids), self.n_features, device=self.observed_shift.device)
        for c in torch.unique(ids).tolist():
            if c == CONTROL:
                continue
            self.check_predictable(c)
            source = int(self.nearest[c])
            if source < 0:
                raise ValueError(f"No training target is connected to {self.condition_names[c]!r} in the gene network "
                                 f"({self.network_summary}); nearest-target has no response to copy. Use a denser "
                                 "network or a baseline such as mean-perturbation.")
            out[ids == c] = self.observed_shift[source]
        return out

    def _manipulate(self, z, condition, *, n_samples, generator):
        source = condition.source if condition.source is not None else torch.full_like(condition.target, CONTROL)
        out = z + (self.shifts(condition.target) - self.shifts(source)).to(z.dtype)
        return repeat_samples(out, n_samples)
