"""The public API as a user meets it: ``import virtualcell as vc`` in a fresh interpreter.

Each check runs in its own subprocess, because a name that is already imported hides the lazy
import path a new user takes (issue 21, item 1: ``vc.load_component`` raised RecursionError).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_fresh(code: str, tmp_path: Path) -> str:
    """Run ``code`` in a new interpreter (cwd ``tmp_path``); returns stdout, fails with its stderr."""
    env = {**os.environ, "VIRTUALCELL_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("name", ["load_component", "registry", "create"])
def test_each_lazy_name_resolves_first_in_a_fresh_interpreter(name: str, tmp_path: Path) -> None:
    out = run_fresh(f"import virtualcell as vc\nprint(type(vc.{name}).__name__)", tmp_path)
    assert out.strip()


def test_star_import_and_every_name_of_all(tmp_path: Path) -> None:
    out = run_fresh("""
        import json
        from virtualcell import *
        import virtualcell as vc
        missing = [n for n in vc.__all__ if n not in globals()]
        print(json.dumps({"all": list(vc.__all__), "missing": missing}))
    """, tmp_path)
    result = json.loads(out.splitlines()[-1])
    assert result["missing"] == []
    assert {"load_component", "create", "registry", "embed"} <= set(result["all"])


def test_registry_is_the_registry_module_however_it_is_reached(tmp_path: Path) -> None:
    out = run_fresh("""
        import virtualcell as vc
        first = vc.registry
        import virtualcell.registry.artifact
        assert vc.registry is first, (first, vc.registry)
        assert "pca" in vc.registry.names() and callable(vc.registry.register)
        print("ok")
    """, tmp_path)
    assert out.strip() == "ok"


def test_documented_entry_points_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """create -> fit -> save; then load_component, registry and embed on a tiny AnnData, as the model card says."""
    out = run_fresh("""
        import json
        import anndata as ad
        import numpy as np
        import virtualcell as vc
        from virtualcell.testing import tiny_expression

        x, genes = tiny_expression(60, 12)
        encoder = vc.create("pca", n_components=3).fit(x, genes)
        encoder.save("pca-artifact")
        loaded = vc.load_component("pca-artifact")
        assert type(loaded).__name__ == "PCAEncoder" and loaded.n_latent == 3
        adata = ad.AnnData(x.numpy().astype(np.float32))
        adata.var_names = genes
        vc.embed(adata, "pca-artifact", key_added="X_pca3")
        print(json.dumps({"shape": list(adata.obsm["X_pca3"].shape), "names": "pca" in vc.registry.names()}))
    """, tmp_path)
    assert json.loads(out.splitlines()[-1]) == {"shape": [60, 3], "names": True}


def test_select_entry_point_when_present(tmp_path: Path) -> None:
    out = run_fresh("""
        import virtualcell as vc
        print("select" in vc.__all__ and callable(vc.select))
    """, tmp_path)
    if out.strip() != "True":
        pytest.skip("virtualcell.select is not part of the public API yet")


def test_metric_functions_named_like_their_modules_are_the_functions():
    """`from virtualcell.metrics import discrimination` is callable even after its module was imported."""
    code = ("import virtualcell.metrics.discrimination\n"
            "from virtualcell.metrics import discrimination\n"
            "import numpy as np\n"
            "real = {'a': np.zeros(3), 'b': np.ones(3)}\n"
            "print(sorted(discrimination(real, real).items()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "('a', 0.0)" in out
