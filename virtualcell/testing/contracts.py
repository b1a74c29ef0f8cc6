"""Contract tests every registered component passes; plugin authors subclass these.

```python
from virtualcell.testing import ManipulatorContract

class TestMyManipulator(ManipulatorContract):
    name = "my-manipulator"          # the registered name
    init_kwargs = {"hidden": 16}     # small and fast
```
Each check: output shapes, save -> load gives the same outputs, the same seed gives the same
numbers, and a device round trip (CUDA when present) keeps the outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from ..component import Condition, Decoder, Encoder, Manipulator
from .synthetic import tiny_expression, tiny_labels

__all__ = ["EncoderContract", "DecoderContract", "ManipulatorContract", "contract_kwargs"]


def contract_kwargs(cls: type) -> dict[str, Any]:
    """Small, fast init arguments a component class declares for tests (``test_config``), or none."""
    return dict(getattr(cls, "test_config", {}) or {})


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class _Contract:
    name: ClassVar[str] = ""
    init_kwargs: ClassVar[dict[str, Any] | None] = None
    atol: ClassVar[float] = 1e-5

    def make(self):
        from ..registry import registry

        cls = registry.get(self.name)
        kwargs = contract_kwargs(cls) if self.init_kwargs is None else dict(self.init_kwargs)
        return cls(**kwargs)

    def test_config_round_trip(self):
        component = self.make()
        clone = type(component).from_config(component.config)
        assert dict(clone.config) == dict(component.config)

    def test_registered_name_resolves(self):
        from ..registry import normalize_name, registry

        assert registry.name_of(type(self.make())) == normalize_name(self.name)


class EncoderContract(_Contract):
    def fitted(self, seed: int = 0) -> Encoder:
        x, genes = tiny_expression()
        return self.make().fit(x, genes, seed=seed, progress=False)

    def test_shapes(self):
        x, genes = tiny_expression()
        encoder = self.fitted()
        z = encoder.encode(x)
        assert z.shape == (x.shape[0], encoder.n_latent)
        assert encoder.input_features == genes
        assert torch.isfinite(z).all()

    def test_save_load(self, tmp_path):
        x, _ = tiny_expression()
        encoder = self.fitted().eval()
        encoder.save(tmp_path / "encoder")
        loaded = type(encoder).load(tmp_path / "encoder")
        torch.testing.assert_close(loaded.encode(x), encoder.encode(x), atol=self.atol, rtol=0)
        assert loaded.input_features == encoder.input_features

    def test_seed_determinism(self):
        x, _ = tiny_expression()
        torch.testing.assert_close(self.fitted(seed=3).eval().encode(x), self.fitted(seed=3).eval().encode(x), atol=0, rtol=0)

    @pytest.mark.parametrize("device", _devices())
    def test_device_round_trip(self, device):
        x, _ = tiny_expression()
        encoder = self.fitted().eval()
        expected = encoder.encode(x)
        moved = encoder.to(device).encode(x.to(device)).cpu()
        torch.testing.assert_close(moved, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(encoder.to("cpu").encode(x), expected, atol=0, rtol=0)


class DecoderContract(_Contract):
    #: registered name of the encoder whose paired decoder this is (None: the decoder fits alone)
    paired_encoder: ClassVar[str | None] = None
    paired_encoder_kwargs: ClassVar[dict[str, Any] | None] = None

    def fitted(self, seed: int = 0) -> tuple[Decoder, torch.Tensor]:
        from ..registry import registry

        x, genes = tiny_expression()
        paired = self.paired_encoder or getattr(registry.get(self.name), "paired_encoder", None)
        if paired:
            cls = registry.get(paired)
            kwargs = contract_kwargs(cls) if self.paired_encoder_kwargs is None else dict(self.paired_encoder_kwargs)
            encoder = cls(**kwargs).fit(x, genes, seed=seed, progress=False).eval()
            decoder = encoder.paired_decoder()
            assert type(decoder) is registry.get(self.name)
            return decoder.eval(), encoder.encode(x)
        z = x[:, : max(2, x.shape[1] // 4)].clone()
        return self.make().fit(z, x, genes, seed=seed, progress=False).eval(), z

    def test_shapes(self):
        decoder, z = self.fitted()
        out = decoder.decode(z)
        assert out.shape == (z.shape[0], len(decoder.output_features))
        assert torch.isfinite(out).all()

    def test_save_load(self, tmp_path):
        decoder, z = self.fitted()
        decoder.save(tmp_path / "decoder")
        loaded = type(decoder).load(tmp_path / "decoder")
        torch.testing.assert_close(loaded.decode(z), decoder.decode(z), atol=self.atol, rtol=0)
        assert loaded.output_features == decoder.output_features

    def test_seed_determinism(self):
        (a, z), (b, _) = self.fitted(seed=5), self.fitted(seed=5)
        torch.testing.assert_close(a.decode(z), b.decode(z), atol=0, rtol=0)

    @pytest.mark.parametrize("device", _devices())
    def test_device_round_trip(self, device):
        decoder, z = self.fitted()
        expected = decoder.decode(z)
        torch.testing.assert_close(decoder.to(device).decode(z.to(device)).cpu(), expected, atol=1e-4, rtol=1e-4)


class ManipulatorContract(_Contract):
    n_features: ClassVar[int] = 8

    def data(self) -> tuple[torch.Tensor, Condition]:
        return tiny_labels(n_features=self.n_features)

    def fitted(self, seed: int = 0) -> Manipulator:
        z, labels = self.data()
        return self.make().fit(z, labels, seed=seed, progress=False).eval()

    def query(self, z: torch.Tensor, labels: Condition) -> Condition:
        control = labels.target == 0
        return Condition(torch.ones(int(control.sum()), dtype=torch.long), labels.target[control],
                         labels.context[control], {k: v[control] for k, v in labels.covariates.items()})

    def _run(self, manipulator, n_samples: int = 1, seed: int = 0, device: str = "cpu"):
        z, labels = self.data()
        query = self.query(z, labels)
        generator = torch.Generator(device=device).manual_seed(seed)
        return manipulator.manipulate(z[labels.target == 0].to(device), query.to(device),
                                      n_samples=n_samples, generator=generator).cpu()

    def test_shapes(self):
        z, labels = self.data()
        manipulator = self.fitted()
        n = int((labels.target == 0).sum())
        assert self._run(manipulator).shape == (n, z.shape[1])
        samples = self._run(manipulator, n_samples=3)
        assert samples.shape == (3, n, z.shape[1])
        assert torch.isfinite(samples).all()

    def test_save_load(self, tmp_path):
        manipulator = self.fitted()
        manipulator.save(tmp_path / "manipulator")
        loaded = type(manipulator).load(tmp_path / "manipulator")
        torch.testing.assert_close(self._run(loaded, 2), self._run(manipulator, 2), atol=self.atol, rtol=0)

    def test_seed_determinism(self):
        torch.testing.assert_close(self._run(self.fitted(seed=7), 2, seed=1), self._run(self.fitted(seed=7), 2, seed=1),
                                   atol=0, rtol=0)

    def test_samples_vary_only_when_stochastic(self):
        samples = self._run(self.fitted(), n_samples=4)
        spread = (samples - samples.mean(0)).abs().max()
        assert (spread > 0) == type(self.make()).stochastic

    def test_rejects_unknown_condition(self):
        manipulator = self.fitted()
        z, labels = self.data()
        bad = Condition(torch.full((3,), 99), torch.zeros(3, dtype=torch.long), labels.context[:3])
        with pytest.raises(ValueError, match="condition"):
            manipulator.manipulate(z[:3], bad)

    @pytest.mark.parametrize("device", _devices())
    def test_device_round_trip(self, device):
        manipulator = self.fitted()
        expected = self._run(manipulator)
        torch.testing.assert_close(self._run(manipulator.to(device), device=device), expected, atol=1e-3, rtol=1e-3)
