"""Hostile artifact folders: symbolic links, special files, header bombs, unsafe feature names (issue #12)."""

import hashlib
import json
import os
import struct

import pytest
import torch

from virtualcell.registry import ArtifactError, TamperedArtifactError, load_component
from virtualcell.registry.publish import publish
from virtualcell.representations.pca import PCAEncoder
from virtualcell.testing import tiny_expression


# -- symbolic links and special files -----------------------------------------------------------
def test_publish_refuses_a_symlink_inside_the_artifact(tmp_path, artifact):
    """Before: publish followed the link and uploaded the bytes of whatever it pointed to."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private key")
    os.symlink(secret, artifact / "notes.txt")
    with pytest.raises(ArtifactError, match="symbolic link 'notes.txt'"):
        publish(artifact, str(tmp_path / "hub"), "pca", "1.0")
    assert not [p for p in tmp_path.joinpath("hub").rglob("*") if p.is_file()]


def test_publish_refuses_a_symlinked_folder_and_a_fifo(tmp_path, artifact):
    os.symlink(tmp_path, artifact / "everything")
    with pytest.raises(ArtifactError, match="symbolic link 'everything'"):
        publish(artifact, str(tmp_path / "hub"), "pca", "1.0")
    os.unlink(artifact / "everything")
    os.mkfifo(artifact / "pipe")
    with pytest.raises(ArtifactError, match="not a regular file"):
        publish(artifact, str(tmp_path / "hub"), "pca", "1.0")


def test_publish_refuses_a_symlink_swapped_for_a_checked_file(tmp_path, artifact):
    """A link in place of weights.safetensors that points at identical bytes is still refused."""
    real = tmp_path / "elsewhere.safetensors"
    os.replace(artifact / "weights.safetensors", real)
    os.symlink(real, artifact / "weights.safetensors")
    with pytest.raises(ArtifactError, match="symbolic link|not a regular file"):
        publish(artifact, str(tmp_path / "hub"), "pca", "1.0")
    with pytest.raises(TamperedArtifactError, match="not a regular file"):
        load_component(artifact)


def canonical_hash(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- header bombs -------------------------------------------------------------------------------
def _resign(path):
    """Recompute config.json's checksums after an edit, as a hostile author would."""
    config = json.loads((path / "config.json").read_text())
    config.pop("config_sha256")
    config["checksums"] = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in config["checksums"]}
    config["config_sha256"] = canonical_hash(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("claimed", [2**63, 10**12, 200_000_000])
def test_safetensors_header_claiming_a_huge_size_is_refused(artifact, claimed):
    weights = artifact / "weights.safetensors"
    weights.write_bytes(struct.pack("<Q", claimed) + b"{}" + b"\0" * 64)
    _resign(artifact)
    with pytest.raises(ArtifactError, match="claims a safetensors header of"):
        load_component(artifact)


def test_safetensors_tensor_pointing_outside_the_file_is_refused(artifact):
    header = json.dumps({"components": {"dtype": "F32", "shape": [10**6], "data_offsets": [0, 4 * 10**6]}}).encode()
    (artifact / "weights.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    _resign(artifact)
    with pytest.raises(ArtifactError, match="points outside the file"):
        load_component(artifact)


def test_huge_config_is_refused_before_it_is_read(artifact):
    with open(artifact / "config.json", "r+b") as handle:
        handle.truncate(65 << 20)  # sparse
    with pytest.raises(ArtifactError, match="more than the .* a virtualcell record can be"):
        load_component(artifact)


def test_deeply_nested_config_is_a_clear_error(artifact):
    (artifact / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ArtifactError, match="nests JSON too deeply|not a JSON object"):
        load_component(artifact)


def test_config_checksums_cannot_name_files_outside(tmp_path, artifact):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    config = json.loads((artifact / "config.json").read_text())
    config.pop("config_sha256")
    config["checksums"]["../outside.bin"] = "0" * 64
    config["config_sha256"] = canonical_hash(config)
    (artifact / "config.json").write_text(json.dumps(config))
    with pytest.raises(TamperedArtifactError, match="lists checksums for"):
        load_component(artifact)


def test_huge_pipeline_json_is_refused(tmp_path, fitted_pipelines):
    import virtualcell as vc

    path = fitted_pipelines[0].save(tmp_path / "pipe")
    with open(path / "pipeline.json", "r+b") as handle:
        handle.truncate(65 << 20)
    with pytest.raises(ArtifactError, match="a virtualcell record can be"):
        vc.PerturbationPipeline.load(path)


# -- feature names ------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
                         ids=repr)
def test_gene_names_with_line_separators_are_refused_at_save(tmp_path, separator):
    """Before: \\u2028 and friends saved fine and loaded as two genes (features.txt split them)."""
    x, genes = tiny_expression(n_cells=30, n_genes=6)
    genes = list(genes)
    genes[2] = f"HLA{separator}A"
    encoder = PCAEncoder(n_components=2).fit(x, genes)
    with pytest.raises(ArtifactError, match="line separators.*HLA"):
        encoder.save(tmp_path / "pca")
    assert not (tmp_path / "pca").exists()


def test_unusual_but_safe_gene_names_round_trip(tmp_path):
    x, genes = tiny_expression(n_cells=30, n_genes=6)
    genes = ["HLA-A", "gene with space", "TRB\tV1", "ünïcode", "a|b", "#comment"]
    encoder = PCAEncoder(n_components=2).fit(x, genes)
    loaded = load_component(encoder.save(tmp_path / "pca"))
    assert loaded.input_features == genes
    torch.testing.assert_close(loaded.encode(x), encoder.encode(x))
