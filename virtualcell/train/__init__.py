"""Plain torch training: the minibatch loop, resumable checkpoints, the history plot (losses: ``virtualcell.nn``)."""

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import History, TrainingLoop, split_validation
from .plot import plot_history, read_history

__all__ = ["TrainingLoop", "History", "split_validation", "save_checkpoint", "load_checkpoint", "plot_history",
           "read_history"]
