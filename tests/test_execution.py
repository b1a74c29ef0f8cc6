import pytest
import torch

from virtualcell.execution import batched_apply, make_generator, resolve_device


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_batched_apply_matches_direct():
    x = torch.randn(103, 5)
    out = batched_apply(lambda t: t * 2, x, batch_size=10, device="cpu", progress=False)
    torch.testing.assert_close(out, x * 2)


def test_generator_is_seeded():
    a = torch.rand(3, generator=make_generator(4))
    b = torch.rand(3, generator=make_generator(4))
    assert torch.equal(a, b)
