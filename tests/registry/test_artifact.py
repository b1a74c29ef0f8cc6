"""The artifact format: no pickle, checksums, registry-only class resolution, atomic writes."""

import json

import pytest
import torch

from virtualcell.registry import ArtifactError, TamperedArtifactError, UnknownComponentError, load_component
from virtualcell.registry.hashing import canonical_hash
from virtualcell.representations.pca import PCAEncoder
from virtualcell.testing import tiny_expression


@pytest.fixture
def saved(tmp_path):
    x, genes = tiny_expression()
    encoder = PCAEncoder(n_components=5).fit(x, genes)
    return encoder.save(tmp_path / "pca"), encoder, x


def _rewrite_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.pop("config_sha256")
    config.update(changes)
    config["config_sha256"] = canonical_hash(config)
    (path / "config.json").write_text(json.dumps(config))


def test_layout_and_round_trip(saved):
    path, encoder, x = saved
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "features.txt", "weights.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["component"] == "pca" and config["init"] == {"n_components": 5} and config["package"] == "virtualcell"
    assert (path / "README.md").read_text().startswith("---\nlibrary_name: \"virtualcell\"")
    loaded = load_component(path)
    torch.testing.assert_close(loaded.encode(x), encoder.encode(x))
    assert loaded.input_features == encoder.input_features


def test_no_pickle_anywhere(saved):
    path, _, _ = saved
    for file in path.iterdir():
        assert not file.read_bytes().startswith(b"\x80"), f"{file.name} looks like a pickle"


def test_edited_weights_are_caught(saved):
    path, _, _ = saved
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(TamperedArtifactError, match="weights.safetensors was modified"):
        load_component(path)


def test_edited_config_is_caught(saved):
    path, _, _ = saved
    text = (path / "config.json").read_text().replace('"n_components": 5', '"n_components": 6')
    (path / "config.json").write_text(text)
    with pytest.raises(TamperedArtifactError, match="config.json was edited"):
        load_component(path)


def test_edited_features_are_caught(saved):
    path, _, _ = saved
    (path / "features.txt").write_text((path / "features.txt").read_text().replace("gene_0\n", "GENE_0\n"))
    with pytest.raises(TamperedArtifactError, match="features.txt was modified"):
        load_component(path)


def test_missing_file_is_caught(saved):
    path, _, _ = saved
    (path / "weights.safetensors").unlink()
    with pytest.raises(TamperedArtifactError, match="missing weights.safetensors"):
        load_component(path)


def test_unknown_component_is_a_clear_error(saved):
    path, _, _ = saved
    _rewrite_config(path, component="os-system", package="evil-package")
    with pytest.raises(UnknownComponentError, match="'os-system' of package 'evil-package'.*not installed.*Known components"):
        load_component(path)


def test_newer_format_asks_to_upgrade(saved):
    path, _, _ = saved
    _rewrite_config(path, format_version=99)
    with pytest.raises(ArtifactError, match="Upgrade virtualcell"):
        load_component(path)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        load_component(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="has no config.json"):
        load_component(tmp_path / "empty")


def test_save_refuses_to_overwrite_and_failed_save_keeps_the_old_artifact(saved, monkeypatch):
    path, encoder, x = saved
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        encoder.save(path)
    monkeypatch.setattr(PCAEncoder, "fitted_state", lambda self: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        encoder.save(path, overwrite=True)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_unfitted_component_cannot_be_saved(tmp_path):
    from virtualcell import NotFittedError

    with pytest.raises(NotFittedError, match="fit"):
        PCAEncoder().save(tmp_path / "x")


def test_model_card_fields(tmp_path):
    from virtualcell.registry.model_card import parse_front_matter

    x, genes = tiny_expression()
    path = PCAEncoder(n_components=3).fit(x, genes).save(tmp_path / "p", card={"organism": "human", "tissues": ["blood"]})
    front = parse_front_matter((path / "README.md").read_text())
    assert front["organism"] == "human" and front["tissues"] == ["blood"] and front["n_features"] == len(genes)


def test_the_artifact_format_imports_no_component_code():
    """Old debt (docs/architecture.md): component.py -> registry -> registry/registry.py -> component.py.

    The format modules receive names and classes from the registry instead of importing it.
    """
    import ast
    from pathlib import Path

    import virtualcell.registry as package

    folder = Path(package.__file__).parent
    for module in ("artifact", "atomic", "hashing", "limits", "merkle", "names", "errors", "faults", "model_card"):
        tree = ast.parse((folder / f"{module}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"registry", "..component", "component"}, (module, imported)
        assert not any(m.startswith(("virtualcell.component", "virtualcell.registry.registry")) for m in imported), module


def test_no_registry_module_imports_component_anywhere():
    """registry/ sits below component.py: not at module level, not under TYPE_CHECKING, not in a function."""
    import ast
    from pathlib import Path

    import virtualcell.registry as package

    for file in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                above = node.level >= 2 or module.startswith("virtualcell")   # outside registry/
                bad = above and (module.endswith("component") or any(a.name == "component" for a in node.names))
            elif isinstance(node, ast.Import):
                bad = any(a.name == "virtualcell.component" for a in node.names)
            else:
                continue
            assert not bad, f"{file.name}:{node.lineno} imports virtualcell.component"


def _reseal_weights(path, change):
    """Alter weights.safetensors with ``change(tensors)`` and recompute every checksum, as an attacker could."""
    from safetensors.torch import load_file, save_file

    from virtualcell.registry.hashing import sha256_file

    tensors = load_file(str(path / "weights.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "weights.safetensors"))
    config = json.loads((path / "config.json").read_text())
    config["checksums"]["weights.safetensors"] = sha256_file(path / "weights.safetensors")
    config.pop("config_sha256")
    config["config_sha256"] = canonical_hash(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_resealed_artifact_with_nonfinite_weights_is_refused(saved, bad):
    path, _, _ = saved
    _reseal_weights(path, lambda t: t["components"].__setitem__((0, 0), bad))
    with pytest.raises(TamperedArtifactError, match="'components' holds NaN or infinite.*Re-pull"):
        load_component(path)


def test_nan_rows_marking_conditions_without_cells_still_load(tmp_path):
    """latent-arithmetic marks a condition without cells by a NaN row of condition_means: that is data, not damage."""
    from virtualcell.instruments.manipulators.latent_arithmetic import LatentArithmeticManipulator
    from virtualcell.testing import tiny_labels

    z, labels = tiny_labels()
    manipulator = LatentArithmeticManipulator(balance=False).fit(z, labels, n_conditions=4)   # condition 3: no cells
    assert torch.isnan(manipulator.condition_means[3]).all()
    loaded = load_component(manipulator.save(tmp_path / "la"))
    assert torch.isnan(loaded.condition_means[3]).all()
    _reseal_weights(tmp_path / "la", lambda t: t["condition_means"].__setitem__((0, 0), float("nan")))
    with pytest.raises(TamperedArtifactError, match="condition_means"):
        load_component(tmp_path / "la")


def test_component_with_nonfinite_weights_is_not_saved(tmp_path):
    x, genes = tiny_expression()
    encoder = PCAEncoder(n_components=3).fit(x, genes)
    encoder.components[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite.*diverged"):
        encoder.save(tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_hugging_face_folder_is_not_told_to_upgrade(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ArtifactError, match="not a virtualcell artifact.*from_pretrained") as error:
        load_component(tmp_path / "hf")
    assert "Upgrade" not in str(error.value)
