"""Stochastic subsampling of the forward operator in training (after Tang, Mukherjee & Schönlieb 2021).

:class:`AngleSubsets` is an :class:`~learnrecon.training.trainer.OperatorSource`: training step ``s`` works with
``m`` of a ray transform's ``n`` angles, drawn uniformly at random without replacement from ``(seed, s)``, and the
rows of the data that belong to them. Operator and data are both scaled by ``c = √(n/m)``:

    A_S = c·A[S],   y_S = c·y[S],   so   ‖A_S x − y_S‖² = (n/m) Σ_{i∈S} ‖A_i x − y_i‖²

whose expectation over the subsets is the full data term ‖A x − y‖² (and ``E[A_S* A_S] = A* A``, so the gradient
``A_S*(A_S x − y_S)`` is unbiased too). The subset operator reports the full operator's norm, so a model that
normalises by ``‖A‖`` sees every step on the scale it is evaluated on, and its pseudo-inverse is the subset's
filtered backprojection of the unscaled data (an image on the full data's scale). Each step's product costs ``m/n``
of the full one; validation and checkpoints use the full operator.
"""

from __future__ import annotations

import math

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.base import Scaled
from learnrecon.operators.tomography import RayTransform2D, subset

__all__ = ["AngleSubsets", "RescaledSubset"]


class RescaledSubset(Scaled):
    """``c·A[S]`` of :class:`AngleSubsets`: the norm of the full operator, and the subset's pseudo-inverse of
    ``y/c``."""

    def __init__(self, part: RayTransform2D, scalar: float, full: RayTransform2D, indices: torch.Tensor) -> None:
        super().__init__(part, scalar)
        self.full, self.indices = full, indices
        self.pseudo_inverse_options = part.pseudo_inverse_options

    def norm(self, *args, **kwargs) -> float:
        """The full operator's norm (``E[A_S* A_S] = A* A``)."""
        return self.full.norm(*args, **kwargs)

    def pseudo_inverse(self, y: torch.Tensor, **options) -> torch.Tensor:
        return self.op.pseudo_inverse(y / self.scalar, **options)


class AngleSubsets:
    """Each training step on a random subset of the angles of ``operator`` (see the module docstring).

    Args:
        operator: the full ray transform (validation and checkpoints use it).
        fraction: the share of the angles each step uses, in (0, 1]; ``m = max(1, round(fraction · n))``.
        seed: the subsets of step ``s`` are drawn from ``(seed, s)``, so a resumed run sees the same ones.
    """

    def __init__(self, operator: RayTransform2D, fraction: float, seed: int = 0) -> None:
        if not isinstance(operator, RayTransform2D):
            raise ParameterError(
                f"training.angle_fraction subsamples the angles of a ray transform, not {operator.name}"
            )
        if not (0 < fraction <= 1):
            raise ParameterError(f"training.angle_fraction must lie in (0, 1], got {fraction}")
        self.operator, self.fraction, self.seed = operator, float(fraction), int(seed)
        self.n_angles = operator.angles.numel()
        self.n_subset = max(1, round(fraction * self.n_angles))

    def indices(self, step: int) -> torch.Tensor:
        """The angles of step ``step``, increasing."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return torch.randperm(self.n_angles, generator=g)[: self.n_subset].sort().values

    def operator_for(self, indices: torch.Tensor) -> RescaledSubset:
        """``√(n/m)·A[indices]``."""
        scale = math.sqrt(self.n_angles / indices.numel())
        return RescaledSubset(subset(self.operator, indices, cached=False), scale, self.operator, indices)

    def for_step(self, step: int, y: torch.Tensor) -> tuple[RescaledSubset, torch.Tensor]:
        """The operator and data of step ``step``: ``√(n/m)·A[S]`` and ``√(n/m)·y[…, S, :]``."""
        idx = self.indices(step)
        op = self.operator_for(idx)
        return op, y.index_select(-2, idx.to(y.device)) * op.scalar
