"""PERT-unseen's methods: each fitted on all cells but one target's, refused early when it cannot answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anndata as ad

from ..execution import seed_everything

__all__ = ["fit_unseen", "panel_precheck", "fitted_facts"]


def fit_unseen(encoder: Any, manipulator: Any, train: ad.AnnData, *, condition_key: str, control: str, held_out: str,
               seed: int, device: str) -> tuple[Any, float]:
    """A fresh pipeline fitted on ``train`` with the held-out label as an extra condition (an id without cells)."""
    from ..pipelines.perturbation import PerturbationPipeline
    from .methods import fresh

    pipeline = PerturbationPipeline(encoder=fresh(encoder, None, "encoder"), manipulator=fresh(manipulator, None, "manipulator"),
                                    preprocess=None, device=device)
    seed_everything(seed)
    start = time.perf_counter()
    pipeline.fit(train, condition_key=condition_key, control=control, seed=seed, progress=False,
                 extra_conditions=[held_out])
    return pipeline, time.perf_counter() - start


def panel_precheck(manipulator: Any, genes: Sequence[str], conditions: Sequence[str]) -> Callable[[Any], str | None]:
    """For a gene-network manipulator, a check refusing (before any training) a target that cannot be a node
    of its network: not a gene of the data (the panel) and, for an edge-list network, in none of its edges to
    the panel or to the other ``conditions`` (what the fit would build). Other manipulators get a check that
    refuses nothing. The returned check takes a Task."""
    from ..instruments.manipulators.network_conditions import NetworkManipulator
    from .methods import fresh

    component = fresh(manipulator, None, "manipulator")
    if not isinstance(component, NetworkManipulator):
        return lambda task: None
    from ..data.gene_networks import NETWORK_SOURCES, build_network

    network = str(component.config["network"])
    panel = set(map(str, genes))
    if network not in NETWORK_SOURCES:   # an edge list: its genes outside the panel are nodes too
        graph, _ = build_network(network, None, list(genes), extra_nodes=list(conditions))
        panel |= set(map(str, graph.nodes))

    def check(task: Any) -> str | None:
        if task.target in panel:
            return None
        return (f"Condition {task.target!r} was not seen in training and is not a gene of the network ({network}; "
                f"{len(panel)} genes); refused before training. Predict a gene of the network, or rebuild it from an "
                "edge list that includes this gene.")

    return check


def fitted_facts(pipeline: Any) -> dict[str, Any]:
    """What a network manipulator chose on the training targets (its network, the deviation scale)."""
    manipulator, facts = pipeline.manipulator, {}
    if getattr(manipulator, "network_summary", ""):
        facts["network"] = manipulator.network_summary
    if hasattr(manipulator, "scale_used"):
        facts["scale_chosen"] = float(manipulator.scale_used)
        facts["own_effect_chosen"] = float(manipulator.self_used)
    return facts
