"""Plain torch training: the minibatch loop, resumable checkpoints, losses."""

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import History, TrainingLoop, split_validation

__all__ = ["TrainingLoop", "History", "split_validation", "save_checkpoint", "load_checkpoint"]
