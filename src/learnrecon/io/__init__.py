"""File formats and safe writing: checkpoints (safetensors + JSON), atomic output paths, run locks."""

from learnrecon.io.checkpoint import (
    checkpoint_paths,
    load_checkpoint,
    restore_optimizer,
    reusable_meta,
    save_checkpoint,
    training_history,
)
from learnrecon.io.files import atomic_path, check_output_path

__all__ = [
    "atomic_path",
    "check_output_path",
    "checkpoint_paths",
    "load_checkpoint",
    "restore_optimizer",
    "reusable_meta",
    "save_checkpoint",
    "training_history",
]
