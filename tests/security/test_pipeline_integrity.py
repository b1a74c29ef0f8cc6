"""A pipeline's hash covers every file of every component (a Merkle record), and roles hold their kinds (issue #12).

Before: ``pipeline.json``'s hash covered only itself, so an ``encoder/`` folder copied from another
pipeline loaded without error and moved predictions; roles were not checked for their kind.
"""

import json
import shutil

import pytest
import torch

import virtualcell as vc
from virtualcell.registry import ArtifactError, TamperedArtifactError


def canonical_hash(payload):
    """sha256 of canonical JSON, as pipeline.json's own hash (written out so this file runs against any version)."""
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _resign_spec(path, edit):
    spec = json.loads((path / "pipeline.json").read_text())
    spec.pop("sha256")
    edit(spec)
    spec["sha256"] = canonical_hash(spec)
    (path / "pipeline.json").write_text(json.dumps(spec))


@pytest.fixture
def two_saved(tmp_path, fitted_pipelines):
    return fitted_pipelines[0].save(tmp_path / "a"), fitted_pipelines[1].save(tmp_path / "b")


@pytest.mark.parametrize("role", ["encoder", "manipulator", "decoder"])
def test_a_component_swapped_in_from_another_pipeline_is_refused(two_saved, role):
    a, b = two_saved
    shutil.rmtree(a / role)
    shutil.copytree(b / role, a / role)
    with pytest.raises(TamperedArtifactError, match=f"the {role} of the pipeline .* is not the component it was saved with"):
        vc.PerturbationPipeline.load(a)


def test_a_file_added_to_a_component_folder_is_refused(two_saved):
    a, _ = two_saved
    (a / "encoder" / "extra.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(TamperedArtifactError, match=r"added: \['extra.safetensors'\]"):
        vc.PerturbationPipeline.load(a)


def test_a_component_readme_edit_is_caught(two_saved):
    a, _ = two_saved
    (a / "decoder" / "README.md").write_text("# trust me\n")
    with pytest.raises(TamperedArtifactError, match="decoder/README.md was modified"):
        vc.PerturbationPipeline.load(a)


def test_the_merkle_record_is_file_to_component_to_pipeline(two_saved):
    from virtualcell.registry.hashing import content_hash, file_hashes
    from virtualcell.registry.merkle import top_hash

    a, b = two_saved
    spec = json.loads((a / "pipeline.json").read_text())
    record = spec["merkle"]
    for role in ("encoder", "manipulator", "decoder"):
        assert record["components"][role]["files"] == file_hashes(a / role)
        assert record["components"][role]["hash"] == content_hash(file_hashes(a / role))
    assert record["hash"] == top_hash({r: c["hash"] for r, c in record["components"].items()}, record["files"])
    assert record["hash"] != json.loads((b / "pipeline.json").read_text())["merkle"]["hash"]
    assert spec["kinds"] == {"encoder": "encoder", "manipulator": "manipulator", "decoder": "decoder"}


def test_roles_swapped_with_a_re_signed_record_fail_the_kind_check(two_saved):
    """Even a hostile author who rewrites the record cannot put a manipulator in the encoder role."""
    a, _ = two_saved
    (a / "encoder").rename(a / "tmp")
    (a / "manipulator").rename(a / "encoder")
    (a / "tmp").rename(a / "manipulator")

    def swap(spec):
        c = spec["merkle"]["components"]
        c["encoder"], c["manipulator"] = c["manipulator"], c["encoder"]
        from virtualcell.registry.merkle import top_hash

        spec["merkle"]["hash"] = top_hash({r: v["hash"] for r, v in c.items()}, spec["merkle"]["files"])

    _resign_spec(a, swap)
    with pytest.raises(TamperedArtifactError, match="The encoder of .* holds a manipulator"):
        vc.PerturbationPipeline.load(a)
    _resign_spec(a, lambda spec: spec["kinds"].update(encoder="manipulator", manipulator="encoder"))
    with pytest.raises(ArtifactError, match="the encoder role holds a component of kind manipulator"):
        vc.PerturbationPipeline.load(a)


def test_unknown_roles_and_unsafe_folders_are_refused(two_saved):
    a, _ = two_saved
    _resign_spec(a, lambda spec: spec["components"].update(encoder="../b/encoder"))
    with pytest.raises(TamperedArtifactError, match="Unsafe component folder"):
        vc.PerturbationPipeline.load(a)


def test_a_clean_pipeline_still_round_trips(two_saved, fitted_pipelines):
    from virtualcell.datasets import simulate_perturbation

    a, _ = two_saved
    ctrl = simulate_perturbation(n_cells_per_group=10, n_genes=30, n_cell_types=2, seed=5)
    ctrl = ctrl[ctrl.obs["condition"] == "control"].copy()
    loaded = vc.PerturbationPipeline.load(a)
    torch.testing.assert_close(torch.as_tensor(loaded.predict(ctrl, target="stimulated").X),
                               torch.as_tensor(fitted_pipelines[0].predict(ctrl, target="stimulated").X))


def test_format_1_pipelines_still_load_with_a_warning(two_saved):
    a, _ = two_saved

    def downgrade(spec):
        spec["format_version"] = 1
        spec.pop("merkle"), spec.pop("kinds")

    _resign_spec(a, downgrade)
    with pytest.warns(UserWarning, match="format 1"):
        vc.PerturbationPipeline.load(a)


@pytest.mark.parametrize("role", ["../evil", "/tmp/evil", "a/../../evil", "..", "nul\0"], ids=repr)
def test_pipeline_roles_cannot_escape_the_folder(tmp_path, encoders, role):
    """Before: a role named '../evil' saved its component next to the pipeline folder."""
    from virtualcell.pipelines.pipeline import Pipeline

    with pytest.raises(ValueError, match="Unsafe pipeline role"):
        Pipeline(**{role: encoders[0]}).save(tmp_path / "box" / "pipe")
    assert sorted(p.name for p in tmp_path.rglob("*")) in ([], ["box"])


def test_a_pipeline_with_a_swapped_component_cannot_be_published(two_saved, tmp_path):
    from virtualcell.registry.publish import list_published, publish

    a, b = two_saved
    shutil.rmtree(a / "decoder")
    shutil.copytree(b / "decoder", a / "decoder")
    with pytest.raises(TamperedArtifactError, match="decoder"):
        publish(a, str(tmp_path / "hub"), "pipe", "1.0")
    assert list_published(str(tmp_path / "hub")) == {}
    publish(b, str(tmp_path / "hub"), "pipe", "1.0")
