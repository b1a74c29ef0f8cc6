"""Every registered component (built-in or installed plugin) passes its kind's contract."""

import warnings

from virtualcell.registry import PluginImportError, registry
from virtualcell.testing import DecoderContract, EncoderContract, ManipulatorContract

CONTRACTS = {"encoder": EncoderContract, "decoder": DecoderContract, "manipulator": ManipulatorContract}


def _contract_classes():
    for name in registry.names():
        try:
            cls = registry.get(name)
        except PluginImportError as error:  # a broken plugin is tested in test_registry
            warnings.warn(str(error))
            continue
        base = CONTRACTS[cls.kind]
        yield f"TestContract_{name.replace('-', '_')}", type(f"TestContract_{name}", (base,), {"name": name})


globals().update(dict(_contract_classes()))


class TestContract_diffusion_transformer(ManipulatorContract):
    """The diffusion manipulator with its transformer denoiser passes the same contract."""

    name = "diffusion"
    init_kwargs = {**registry.get("diffusion").test_config, "denoiser": "transformer", "heads": 2, "n_tokens": 2}
