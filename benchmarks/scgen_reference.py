"""The original scGen's figures on the Kang scGen set, OOS (``docs/evaluation.md``, "Reference figures").

scgen 2.1.0 (scvi-tools 0.19, its defaults) measured on a 2-core machine like ours by the protocol's
authors and copied from docs/evaluation.md's table, which is the reference issue #11's goal names; these
are not our runs' numbers, which come from ``benchmarks/results/``.
"""

#: cell type -> (r2_mean_all, r2_mean_top100, pearson_delta)
SCGEN_REFERENCE: dict[str, tuple[float, float, float]] = {
    "CD4T": (0.941, 0.923, 0.786), "B": (0.847, 0.872, 0.771), "CD14+Mono": (0.912, 0.907, 0.901),
    "CD8T": (0.860, 0.770, 0.754), "Dendritic": (0.918, 0.913, 0.853), "FCGR3A+Mono": (0.913, 0.908, 0.850),
    "NK": (0.791, 0.791, 0.707),
}
#: the metrics of the reference, in the tuples' order
SCGEN_METRICS = ("r2_mean_all", "r2_mean_top100", "pearson_delta")
