"""Publishing and pulling shared instruments through fsspec: immutable versions, verified content."""

import json

import pytest
import torch

from virtualcell.registry import TamperedArtifactError, load_component
from virtualcell.registry.publish import list_published, publish, pull
from virtualcell.representations.pca import PCAEncoder
from virtualcell.testing import tiny_expression


@pytest.fixture
def artifact(tmp_path):
    x, genes = tiny_expression()
    return PCAEncoder(n_components=4).fit(x, genes).save(tmp_path / "pca"), x


@pytest.mark.parametrize("hub", ["folder", "memory://vc-hub-test"])
def test_publish_then_pull_and_load(tmp_path, artifact, hub):
    path, x = artifact
    hub = str(tmp_path / "hub") if hub == "folder" else f"{hub}-{tmp_path.name}"
    digest = publish(path, hub, "pbmc-pca", "1.0.0")
    publish(path, hub, "pbmc-pca", "1.10.0")
    assert list_published(hub) == {"pbmc-pca": ["1.0.0", "1.10.0"]}
    folder = pull(hub, "pbmc-pca", cache_dir=tmp_path / "cache")
    assert folder.name.startswith("1.10.0-")
    assert pull(hub, "pbmc-pca", "1.0.0", cache_dir=tmp_path / "cache").name == f"1.0.0-{digest[:16]}"
    torch.testing.assert_close(load_component(folder).encode(x), load_component(path).encode(x))


def test_versions_are_immutable(tmp_path, artifact):
    path, _ = artifact
    publish(path, str(tmp_path / "hub"), "a", "1.0")
    with pytest.raises(FileExistsError, match="immutable"):
        publish(path, str(tmp_path / "hub"), "a", "1.0")
    with pytest.raises(ValueError, match="reserved"):
        publish(path, str(tmp_path / "hub"), "a", "latest")


def test_altered_hub_copy_is_refused(tmp_path, artifact):
    path, _ = artifact
    hub = tmp_path / "hub"
    publish(path, str(hub), "a", "1.0")
    location = json.loads((hub / "a" / "1.0.manifest.json").read_text())["location"]
    weights = hub / "a" / location / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x07")
    with pytest.raises(TamperedArtifactError, match="does not match its published sha256"):
        pull(str(hub), "a", "1.0", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "instruments" / "a").glob("1.0-*"))


def test_missing_names_are_clear(tmp_path, artifact):
    path, _ = artifact
    publish(path, str(tmp_path / "hub"), "a", "1.0")
    with pytest.raises(FileNotFoundError, match=r"Nothing named 'b'.*available: \['a'\]"):
        pull(str(tmp_path / "hub"), "b", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=r"a 2.0 is not published.*\['1.0'\]"):
        pull(str(tmp_path / "hub"), "a", "2.0", cache_dir=tmp_path / "c")
