"""Training: the :class:`Trainer` loop, losses, checkpoints (safetensors + JSON) and evaluation."""

from learnrecon.training.checkpoint import load_checkpoint, load_model, save_checkpoint, training_history
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
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "synchronise_batch_norm",
    "training_history",
]
