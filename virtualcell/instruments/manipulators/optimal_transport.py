"""``optimal-transport``: per-cell responses matched by optimal transport (scPRAM / CellOT style).

Fit: within every training context (cell type), the cells of each pair of conditions are coupled
by optimal transport (:mod:`.ot_responses`; at most ``max_cells`` cells per context and condition,
drawn with ``seed``), so every kept cell (an *anchor*) gets a response vector towards each other
condition of its context: its barycentric partner minus itself. When ``z`` has more than
``match_dims`` dimensions (gene space), cells are coupled and matched in its top principal
components, and a moved cell keeps its own part there but takes its neighbour's part elsewhere,
so the noise outside them becomes a real treated cell's, not the sum of two cells' noise.

Predict a cell of condition ``s`` moved to ``t``:

- its context has training responses ``s -> t``: the responses of its ``k`` nearest anchors of
  that context (the context's own OT map, no pooling);
- otherwise (a held-out context): ``z + m(s, t) + e`` where ``m`` is a mean response estimated
  from the training contexts (``"balanced"``: latent arithmetic's balanced means; ``"pooled"``:
  mean-shift's pooled means; the default ``"auto"`` picks one of the two by leave-one-context-out
  error on the training contexts) and ``e`` the *residual* of one of its ``k``
  nearest anchors (its response minus its own context's mean response), i.e. the part of the
  response that varies from cell to cell. The residuals are recentred to average 0 over the cells
  of that context moved together in one call, so the context's mean response is exactly ``m``
  (the mean of latent arithmetic or mean-shift) and the residuals only add the spread; a cell
  predicted alone therefore gets ``z + m``. ``mean="local"`` uses the neighbours' raw responses
  (scPRAM's rule), not recentred.

``n_samples == 1`` (the central prediction) gives each cell one neighbour's response drawn
uniformly among its ``k`` nearest (``central="sample"``, so the predicted population keeps the
spread of the responses) or their mean (``central="mean"``); ``n_samples > 1`` always draws one
neighbour per cell and sample. Draws come from a CPU generator (a CUDA ``generator`` contributes
its seed), so CPU and CUDA give the same cells. Defaults are chosen a priori (docs/per_cell.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...component import Condition, Manipulator
from ...nn.group_means import group_means, pooled_mean
from ...nn.pca import fit_pca
from .latent_arithmetic import balanced_means
from .mean_response_cv import choose_mean, loco_mean_errors
from .ot_responses import SOLVERS, barycentric_responses, ot_plan, subsample

__all__ = ["OptimalTransportManipulator", "MEANS", "CENTRALS"]

MEANS = ("auto", "balanced", "pooled", "local")
CENTRALS = ("sample", "mean")
_ROWS = 2048   # query cells per distance block


def cpu_generator(generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator: ``generator`` itself if on CPU, else one seeded with its seed (None: from torch's global RNG)."""
    if generator is not None and generator.device.type == "cpu":
        return generator
    seed = generator.initial_seed() if generator is not None else int(torch.randint(2**62, (1,)))
    return torch.Generator().manual_seed(seed)


