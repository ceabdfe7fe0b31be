"""Averaging a reconstruction method over the symmetries of the geometry (a test-time "self-ensemble").

For the image symmetries ``G`` that the operator carries to permutations of the data (``A g = T_g A``,
:meth:`~learnrecon.operators.LinearOperator.symmetries`; only the identity for an operator that knows none),

    x̂(y) = (1/|G|) Σ_{g ∈ G} g⁻¹ f(T_g y).

An equivariant method, ``f(T_g y) = g f(y)`` (FBP, tested), is unchanged; a trained network is equivariant only
as far as its training taught it, and the average removes the part of its output that is not. It costs ``|G|``
evaluations (8 for an even number of uniform parallel-beam angles on a square image).

:func:`dihedral_image_average` is the same average for a network from images to images,
``(1/|D|) Σ_{g ∈ D} g⁻¹ net(g x)`` over the quarter turns and reflections ``D`` of the image grid: it is
equivariant to every ``g`` in ``D`` whatever the network's weights, so a model built on it (FBPConvNet's
``symmetric`` option) is trained as the equivariant network it is evaluated as.
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.operators.base import LinearOperator
from learnrecon.operators.symmetry import act_on_image, act_on_image_inverse

__all__ = ["SymmetryAverage", "dihedral_image_average"]


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
        group = op.symmetries()
        total = sum(g.image_inverse(self.model(g.data(y), op)) for g in group)
        return total / len(group)


def dihedral_image_average(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(1/|D|) Σ_{g ∈ D} g⁻¹ net(g x)`` for images ``x`` ``(B, C, H, W)``: ``D`` the eight quarter turns and
    reflections of a square grid, or the four of them (identity, half turn, the two reflections) that keep a
    rectangular one. The ``|D|`` copies go through ``net`` as one batch of ``|D|·B`` images."""
    turns = (0, 1, 2, 3) if x.shape[-1] == x.shape[-2] else (0, 2)
    group = [(t, reflect) for t in turns for reflect in (False, True)]
    outputs = net(torch.cat([act_on_image(x, t, r) for t, r in group])).chunk(len(group))
    return sum(act_on_image_inverse(z, t, r) for z, (t, r) in zip(outputs, group, strict=True)) / len(group)
