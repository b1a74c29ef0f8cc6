"""Public dataset API: simulators with known ground truth and loaders for public data.

>>> from virtualcell.datasets import simulate_perturbation, kang2018
>>> adata = simulate_perturbation(seed=0)          # synthetic, uns['ground_truth'] holds the truth
>>> pbmc = kang2018()                                # doctest: +SKIP  (scGen's Kang 2018 set)
"""

from virtualcell.data.public import kang2018, papalexi2021
from virtualcell.data.simulate import ground_truth_mean, simulate_perturbation, simulate_time_course

__all__ = [
    "simulate_perturbation",
    "simulate_time_course",
    "ground_truth_mean",
    "kang2018",
    "papalexi2021",
]