class OptimalTransportManipulator(Manipulator):
    """Each cell gets the OT-matched response of its nearest training cells (cell-to-cell heterogeneity).

    Args:
        k: nearest training cells (anchors) whose responses a cell may get.
        max_cells: cap on the cells per context and condition that are coupled (seeded subsample).
        solver: ``"emd"`` (exact, sparse plan) or ``"sinkhorn"`` (entropic, regularisation ``epsilon``
            times the mean squared distance).
        mean: mean response of a held-out context: ``"balanced"``, ``"pooled"``, ``"local"`` (see module) or
            ``"auto"``: balanced or pooled, whichever predicts the training contexts' mean responses better
            when each is left out in turn (:mod:`.mean_response_cv`; balanced when fewer than two contexts).
        central: the ``n_samples == 1`` prediction: one drawn neighbour (``"sample"``) or the mean of ``k``.
        match_dims: when ``z`` has more dimensions, coupling and neighbours use its top ``match_dims``
            principal components (fitted on the training cells), and a moved cell keeps only its own
            part in them: the rest (noise, in gene space) is its neighbour's, so the neighbour's response
            turns it into the treated partner's instead of adding a second cell's noise to its own.
    """

    stochastic = True
    test_config = {"k": 3, "max_cells": 40}

    def __init__(self, k: int = 10, max_cells: int = 2000, solver: str = "emd", epsilon: float = 0.05,
                 mean: str = "auto", central: str = "sample", match_dims: int = 50) -> None:
        super().__init__()
        for name, value, allowed in (("solver", solver, SOLVERS), ("mean", mean, MEANS), ("central", central, CENTRALS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}.")
        if k < 1 or max_cells < 2 or epsilon <= 0 or match_dims < 1:
            raise ValueError(f"Need k >= 1, max_cells >= 2, epsilon > 0 and match_dims >= 1; got k={k}, "
                             f"max_cells={max_cells}, epsilon={epsilon}, match_dims={match_dims}.")
        for name, shape, dtype in (("anchor_coords", (0, 0), torch.float32), ("match_mean", (0,), torch.float32),
                                   ("match_components", (0, 0), torch.float32), ("anchor_condition", (0,), torch.long),
                                   ("anchor_context", (0,), torch.long), ("response", (0, 0), torch.float32),
                                   ("response_anchor", (0,), torch.long), ("response_target", (0,), torch.long),
                                   ("condition_means", (0, 0), torch.float32), ("means", (0, 0, 0), torch.float32),
                                   ("counts", (0, 0), torch.float64)):
            self.register_buffer(name, torch.zeros(shape, dtype=dtype))
        self.mean_used: str = mean
        self.mean_cv: dict[str, float] = {}

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "mean_used": self.mean_used, "mean_cv": self.mean_cv}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.mean_used = str(state["mean_used"])
        self.mean_cv = {str(k): float(v) for k, v in state.get("mean_cv", {}).items()}

    # -- fit -------------------------------------------------------------------------------------
    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int = 0, **kwargs: Any) -> None:
        cfg = self.config
        rng = np.random.default_rng(seed)
        condition = labels.target.long()
        context = labels.context.long() if labels.context is not None else torch.zeros_like(condition)
        if z.shape[1] > cfg["match_dims"]:
            self.match_mean, self.match_components, _ = (t.to(z.device) for t in fit_pca(z, cfg["match_dims"], seed=seed))
        else:
            self.match_mean, self.match_components = z.new_zeros(0), z.new_zeros(0, 0)
        coords = self.coordinates(z)
        anchors: list[torch.Tensor] = []                 # kept rows of z, in (context, condition) order
        responses, owners, targets = [], [], []
        offset = 0
        for k in torch.unique(context).tolist():
            kept = {}
            for c in torch.unique(condition[context == k]).tolist():
                rows = torch.nonzero((context == k) & (condition == c)).flatten()
                kept[c] = (subsample(rows, cfg["max_cells"], rng), offset)
                anchors.append(kept[c][0])
                offset += kept[c][0].numel()
            ids = sorted(kept)
            for i, a in enumerate(ids):
                for b in ids[i + 1:]:
                    (rows_a, at_a), (rows_b, at_b) = kept[a], kept[b]
                    plan = ot_plan(coords[rows_a].cpu().numpy(), coords[rows_b].cpu().numpy(), solver=cfg["solver"],
                                   epsilon=cfg["epsilon"])
                    forward, backward = barycentric_responses(z[rows_a], z[rows_b], plan)
                    for vectors, rows, at, to in ((forward, rows_a, at_a, b), (backward, rows_b, at_b, a)):
                        responses.append(vectors + self.complement(z[rows]))
                        owners.append(torch.arange(at, at + rows.numel(), device=z.device))
                        targets.append(torch.full((rows.numel(),), to, dtype=torch.long, device=z.device))
        kept_rows = torch.cat(anchors)
        self.anchor_coords = coords[kept_rows].float()
        self.anchor_condition, self.anchor_context = condition[kept_rows], context[kept_rows]
        empty = lambda *shape, dtype=torch.long: torch.zeros(shape, dtype=dtype, device=z.device)
        self.response = torch.cat(responses).float() if responses else empty(0, z.shape[1], dtype=torch.float32)
        self.response_anchor = torch.cat(owners) if owners else empty(0)
        self.response_target = torch.cat(targets) if targets else empty(0)
        generator = torch.Generator().manual_seed(seed)
        self.condition_means = balanced_means(z, condition, labels.context, self.n_conditions, generator)
        self.means, self.counts = group_means(z, condition, labels.context, self.n_conditions, self.n_contexts)
        self.mean_used, self.mean_cv = cfg["mean"], {}
        if cfg["mean"] == "auto":
            errors = loco_mean_errors(z, condition, context, self.n_conditions, seed)
            self.mean_used = choose_mean(errors)
            self.mean_cv = {name: sum(v) / len(v) for name, v in errors.items() if v}

    # -- predict ---------------------------------------------------------------------------------
    def coordinates(self, z: torch.Tensor) -> torch.Tensor:
        """Where cells are matched [n, q]: ``z`` itself, or its top ``match_dims`` principal components."""
        if self.match_components.numel() == 0:
            return z
        return (z - self.match_mean.to(z.dtype)) @ self.match_components.to(z.dtype).T

    def complement(self, z: torch.Tensor) -> torch.Tensor:
        """The part of ``z`` [n, d] outside the matching components (0 when ``z`` is matched whole)."""
        if self.match_components.numel() == 0:
            return torch.zeros_like(z)
        v = self.match_components.to(z.dtype)
        centred = z - self.match_mean.to(z.dtype)
        return centred - (centred @ v.T) @ v

    def mean_response(self, source: int, target: int) -> torch.Tensor:
        """The mean response [d] a held-out context gets (``mean="local"``: zeros)."""
        mode = self.mean_used
        if mode == "local":
            return torch.zeros(self.n_features, device=self.response.device)
        if mode == "balanced":
            delta = self.condition_means[target] - self.condition_means[source]
            if bool(torch.isnan(delta).any()):
                raise ValueError(f"Condition {source} or {target} had no cells when the manipulator was fitted.")
            return delta
        shared = (self.counts[:, source] > 0) & (self.counts[:, target] > 0)
        return pooled_mean(self.means, self.counts, target, shared) - pooled_mean(self.means, self.counts, source, shared)

    def _pool(self, source: int, target: int, context: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Anchors [m], the vector each contributes [m, d] and whether they are residuals, for cells of
        ``context`` moved ``source -> target``: a training context's own responses, else every context's
        responses minus their context's mean response (residuals; ``mean="local"``: raw responses)."""
        rows = torch.nonzero((self.response_target == target)
                             & (self.anchor_condition[self.response_anchor] == source)).flatten()
        if rows.numel() == 0:
            raise ValueError(f"No training context has cells of both condition {source} and condition {target}; "
                             "optimal-transport cannot estimate that change.")
        owner = self.response_anchor[rows]
        own = self.anchor_context[owner] == context
        if bool(own.any()):                       # a training context: its own OT map
            return owner[own], self.response[rows[own]], False
        vectors = self.response[rows]
        if self.mean_used == "local":
            return owner, vectors, False
        ctx = self.anchor_context[owner]
        sums = torch.zeros(int(ctx.max()) + 1, vectors.shape[1], dtype=torch.float64, device=vectors.device)
        sums.index_add_(0, ctx, vectors.double())
        counts = torch.bincount(ctx, minlength=sums.shape[0]).clamp_min(1).to(sums.dtype)
        return owner, vectors - (sums / counts[:, None]).to(vectors.dtype)[ctx], True

    def _neighbours(self, z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Indices [n, k'] of each row's ``k' = min(k, m)`` nearest anchors (Euclidean), nearest first."""
        k = min(int(self.config["k"]), anchors.shape[0])
        points = self.anchor_coords[anchors].to(z.dtype)
        return torch.cat([torch.cdist(z[i:i + _ROWS], points).topk(k, largest=False).indices
                          for i in range(0, z.shape[0], _ROWS)])

    def _manipulate(self, z, condition, *, n_samples, generator):
        if condition.source is None:
            raise ValueError("optimal-transport needs condition.source (the condition each cell is in now).")
        out = z.unsqueeze(0).repeat(n_samples, 1, 1)
        if self.n_contexts == 0:
            context = torch.zeros_like(condition.target)
        elif condition.context is None:
            context = torch.full_like(condition.target, -1)       # unknown context: treated as held out
        else:
            context = condition.context.long()
        draw = cpu_generator(generator)
        sample = n_samples > 1 or self.config["central"] == "sample"
        groups = torch.stack([condition.source, condition.target, context], 1)
        for source, target, ctx in torch.unique(groups, dim=0).tolist():
            if source == target:
                continue
            rows = torch.nonzero((groups == torch.tensor([source, target, ctx], device=z.device)).all(1)).flatten()
            anchors, vectors, residual = self._pool(source, target, ctx)
            nearest = self._neighbours(self.coordinates(z[rows]), anchors)        # [n, k']
            if sample:
                pick = torch.randint(nearest.shape[1], (n_samples, rows.numel()), generator=draw).to(z.device)
                moves = vectors[nearest.gather(1, pick.T).T]                       # [S, n, d]
            else:
                moves = vectors[nearest].mean(1).unsqueeze(0)                      # [1, n, d]
            moves = moves - self.complement(z[rows])   # the cell's own rest is replaced by the partner's
            if residual:    # held out: the cells' residuals average 0, their mean response is m(s, t)
                moves = moves - moves.mean(1, keepdim=True) + self.mean_response(source, target)
            out[:, rows] += moves.to(z.dtype)
        return out
