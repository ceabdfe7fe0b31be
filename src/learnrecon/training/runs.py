"""Training runs that outlive one command: train a config in its run folder to its last step, resuming what is there
(the benchmarks' ``-full`` presets train so, and a second call after an interruption goes on)."""

from __future__ import annotations

from pathlib import Path

from learnrecon.config import Config
from learnrecon.io.checkpoint import checkpoint_paths, load_checkpoint
from learnrecon.training.trainer import Trainer

__all__ = ["run_finished", "train_to_completion"]


def run_finished(run: str | Path, steps: int) -> bool:
    """Whether the run folder holds a last checkpoint at step ``steps``."""
    last = Path(run) / "last"
    return checkpoint_paths(last)[1].exists() and load_checkpoint(last)[1].get("step") == steps


def train_to_completion(config: Config, run: str | Path, progress: bool = True) -> None:
    """Train ``config`` in ``run`` to ``config.training.steps``: nothing for a finished run, a resumed one for a run
    with a checkpoint, a fresh one otherwise (a folder without a checkpoint is started again)."""
    run = Path(run)
    if run_finished(run, config.training.steps):
        return
    resume = checkpoint_paths(run / "last")[1].exists()
    trainer = Trainer.from_config(config, run, resume=resume, overwrite=not resume, progress=progress)
    try:
        trainer.train()
    finally:
        trainer.close()
