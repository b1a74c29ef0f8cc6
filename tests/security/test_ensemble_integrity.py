"""An ensemble is saved in the one pipeline format: its members are parts under the Merkle record (issue 21 item 24).

Before: ``select``'s most common result, an ensemble, hashed only its own ``pipeline.json``; replacing
``members/0/`` with another pipeline's folder loaded without a word and moved predictions by 0.80, and
``publish`` sent an ensemble without checking it.
"""

import json
import shutil
import warnings

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.registry import ArtifactError, TamperedArtifactError


def canonical_hash(payload):
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture(scope="module")
def control():
    from virtualcell.datasets import simulate_perturbation

    adata = simulate_perturbation(n_cells_per_group=10, n_genes=30, n_cell_types=2, seed=5)
    return adata[adata.obs["condition"] == "control"].copy()


@pytest.fixture
def saved(tmp_path, fitted_pipelines):
    """A saved two-member ensemble, and a third pipeline's folder (fitted on other data) to swap in."""
    from virtualcell.pipelines import EnsemblePipeline

    a, b = fitted_pipelines
    ensemble = EnsemblePipeline([a, b], [0.5, 0.5], ["a", "b"])
    ensemble.save(tmp_path / "ens")
    return tmp_path / "ens", b.save(tmp_path / "other"), ensemble


def member_folders(root):
    """The members' pipeline folders, member 0 first (whatever the layout: members/<i>/ or member-<i>/)."""
    return sorted(p.parent for p in root.rglob("pipeline.json") if p.parent != root)


def test_a_member_swapped_in_from_another_pipeline_is_refused(saved, control):
    root, other, ensemble = saved
    first = member_folders(root)[0]
    shutil.rmtree(first)
    shutil.copytree(other, first)
    with pytest.raises(TamperedArtifactError, match=r"member-0 of the pipeline .* is not the component it was saved"):
        vc.load_pipeline(root)
    assert np.isfinite(ensemble.predict(control, target="stimulated").X).all()   # the ensemble in memory is fine


def test_an_edited_file_deep_in_a_member_is_refused(saved):
    root, _, _ = saved
    (member_folders(root)[1] / "decoder" / "README.md").write_text("# trust me\n")
    with pytest.raises(TamperedArtifactError, match="member-1/decoder/README.md was modified"):
        vc.load_pipeline(root)


def test_the_ensemble_record_is_the_pipeline_format(saved, control):
    from virtualcell.registry.hashing import content_hash, file_hashes

    root, _, ensemble = saved
    spec = json.loads((root / "pipeline.json").read_text())
    assert spec["components"] == {"member-0": "member-0", "member-1": "member-1"}
    assert spec["kinds"] == {"member-0": "pipeline", "member-1": "pipeline"}
    assert spec["merkle"]["components"]["member-0"]["hash"] == content_hash(file_hashes(root / "member-0"))
    from virtualcell.pipelines import EnsemblePipeline

    loaded = vc.load_pipeline(root)
    assert isinstance(loaded, EnsemblePipeline) and loaded.labels == ["a", "b"]
    np.testing.assert_allclose(loaded.predict(control, target="stimulated").X,
                               ensemble.predict(control, target="stimulated").X, rtol=1e-6)


def test_a_re_signed_record_cannot_make_a_component_a_member(saved):
    root, _, _ = saved
    spec = json.loads((root / "pipeline.json").read_text())
    spec.pop("sha256")
    spec["kinds"]["member-0"] = "encoder"
    spec["sha256"] = canonical_hash(spec)
    (root / "pipeline.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match="parts are pipelines named member-<i>"):
        vc.load_pipeline(root)


def test_an_ensemble_with_a_swapped_member_cannot_be_published(saved, tmp_path):
    from virtualcell.registry.publish import list_published, publish, pull

    root, other, _ = saved
    hub = str(tmp_path / "hub")
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    first = member_folders(root)[0]
    shutil.rmtree(first)
    shutil.copytree(other, first)
    with pytest.raises(TamperedArtifactError, match="member-0"):
        publish(root, hub, "ens", "1.0")
    assert list_published(hub) == {}
    publish(clean, hub, "ens", "1.0")
    pulled = vc.load_pipeline(pull(hub, "ens", "1.0", cache_dir=tmp_path / "cache"))
    assert pulled.labels == ["a", "b"] and len(pulled.members) == 2


def _legacy(root, ensemble):
    """Rewrite a saved ensemble in the previous layout (members/<i>/, a self-hash only)."""
    (root / "members").mkdir()
    for i in range(2):
        (root / f"member-{i}").rename(root / "members" / str(i))
    spec = {"format_version": 1, "class": "EnsemblePipeline", "members": ["members/0", "members/1"],
            "labels": ensemble.labels, "weights": ensemble.weights.tolist(), "metadata": ensemble.metadata,
            "virtualcell_version": "0.0.0"}
    spec["sha256"] = canonical_hash(spec)
    (root / "pipeline.json").write_text(json.dumps(spec))


def test_an_ensemble_of_the_previous_version_loads_with_a_warning_to_re_save(saved, control, tmp_path):
    from virtualcell.registry.publish import publish

    root, _, ensemble = saved
    _legacy(root, ensemble)
    with pytest.warns(UserWarning, match="older virtualcell.*Save it again"):
        old = vc.load_pipeline(root)
    expected = ensemble.predict(control, target="stimulated").X
    np.testing.assert_allclose(old.predict(control, target="stimulated").X, expected, rtol=1e-6)
    with pytest.raises(ArtifactError, match="older virtualcell.*save it again"):
        publish(root, str(tmp_path / "hub"), "ens", "1.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old.save(tmp_path / "upgraded")
    assert json.loads((tmp_path / "upgraded" / "pipeline.json").read_text())["merkle"]
    np.testing.assert_allclose(vc.load_pipeline(tmp_path / "upgraded").predict(control, target="stimulated").X,
                               expected, rtol=1e-6)
    spec = json.loads((root / "pipeline.json").read_text())
    spec["weights"] = [0.9, 0.1]
    (root / "pipeline.json").write_text(json.dumps(spec))
    with pytest.raises(TamperedArtifactError, match="hash mismatch"):
        vc.load_pipeline(root)
