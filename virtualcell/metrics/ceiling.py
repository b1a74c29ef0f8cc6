"""Rows that every benchmark run writes beside the methods: the noise ceiling and interval calibration.

- :func:`noise_ceiling`: the ceiling of docs/evaluation.md, the metrics with ``P`` = a random half of ``S``
  scored against the other half (seeded); no method can be expected to beat it.
- :func:`sampled_calibration`: for a method predicting ``n_samples`` populations, ``coverage90`` and
  the interval width over the top DEGs (the rules of :mod:`.calibration`), and the same over all genes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import calibration
from .score import held_out_truth, score_prediction

__all__ = ["noise_ceiling", "split_halves", "sampled_calibration", "pipeline_calibration", "NOISE_CEILING"]

#: the label of the noise-ceiling row in every results.json
NOISE_CEILING = "noise-ceiling"


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` (n >= 4) into two halves (the first gets the odd one out)."""
    if n < 4:
        raise ValueError(f"The noise ceiling needs at least 4 real perturbed cells (2 per half); got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    half = (n + 1) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def noise_ceiling(stim: np.ndarray, ctrl: np.ndarray, genes: Sequence[str], *, degs: Sequence[str], n_top: int,
                  space: Any, seed: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics of one half of ``stim`` [s, g] against the other (C = ``ctrl``); returns (scores, half_a, half_b)."""
    first, second = split_halves(stim.shape[0], seed)
    half_a, half_b = stim[first], stim[second]
    scores = score_prediction(half_a, held_out_truth(half_b, ctrl, genes, n_top=n_top, space=space, seed=seed,
                                                     degs=degs))
    return scores, half_a, half_b


def sampled_calibration(samples: np.ndarray, stim: np.ndarray, genes: Sequence[str], degs: Sequence[str],
                        level: float = 0.9) -> dict[str, float]:
    """``coverage90`` / ``interval_width90`` over ``degs`` and ``coverage90_all`` / ``interval_width90_all``
    over every gene, from ``samples`` [S, n, g] (S predicted populations) and the real cells ``stim`` [s, g]."""
    tag = f"{round(level * 100)}"
    on_degs = calibration.calibration_report(samples, stim, genes, degs, level=level)
    on_all = calibration.interval_coverage(samples, stim, None, level)
    return {f"coverage{tag}": on_degs["coverage"], f"interval_width{tag}": on_degs["mean_width"],
            f"coverage{tag}_all": on_all["coverage"], f"interval_width{tag}_all": on_all["mean_width"]}


def pipeline_calibration(pipeline: Any, source_cells: Any, target: str, n_samples: int, seed: int,
                         stim: np.ndarray, genes: list[str], degs: list[str]) -> dict[str, float]:
    """:func:`sampled_calibration` of ``n_samples`` populations that a fitted ``pipeline`` predicts for the
    AnnData ``source_cells`` under ``target`` (:func:`.calibration.population_samples`), plus ``seconds_samples``."""
    from .calibration import population_samples

    start = time.perf_counter()
    samples = population_samples(pipeline, source_cells, target=target, n_samples=n_samples, seed=seed)
    seconds = time.perf_counter() - start
    outputs = list(map(str, pipeline.decoder.output_features or genes))
    if outputs != genes:
        samples = samples[:, :, [outputs.index(g) for g in genes]]
    scores = sampled_calibration(samples, stim, genes, degs)
    if scores["interval_width90_all"] == 0:
        warnings.warn(f"The {n_samples} sampled populations are identical (the manipulator is deterministic and "
                      "this context's response was seen in training, so no random effect is added): there is no "
                      "interval, and coverage90 is 0 by construction.", stacklevel=2)
    return {**scores, "seconds_samples": seconds}
