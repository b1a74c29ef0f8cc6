"""A plot of spatial domains on the cells' coordinates, one panel per section (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np

__all__ = ["plot_spatial_domains"]


def plot_spatial_domains(adata: ad.AnnData, *, key: str = "domain", spatial_key: str = "spatial",
                         section_key: str | None = None, path: str | Path | None = None,
                         title: str | None = None, point_size: float | None = None):
    """Scatter the cells at ``obsm[spatial_key]`` coloured by ``obs[key]``; one panel per section.

    Returns the matplotlib ``Figure``; with ``path`` it is also saved there (PNG, PDF, SVG by suffix).
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if key not in adata.obs:
        raise KeyError(f"obs[{key!r}] not found; run spatial_domains(..., key_added={key!r}) first. "
                       f"obs has {list(adata.obs.columns)}.")
    if spatial_key not in adata.obsm:
        raise KeyError(f"obsm[{spatial_key!r}] not found; obsm has {sorted(adata.obsm)}.")
    coords = np.asarray(adata.obsm[spatial_key])[:, :2]
    labels = adata.obs[key].astype(str).to_numpy()
    names = list(adata.obs[key].cat.categories) if hasattr(adata.obs[key], "cat") else sorted(set(labels))
    names = [str(n) for n in names]
    sections = (["all"] if section_key is None else sorted(adata.obs[section_key].astype(str).unique()))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    colours = {name: cmap(i % cmap.N) for i, name in enumerate(names)}
    size = point_size if point_size is not None else max(0.5, min(20.0, 20000.0 / max(adata.n_obs, 1)))
    fig, axes = plt.subplots(1, len(sections), figsize=(5.0 * len(sections) + 1.5, 5.0), squeeze=False)
    for ax, section in zip(axes[0], sections):
        rows = np.ones(adata.n_obs, bool) if section_key is None else \
            (adata.obs[section_key].astype(str).to_numpy() == section)
        for name in names:
            pick = rows & (labels == name)
            ax.scatter(coords[pick, 0], coords[pick, 1], s=size, color=colours[name], label=name, linewidths=0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(section if section_key is not None else (title or key))
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=max(1.0, 6.0 / size ** 0.5),
                       frameon=False, title=key)
    if title and section_key is not None:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
