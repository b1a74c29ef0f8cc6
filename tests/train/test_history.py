"""Training histories are saved with trained components (issue 21, item 9): per-epoch losses in
``history.json``, which epoch's weights were kept in ``config.json`` and the model card, and a plot."""

from __future__ import annotations

import json

import pytest

import virtualcell as vc
from virtualcell.registry import TamperedArtifactError
from virtualcell.testing import tiny_expression


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    x, genes = tiny_expression(80, 12)
    encoder = vc.create("vae", n_latent=3, max_epochs=6, patience=2).fit(x, genes, progress=False)
    return encoder.save(tmp_path_factory.mktemp("h") / "vae"), encoder


def test_history_is_saved_and_loaded_with_the_component(vae_folder):
    folder, encoder = vae_folder
    history = json.loads((folder / "history.json").read_text())
    assert history == json.loads(json.dumps(encoder.training_history))
    assert len(history["epochs"]) == history["n_epochs"] >= 1 and "loss" in history["epochs"][0]
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 2 and "history.json" in config["checksums"]
    training = config["training"]
    assert training["weights"] in ("best", "last") and training["weights_epoch"] == history["weights_epoch"]
    assert f"of {history['n_epochs']}" in training["summary"]
    assert vc.load_component(folder).training_history == history


def test_the_model_card_says_which_weights_were_saved(vae_folder):
    folder, _ = vae_folder
    card = (folder / "README.md").read_text()
    assert "## Training" in card and "Saved the weights of epoch" in card and "history.json" in card


def test_early_stopping_records_the_restored_best_epoch():
    from virtualcell.train import History

    record = History(epochs=[{"epoch": e, "loss": 1.0} for e in range(5)], best_epoch=1, monitor="val_loss",
                     restored_best=True).record()
    assert (record["weights"], record["weights_epoch"], record["n_epochs"]) == ("best", 1, 5)
    assert History(epochs=[{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]).record()["weights"] == "last"


def test_plot_history_writes_a_png(vae_folder, tmp_path):
    from virtualcell.train import plot_history

    out = plot_history(vae_folder[0], tmp_path / "plots" / "history.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_history(vae_folder[1], tmp_path / "again.png").is_file()          # a fitted component too


def test_plot_history_of_a_component_without_one_is_a_clear_error(tmp_path):
    from virtualcell.train import plot_history

    x, genes = tiny_expression(40, 8)
    folder = vc.create("pca", n_components=2).fit(x, genes).save(tmp_path / "pca")
    assert not (folder / "history.json").exists()
    assert json.loads((folder / "config.json").read_text())["format_version"] == 1   # older readers still read it
    with pytest.raises(FileNotFoundError, match="no history.json.*fitted in one pass"):
        plot_history(folder, tmp_path / "x.png")


def test_an_edited_history_is_caught(vae_folder, tmp_path):
    import shutil

    folder = shutil.copytree(vae_folder[0], tmp_path / "copy")
    history = json.loads((folder / "history.json").read_text())
    history["weights_epoch"] = 0
    (folder / "history.json").write_text(json.dumps(history))
    with pytest.raises(TamperedArtifactError, match="history.json was modified"):
        vc.load_component(folder)


def test_a_component_with_history_can_be_overwritten(vae_folder, tmp_path):
    import shutil

    folder = shutil.copytree(vae_folder[0], tmp_path / "copy")
    vae_folder[1].save(folder, overwrite=True)
    assert (folder / "history.json").is_file()
