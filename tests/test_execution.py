import pytest
import torch

from virtualcell.execution import DeviceUnavailableError, batched_apply, make_generator, resolve_device

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(" CPU ").type == "cpu"
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device(None).type == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")
    for bad in ("cuda:x", "cpu:1", "auto:0", "cuda:-1"):
        with pytest.raises(ValueError, match="Unknown device"):
            resolve_device(bad)


def test_auto_is_a_device_torch_can_use():
    """'auto' used to reach torch as the string 'auto' (predict and embed crashed)."""
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    assert torch.zeros(2, device=device).sum().item() == 0.0
    if torch.cuda.is_available():
        assert device.type == "cuda"


@NO_CUDA
def test_missing_cuda_is_a_clear_error():
    for name in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(DeviceUnavailableError, match=r"CUDA was requested.*use --device cpu or --device auto"):
            resolve_device(name)
    assert issubclass(DeviceUnavailableError, RuntimeError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_beyond_the_gpus_is_a_clear_error():
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    count = torch.cuda.device_count()
    with pytest.raises(DeviceUnavailableError, match=f"torch sees {count} GPU"):
        resolve_device(f"cuda:{count}")


def test_missing_mps_is_a_clear_error():
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    with pytest.raises(DeviceUnavailableError, match="MPS"):
        resolve_device("mps")


def test_batched_apply_matches_direct():
    x = torch.randn(103, 5)
    out = batched_apply(lambda t: t * 2, x, batch_size=10, device="cpu", progress=False)
    torch.testing.assert_close(out, x * 2)


def test_generator_is_seeded():
    a = torch.rand(3, generator=make_generator(4))
    b = torch.rand(3, generator=make_generator(4))
    assert torch.equal(a, b)


def test_saved_pipeline_loads_with_device_auto(tmp_path):
    """PerturbationPipeline.load(device='auto') used to hand torch the string 'auto' and crash."""
    from virtualcell.datasets import simulate_perturbation
    from virtualcell.pipelines import PerturbationPipeline

    adata = simulate_perturbation(n_cells_per_group=10, n_genes=20, n_cell_types=2, seed=0)
    PerturbationPipeline("pca", "latent-arithmetic").fit(adata, progress=False).save(tmp_path / "m")
    loaded = PerturbationPipeline.load(tmp_path / "m", device="auto")
    assert loaded.device == resolve_device("auto")
    assert loaded.predict(adata[:3], target="stimulated").n_obs == 3


def test_seeded_restores_the_global_rng():
    from virtualcell.execution import seeded

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        first = torch.rand(3)
    after = torch.rand(3)
    with seeded(7):
        again = torch.rand(3)
    assert torch.equal(first, again) and torch.equal(after, expected)


def test_torch_threads_restores_the_count():
    from virtualcell.execution import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
