"""label-decoder: a calibrated classifier over any representation."""

import pytest
import torch

from virtualcell.instruments.decoders.labels import LabelDecoder, expected_calibration_error, fit_temperature

CLASSES = ["B", "Mono", "T"]


def _blobs(n=300, spread=1.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return centres[y] + spread * torch.randn(n, 2, generator=g), y


def test_classifier_labels_and_probabilities(one_torch_thread):
    z, y = _blobs(spread=0.3)
    decoder = LabelDecoder(max_epochs=20).fit(z, y, CLASSES, progress=False)
    assert decoder.output_features == CLASSES and decoder.output_type == "logits"
    probabilities = decoder.predict_proba(z)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(z)))
    assert (decoder.predict(z) == y).float().mean() > 0.95
    assert decoder.calibration["n_held_out"] == 30 and decoder.calibration["n_train"] == 270


def test_temperature_scaling_fixes_overconfidence():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2000,), generator=g)
    logits = torch.randn(2000, 3, generator=g)
    logits[torch.arange(2000), y] += 1.0
    overconfident = logits * 5
    temperature = fit_temperature(overconfident, y)
    assert 3.5 < temperature < 6.5
    before = expected_calibration_error(torch.softmax(overconfident, 1), y)
    after = expected_calibration_error(torch.softmax(overconfident / temperature, 1), y)
    assert after < before / 3


def test_held_out_calibration_is_reported_and_saved(tmp_path, one_torch_thread):
    z, y = _blobs(spread=1.3)                       # overlapping classes: probabilities must be honest
    decoder = LabelDecoder(max_epochs=40, n_hidden=64, dropout=0.0).fit(z, y, CLASSES, progress=False)
    info = decoder.calibration
    assert info["ece_after"] <= info["ece_before"] + 1e-6 and info["temperature"] > 0
    decoder.save(tmp_path / "labels")
    loaded = LabelDecoder.load(tmp_path / "labels")
    torch.testing.assert_close(loaded.decode(z), decoder.decode(z))
    assert loaded.temperature == pytest.approx(decoder.temperature) and loaded.calibration == info


def test_one_hot_labels_and_bad_ids():
    z, y = _blobs(n=60)
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    a = LabelDecoder(max_epochs=2, min_steps=1).fit(z, one_hot, CLASSES, progress=False)
    b = LabelDecoder(max_epochs=2, min_steps=1).fit(z, y, CLASSES, progress=False)
    torch.testing.assert_close(a.decode(z), b.decode(z))
    with pytest.raises(ValueError, match=r"label ids must lie in \[0, 3\)"):
        LabelDecoder().fit(z, y + 1, CLASSES, progress=False)
