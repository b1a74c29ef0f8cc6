"""Public helpers for plugin authors: tiny synthetic data and contract test mixins."""

from .contracts import DecoderContract, EncoderContract, ManipulatorContract, contract_kwargs
from .synthetic import tiny_expression, tiny_labels

__all__ = ["EncoderContract", "DecoderContract", "ManipulatorContract", "contract_kwargs",
           "tiny_expression", "tiny_labels"]
