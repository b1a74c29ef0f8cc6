"""``virtualcell.select`` is the public verb (issue 20): reachable from a fresh interpreter, old paths warn."""

import subprocess
import sys

import pytest

import virtualcell as vc


def test_select_is_a_public_name_and_the_old_method_points_to_it():
    code = ("import virtualcell as vc, virtualcell.selection as s; assert 'select' in vc.__all__; "
            "assert vc.select is s.select; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    with pytest.raises(AttributeError, match=r"moved to virtualcell.select\(adata"):
        vc.PerturbationPipeline.select(None, candidates=["mean-shift"])


@pytest.mark.parametrize("old, name", [("select", "select_pipeline"), ("select_auto", "fit_auto"),
                                       ("select_candidates", "parse_candidates"), ("select_cv", "context_folds"),
                                       ("select_ensemble", "EnsemblePipeline"), ("select_spread", "spread_factors")])
def test_the_old_evaluate_paths_still_import_with_a_deprecation_warning(old, name):
    import importlib

    module = importlib.import_module(f"virtualcell.evaluate.{old}")
    with pytest.warns(DeprecationWarning, match=f"virtualcell.evaluate.{old} moved to virtualcell."):
        importlib.reload(module)
    assert hasattr(module, name)
