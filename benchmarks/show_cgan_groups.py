"""The cgan manipulator's k-means groups (OOD: no cell-type labels) against the withheld cell types.

    python benchmarks/show_cgan_groups.py --held-out B                    # Kang full, the fit's own rule
    python benchmarks/show_cgan_groups.py --held-out B --reference none   # k-means on every cell (before)
    python benchmarks/show_cgan_groups.py --data ../shared/data/kang_pbmc_scgen_valid.h5ad --preprocess none \
        --context-key cell_type --held-out FCGR3A+Mono

Builds the OOD training set of one held-out type (its stimulated cells removed), groups the cells
as ``CGANManipulator.fit`` does (``pseudo_contexts`` on the GAN features), and prints cells per
(group, cell type, condition), with each group's stimulated share and whether ``paired_groups``
lets it stand for the stimulated condition. Cell types are used only for this table.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch


def main() -> None:
    from virtualcell.evaluate.cells import prepare_cells
    from virtualcell.pipelines.splits import oos_tasks
    from virtualcell.instruments.manipulators.cgan import CGANManipulator
    from virtualcell.nn.group_means import group_means
    from virtualcell.nn.layers import paired_groups, pseudo_contexts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/kang_ifnb_full.h5ad")
    parser.add_argument("--preprocess", default="kang-full")
    parser.add_argument("--context-key", default="cell_type_coarse")
    parser.add_argument("--held-out", required=True)
    parser.add_argument("--groups", type=int, default=10, help="match_groups")
    parser.add_argument("--reference", default="0", help="condition id the centroids are fitted on; 'none': all cells")
    parser.add_argument("--min-share", type=float, default=0.5, help="min_group_share")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import anndata as ad

    adata = ad.read_h5ad(args.data)
    x, _, _ = prepare_cells(adata, None if args.preprocess == "none" else args.preprocess)
    task = oos_tasks(adata.obs, context_key=args.context_key, contexts=[args.held_out], min_cells=2)[0]
    obs = adata.obs.loc[task.train]
    z = torch.from_numpy(x[task.train]).float()
    condition = torch.from_numpy((obs["condition"].astype(str) == "stimulated").to_numpy().astype(np.int64))
    model = CGANManipulator()
    model.n_features, model.n_conditions, model.covariate_names, model.output_mode = z.shape[1], 2, [], "affine-relu"
    model._build()
    model.network.prepare(z)
    reference = None if args.reference == "none" else int(args.reference)
    groups = pseudo_contexts(z.index_select(1, model.network.gan_index), condition, args.groups, seed=args.seed,
                             reference=reference)
    table = pd.crosstab(groups.numpy(), [obs[args.context_key].astype(str).to_numpy(),
                                         obs["condition"].astype(str).to_numpy()])
    _, counts = group_means(z[:, :1], condition, groups, 2, int(groups.max()) + 1)
    table[("stimulated", "share")] = (counts[:, 1] / counts.sum(1).clamp_min(1)).numpy().round(3)
    table[("stimulated", "paired")] = paired_groups(counts, min_cells=5, min_share=args.min_share)[:, 1].numpy()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(f"held out: {args.held_out} stimulated; reference={reference}; {args.groups} groups; "
          f"stimulated share of all cells {float(condition.float().mean()):.3f}")
    print(table.rename_axis("group"))


if __name__ == "__main__":
    main()
