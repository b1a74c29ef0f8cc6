"""Hostile ``from_pretrained`` folders (issue 21, item 22): each is refused before a model is built,
with what is wrong and what to do, never an internal error."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from virtualcell import DataError
from virtualcell.pipelines.annotate import resolve_encoder
from virtualcell.representations.transformer import TransformerEncoder
from virtualcell.testing.pretrained import write_tiny_bert

GENES = [f"ENSG{i:011d}" for i in range(1, 11)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny BertForMaskedLM folder: config.json, model.safetensors and a JSON token dictionary."""
    return write_tiny_bert(tmp_path_factory.mktemp("bert-tiny"), GENES)


@pytest.fixture
def copy(pretrained, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(pretrained, target)
    return target


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_the_untouched_folder_loads(pretrained):
    with pytest.warns(UserWarning, match="No gene medians"):
        encoder = TransformerEncoder.from_pretrained(pretrained)
    assert encoder.is_fitted and encoder.n_latent == 8


def test_pretrained_file_named_safetensors_that_is_not_one(copy):
    (copy / "model.safetensors").write_bytes(b"PK\x03\x04 this is a zip file, not safetensors" * 4)
    with pytest.raises(DataError, match="model.safetensors is not a valid safetensors file.*(Re-download|convert)"):
        TransformerEncoder.from_pretrained(copy)


def test_pretrained_huge_layer_count_is_refused_before_building(copy):
    _edit_config(copy, num_hidden_layers=1_000_000)
    start = time.perf_counter()
    with pytest.raises(DataError, match="num_hidden_layers 1000000 \\(the weights have 1\\)"):
        TransformerEncoder.from_pretrained(copy)
    _edit_config(copy, num_hidden_layers=1_000_000, hidden_size=1024, num_attention_heads=8)
    with pytest.raises(DataError, match="about 4.23e\\+12 parameters.*damaged or hostile"):
        TransformerEncoder.from_pretrained(copy)
    assert time.perf_counter() - start < 5


def test_pretrained_config_that_disagrees_with_the_weights(copy):
    _edit_config(copy, num_hidden_layers=3)
    with pytest.raises(DataError, match="num_hidden_layers 3 \\(the weights have 1\\)"):
        TransformerEncoder.from_pretrained(copy)


@pytest.mark.parametrize("value", [-1, 0.5, "many", True])
def test_pretrained_nonsense_sizes(copy, value):
    _edit_config(copy, hidden_size=value)
    with pytest.raises(DataError, match="positive integers"):
        TransformerEncoder.from_pretrained(copy)


def test_pretrained_negative_token_id(copy):
    tokens = json.loads((copy / "token_dictionary.json").read_text())
    tokens[GENES[0]] = -3
    (copy / "token_dictionary.json").write_text(json.dumps(tokens))
    with pytest.raises(DataError, match="non-negative integers.*-3"):
        TransformerEncoder.from_pretrained(copy)


@pytest.mark.parametrize("payload", [[1, 2, 3], "bert", 7])
def test_pretrained_config_that_is_not_an_object(copy, payload):
    (copy / "config.json").write_text(json.dumps(payload))
    with pytest.raises(DataError, match="not an object"):
        TransformerEncoder.from_pretrained(copy)


def test_pretrained_folder_with_only_pickled_weights_gets_conversion_advice(copy):
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    for load in (TransformerEncoder.from_pretrained, resolve_encoder):      # the API and annotate --encoder <folder>
        with pytest.raises(FileNotFoundError, match="safe_serialization=True") as error:
            load(copy)
        assert "Upgrade" not in str(error.value)
