"""Training: the :class:`Trainer` loop, losses and evaluation (checkpoint files are :mod:`learnrecon.io`'s)."""

from learnrecon.training.evaluate import evaluate_model
from learnrecon.training.losses import LOSSES, get_loss
from learnrecon.training.trainer import Trainer, TrainingError, learning_rate, synchronise_batch_norm

__all__ = [
    "LOSSES",
    "Trainer",
    "TrainingError",
    "evaluate_model",
    "get_loss",
    "learning_rate",
    "synchronise_batch_norm",
]
