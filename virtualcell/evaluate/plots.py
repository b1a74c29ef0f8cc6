"""Evaluation plots (scGen-style mean scatter, metric bar charts, interval coverage curves).

Figures are built with matplotlib's object API on an Agg canvas: no pyplot, no global backend
change, nothing is ever shown; pass ``path`` to save a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics.inputs import check_gene_names, gene_positions, matrices
from ..metrics.perturbation import pearson

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["mean_scatter", "metrics_bar", "coverage_curves"]


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=150, format="png")


def mean_scatter(
    pred: Any,
    real: Any,
    genes: Sequence[str],
    *,
    degs: Sequence[str] | None = None,
    highlight: Sequence[str] = (),
    title: str = "",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """scGen-style ``reg_mean_plot``: per-gene mean of real (x) vs predicted (y) cells.

    pred ``[p, g]``, real ``[r, g]``, genes ``g`` names. ``degs`` (e.g. the top-100 DEGs) are drawn
    in a distinct colour and the first 10 are labelled, as are the genes in ``highlight``; the
    title carries R² over all genes and over ``degs``. Saves a PNG to ``path`` if given.
    """
    pred, real = matrices(pred=pred, real=real)
    names = check_gene_names(genes, pred.shape[1])
    x = real.mean(axis=0)
    y = pred.mean(axis=0)

    fig = _new_figure((5.5, 5.0))
    ax = fig.add_subplot()
    ax.scatter(x, y, s=6, c="0.55", alpha=0.6, linewidths=0, label="all genes")
    lo = float(min(x.min(), y.min()))
    hi = float(max(x.max(), y.max()))
    if x.size > 1 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        ax.plot([lo, hi], [slope * lo + intercept, slope * hi + intercept], lw=1.0, c="tab:blue",
                label="linear fit")
    ax.plot([lo, hi], [lo, hi], ls="--", lw=0.8, c="0.2", label="y = x")

    stats = f"R² all genes = {pearson(x, y) ** 2:.3f}"
    labelled: list[int] = []
    if degs:
        top = gene_positions(names, list(degs))
        ax.scatter(x[top], y[top], s=14, c="tab:red", linewidths=0, label=f"top {len(top)} DEGs")
        stats += f", top {len(top)} DEGs = {pearson(x[top], y[top]) ** 2:.3f}"
        labelled.extend(int(i) for i in top[:10])
    if highlight:
        extra = gene_positions(names, list(highlight), what="highlight")
        ax.scatter(x[extra], y[extra], s=22, facecolors="none", edgecolors="black", linewidths=0.8)
        labelled.extend(int(i) for i in extra if int(i) not in labelled)
    for i in labelled:
        ax.annotate(names[i], (x[i], y[i]), xytext=(3, 3), textcoords="offset points", fontsize=7)

    ax.set_xlabel("mean expression, real")
    ax.set_ylabel("mean expression, predicted")
    ax.set_title(f"{title}\n{stats}" if title else stats, fontsize=10)
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return fig


def metrics_bar(
    table: Mapping[str, Mapping[str, float | Mapping[str, float]]],
    metric: str,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Grouped bar chart of one metric: contexts on the x axis, one bar per method.

    ``table[method][context]`` is either the value of ``metric`` or a dict of metrics from which
    ``metric`` is taken. Missing values are left blank. Saves a PNG to ``path`` if given.
    """
    if not table:
        raise ValueError("table is empty")
    methods = list(table)
    contexts: list[str] = []
    for per_ctx in table.values():
        contexts.extend(c for c in per_ctx if c not in contexts)
    if not contexts:
        raise ValueError("table has no contexts")

    def value(method: str, context: str) -> float:
        v = table[method].get(context)
        if isinstance(v, Mapping):
            v = v.get(metric)
        return float("nan") if v is None else float(v)

    fig = _new_figure((max(5.0, 0.9 * len(contexts) * max(1, len(methods)) ** 0.5 + 3.0), 4.0))
    ax = fig.add_subplot()
    xs = np.arange(len(contexts))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        vals = [value(method, c) for c in contexts]
        ax.bar(xs + (k - (len(methods) - 1) / 2) * width, vals, width, label=method)
    if metric.startswith("edistance_ratio"):
        ax.axhline(1.0, ls="--", lw=0.8, c="0.3")
    ax.set_xticks(xs)
    ax.set_xticklabels(contexts, rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    _save(fig, path)
    return fig


def coverage_curves(
    coverage: Mapping[str, Mapping[float, float]],
    path: str | os.PathLike[str] | None = None,
    band: tuple[float, float] | None = (0.8, 0.97),
    title: str = "Coverage of the predicted interval of the mean",
) -> Figure:
    """Reliability plot: nominal level (x) against observed coverage (y), one line per context.

    ``coverage[context][level]`` is the fraction of genes whose real mean fell in the predicted
    ``level`` interval. The diagonal is perfect calibration; ``band`` marks a target range at 0.9
    (None: no band). Saves a PNG to ``path`` if given.
    """
    if not coverage:
        raise ValueError("coverage is empty")
    fig = _new_figure((5.5, 4.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, c="0.3", label="calibrated")
    if band is not None:
        ax.vlines(0.9, band[0], band[1], colors="0.75", lw=6, label=f"goal at 0.9: {band[0]:g}-{band[1]:g}")
    for context, curve in coverage.items():
        levels = sorted(float(k) for k in curve)
        ax.plot(levels, [curve[k] for k in sorted(curve, key=float)], marker="o", ms=3, lw=1, label=context)
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("nominal level of the interval")
    ax.set_ylabel("observed coverage")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    _save(fig, path)
    return fig
