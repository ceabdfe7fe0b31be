"""Averaging a reconstruction method over the symmetries of the geometry (a test-time "self-ensemble").

For the image symmetries ``G`` that the operator carries to permutations of the data (``A g = T_g A``,
:func:`~learnrecon.operators.symmetry.dihedral_symmetries`),

    x̂(y) = (1/|G|) Σ_{g ∈ G} g⁻¹ f(T_g y).

An equivariant method, ``f(T_g y) = g f(y)`` (FBP, tested), is unchanged; a trained network is equivariant only
as far as its training taught it, and the average removes the part of its output that is not. It costs ``|G|``
evaluations (8 for an even number of uniform parallel-beam angles on a square image).
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.operators.base import LinearOperator
from learnrecon.operators.symmetry import dihedral_symmetries

__all__ = ["SymmetryAverage"]


class SymmetryAverage(nn.Module):
    """``model`` averaged over the dihedral symmetries of ``op``'s parallel-beam geometry.

    Args:
        model: any reconstructor called as ``model(y, op)``, ``(B, C, n_angles, n_detectors) -> (B, C, H, W)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """``(B, C, n_angles, n_detectors) -> (B, C, H, W)``."""
        group = dihedral_symmetries(op)
        total = sum(g.image_inverse(self.model(g.data(y), op)) for g in group)
        return total / len(group)
