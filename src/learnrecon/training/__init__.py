"""Training: the :class:`Trainer` loop and its losses (checkpoint files are :mod:`learnrecon.io`'s, inference and
scoring :mod:`learnrecon.evaluation`'s)."""

from learnrecon.training.losses import LOSSES, get_loss
from learnrecon.training.runs import run_finished, train_to_completion
from learnrecon.training.subsampling import AngleSubsets, RescaledSubset
from learnrecon.training.trainer import (
    OperatorSource,
    Trainer,
    TrainingError,
    learning_rate,
    step_positions,
    synchronise_batch_norm,
)

__all__ = [
    "LOSSES",
    "AngleSubsets",
    "OperatorSource",
    "RescaledSubset",
    "Trainer",
    "TrainingError",
    "get_loss",
    "learning_rate",
    "run_finished",
    "step_positions",
    "synchronise_batch_norm",
    "train_to_completion",
]
