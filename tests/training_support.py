"""Helpers shared by the training tests: a small LPD config, its operator, a small data file."""

import json
from pathlib import Path

import torch

from learnrecon.cli import main
from learnrecon.config import Config, from_dict
from learnrecon.io.checkpoint import load_checkpoint
from learnrecon.training import Trainer

SMALL = {
    "model": {"name": "lpd", "params": {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4}},
    "data": {
        "operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35},
        "n_validation": 2,
    },
    "training": {
        "steps": 6,
        "batch_size": 2,
        "validate_every": 3,
        "checkpoint_every": 3,
        "figure_every": 3,
        "log_every": 1,
        "threads": 1,
    },
}


def small_config(**training) -> Config:
    values = json.loads(json.dumps(SMALL))
    values["training"].update(training)
    return from_dict(values)


def model_weights(path):
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def with_a_random_loss(trainer: Trainer) -> Trainer:
    """``trainer`` with a loss that draws from torch's RNG (a stand-in for dropout or random crops)."""
    loss = trainer.loss_fn
    trainer.loss_fn = lambda x_hat, x: loss(x_hat + 1e-2 * torch.randn_like(x_hat), x)
    return trainer


def small_op():
    from learnrecon.operators import ParallelBeam2D

    return ParallelBeam2D(24, 6, n_detectors=35)


def small_data_file(path: Path, *extra: str, **replaced) -> Path:
    """A ``learnrecon simulate`` file of 3 items at the SMALL geometry, with datasets ``replaced`` by arrays."""
    import h5py

    args = ["simulate", "--n", "3", "--size", "24", "--angles", "6", "--detectors", "35", *extra]
    assert main([*args, "--out", str(path), "--quiet"]) == 0
    with h5py.File(path, "a") as f:
        for name, array in replaced.items():
            del f[name]
            f[name] = array
    return path


def load_h5_array(path: Path, name: str):
    import h5py

    with h5py.File(path, "r") as f:
        return f[name][()]
