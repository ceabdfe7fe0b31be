"""A benchmark's tasks: each test set with the validation set of the same kind that tunes the methods for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from learnrecon import phantoms
from learnrecon.benchmark.presets import Preset
from learnrecon.data.simulate import finer_operator, simulate_pairs
from learnrecon.operators.base import LinearOperator

__all__ = ["EvalSet", "Task", "make_tasks"]


class EvalSet(NamedTuple):
    """Named truth/measurement pairs: ``x`` ``(n, 1, *op.domain_shape)``, ``y`` ``(n, 1, *op.range_shape)``."""

    name: str
    x: torch.Tensor
    y: torch.Tensor


class Task(NamedTuple):
    """A test set and the validation set of the same kind that tunes the methods' parameters for it."""

    validation: EvalSet
    test: EvalSet


def make_tasks(preset: Preset, op: LinearOperator) -> list[Task]:
    """Shepp–Logan (validated on another noise draw of itself) and held-out ellipses (validated on
    ellipses with another seed). The relative noise has a different absolute level on each kind of
    image, so each test set gets its own regularisation parameters. With ``preset.simulation_size`` the
    data are simulated on that finer grid (see ``preset.simulation_upsampling``)."""
    sim_op = finer_operator(op, preset.simulation_size) if preset.simulation_size else None

    def shepp_logan(shape: tuple[int, int]) -> torch.Tensor:
        return phantoms.shepp_logan(shape).float()[None, None]

    def ellipses(n: int, seed: int) -> Callable[[tuple[int, int]], torch.Tensor]:
        return lambda shape: phantoms.draw_ellipses(
            preset.phantom, n=n, size=shape, seed=seed, scaling=preset.ellipse_scaling
        )

    def eval_set(name: str, render: Callable[[tuple[int, int]], torch.Tensor], noise_seed: int) -> EvalSet:
        pairs = simulate_pairs(
            render, op, preset.noise, seed=noise_seed, simulation_op=sim_op, upsampling=preset.simulation_upsampling
        )
        return EvalSet(name, *pairs)

    return [
        Task(
            eval_set("Shepp–Logan (validation noise)", shepp_logan, preset.seed + 4),
            eval_set("Shepp–Logan", shepp_logan, preset.seed + 3),
        ),
        Task(
            eval_set("validation ellipses", ellipses(preset.n_validation, preset.seed + 1), preset.seed + 1),
            eval_set("ellipses", ellipses(preset.n_test, preset.seed + 2), preset.seed + 2),
        ),
    ]
