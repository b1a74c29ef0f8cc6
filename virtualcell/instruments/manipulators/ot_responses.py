"""Per-cell responses from optimal transport between the cells of two conditions (POT).

Within one context (cell type), the cells ``a`` [n, d] of one condition and ``b`` [m, d] of
another are coupled by the optimal-transport plan ``P`` [n, m] with uniform marginals and squared
Euclidean cost. Each cell's *response* is its barycentric partner minus itself:
``r_i = (P_i / sum_j P_ij) @ b - a_i`` (scPRAM, CellOT's barycentric map). The exact plan
(``ot.emd``) is sparse (at most ``n + m - 1`` non-zeros), so a cell's partner is one or two real
cells and the responses keep the cell-to-cell spread; the entropic plan (``ot.sinkhorn``) blurs
them by ``epsilon``. One plan serves both directions (``P.T`` couples ``b`` to ``a``).

POT is imported inside :func:`ot_plan` (``pip install 'virtualcell[ot]'``).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ot_plan", "barycentric_responses", "subsample", "SOLVERS"]

SOLVERS = ("emd", "sinkhorn")


def ot_plan(a: np.ndarray, b: np.ndarray, *, solver: str = "emd", epsilon: float = 0.05) -> np.ndarray:
    """The optimal-transport plan [n, m] (float64, sums to 1) between ``a`` [n, d] and ``b`` [m, d].

    ``solver="emd"`` is exact (network simplex); ``"sinkhorn"`` is entropic, with regularisation
    ``epsilon`` times the mean squared distance (so ``epsilon`` does not depend on the scale of ``z``).
    """
    try:
        import ot
    except ImportError:
        raise ImportError("The optimal-transport manipulator needs POT: pip install 'virtualcell[ot]' "
                          "(or pip install pot).") from None
    if solver not in SOLVERS:
        raise ValueError(f"Unknown OT solver {solver!r}; choose one of {SOLVERS}.")
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    cost = ot.dist(a, b, metric="sqeuclidean")
    scale = float(cost.mean()) or 1.0
    wa, wb = np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b))
    if solver == "emd":
        return ot.emd(wa, wb, cost / scale, numItermax=max(100_000, 50 * len(a) * len(b)))
    return ot.sinkhorn(wa, wb, cost / scale, reg=epsilon, method="sinkhorn_log", numItermax=2000, stopThr=1e-7)


def barycentric_responses(a: torch.Tensor, b: torch.Tensor, plan: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Responses ``a -> b`` [n, d] and ``b -> a`` [m, d] from one plan [n, m] (barycentric partner minus self)."""
    p = torch.as_tensor(plan, dtype=torch.float64, device=a.device)
    a64, b64 = a.double(), b.double()
    forward = (p / p.sum(1, keepdim=True).clamp_min(1e-300)) @ b64 - a64
    backward = (p.T / p.sum(0)[:, None].clamp_min(1e-300)) @ a64 - b64
    return forward.to(a.dtype), backward.to(a.dtype)


def subsample(rows: torch.Tensor, cap: int, rng: np.random.Generator) -> torch.Tensor:
    """``rows`` [n] itself when ``n <= cap``, else ``cap`` of them drawn without replacement (kept sorted)."""
    if rows.numel() <= cap:
        return rows
    pick = np.sort(rng.choice(rows.numel(), size=cap, replace=False))
    return rows[torch.as_tensor(pick, device=rows.device)]
