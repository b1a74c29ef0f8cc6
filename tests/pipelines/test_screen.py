"""In-silico screen: every listed knockout predicted from the same control cells, ranked, written as a TSV."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from virtualcell import PerturbationPipeline
from virtualcell.cli import app
from virtualcell.data.checks import DataError
from virtualcell.data.simulate_screen import simulate_screen
from virtualcell.pipelines.screen import SCREEN_COLUMNS, screen


@pytest.fixture(scope="module")
def fitted():
    adata = simulate_screen(n_genes=30, n_modules=3, n_targets=5, n_control=80, n_per_target=20, seed=6)
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator={"name": "gene-network", "epochs": 40})
    pipe.fit(adata, progress=False)
    return adata, pipe


def test_screen_ranks_seen_and_unseen_targets(fitted):
    adata, pipe = fitted
    seen = adata.uns["simulate_screen"]["targets"]
    unseen = [g for g in adata.var_names if g not in seen][:3]
    ctrl = adata[adata.obs.condition == "control"]
    table = screen(pipe, ctrl, seen + unseen, progress=False)
    assert list(table.columns) == list(SCREEN_COLUMNS) and len(table) == 8
    assert list(table["rank_effect"]) == list(range(1, 9))
    assert table["effect_size"].is_monotonic_decreasing
    assert table.set_index("target").loc[seen, "seen"].all() and not table.set_index("target").loc[unseen, "seen"].any()
    assert table["uncertainty"].isna().all()                      # deterministic: no sampled uncertainty
    true = np.linalg.norm(adata.uns["simulate_screen"]["responses"], axis=1)
    predicted = table.set_index("target").loc[seen, "effect_size"].to_numpy()
    assert np.corrcoef(true, predicted)[0, 1] > 0.8               # seen targets: their observed response sizes
    assert table["top_genes"].str.count(":").eq(5).all()


def test_bad_targets_are_named(fitted):
    adata, pipe = fitted
    ctrl = adata[adata.obs.condition == "control"]
    with pytest.raises(DataError, match=r"cannot predict 1 target\(s\) \['NOT_A_GENE'\].*30 genes"):
        screen(pipe, ctrl, ["G01", "NOT_A_GENE"], progress=False)
    with pytest.raises(DataError, match="more than once"):
        screen(pipe, ctrl, ["G01", "G01"], progress=False)
    with pytest.raises(DataError, match="control label"):
        screen(pipe, ctrl, ["control"], progress=False)


def test_cli_writes_a_ranked_tsv_and_never_over_an_input(fitted, tmp_path):
    adata, pipe = fitted
    pipe.save(tmp_path / "model")
    data = tmp_path / "cells.h5ad"
    adata.copy().write_h5ad(data)
    out = tmp_path / "ranked.tsv"
    runner = CliRunner()
    result = runner.invoke(app, ["screen", "--pipeline", str(tmp_path / "model"), "--data", str(data),
                                 "--cells", "condition=control", "--targets", "G01,G02", "--targets", "G03",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, sep="\t")
    assert sorted(table["target"]) == ["G01", "G02", "G03"] and table["rank_effect"].tolist() == [1, 2, 3]
    result = runner.invoke(app, ["screen", "--pipeline", str(tmp_path / "model"), "--data", str(data),
                                 "--targets", "G01", "--out", str(data)])
    assert result.exit_code != 0 and "never writes over its input" in result.output
    result = runner.invoke(app, ["screen", "--pipeline", str(tmp_path / "model"), "--data", str(data),
                                 "--targets", "FOO", "--out", str(tmp_path / "x.tsv")])
    assert result.exit_code != 0 and "FOO" in result.output and not (tmp_path / "x.tsv").exists()


def test_uncertainty_and_its_rank_are_empty_together(fitted, tmp_path):
    """Issue 21 item 7: rank_uncertainty was filled (1, 2, ...) while uncertainty was empty."""
    adata, pipe = fitted
    table = screen(pipe, adata[adata.obs.condition == "control"], ["G01", "G02"], progress=False)
    assert table["uncertainty"].isna().all() and table["rank_uncertainty"].isna().all()
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    again = pd.read_csv(tmp_path / "t.tsv", sep="\t")
    assert again["uncertainty"].isna().all() and again["rank_uncertainty"].isna().all()


def test_screen_asks_the_manipulator_hooks_not_getattr(fitted):
    """screen reads coverage() and was_seen() declared on the Manipulator base (defaults: None)."""
    from virtualcell.component import Manipulator
    from virtualcell.instruments.manipulators.mean_shift import MeanShiftManipulator

    assert Manipulator.coverage(MeanShiftManipulator()) is None
    assert MeanShiftManipulator().was_seen(1) is None
    adata, pipe = fitted
    assert "perturbations seen in training" in pipe.manipulator.coverage()
    assert pipe.manipulator.was_seen(pipe.conditions.id(adata.uns["simulate_screen"]["targets"][0])) is True

    class Covering(MeanShiftManipulator):
        def coverage(self) -> str:
            return "every gene of panel P"

    shift = PerturbationPipeline(encoder="identity-encoder", manipulator=Covering())
    shift.fit(adata, progress=False)
    ctrl = adata[adata.obs.condition == "control"]
    with pytest.raises(DataError, match="every gene of panel P"):
        screen(shift, ctrl, ["NOT_A_GENE"], progress=False)
    table = screen(shift, ctrl, adata.uns["simulate_screen"]["targets"][:2], progress=False)
    assert table["seen"].isna().all()                             # not recorded by this manipulator
