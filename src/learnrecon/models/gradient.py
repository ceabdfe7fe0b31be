"""Learned gradient descent (Adler & Öktem 2017) and its generalisation with a regulariser gradient.

Each of the ``K`` steps is a small CNN Λ_θk that sees the iterate, the gradient of the data term and
``M`` memory channels, and returns an update of the iterate and new memory:

    (Δx, s_{k+1}) = Λ_θk(x_k, ∇_x ½‖A x_k − y‖², [∇R(x_k)], s_k),    x_{k+1} = x_k + Δx,

with ``∇_x ½‖A x − y‖² = A*(A x − y)``. The generalised variant (GeneralisedLGD) also gives the network
the gradient of a known regulariser, here the smoothed total variation
``R(x) = Σ sqrt(|∇x|² + ε²)`` with ``∇R(x) = Dᵀ(Dx / sqrt(|Dx|² + ε²))`` (D: forward differences).
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.models.base import State, Unrolled
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.gradient import FiniteDifference2D

__all__ = ["GeneralisedLGD", "LearnedGradientDescent", "LGDStep", "tv_gradient"]


def tv_gradient(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Gradient of the smoothed isotropic TV ``Σ sqrt(|Dx|² + ε²)`` of images ``(N, 1, H, W)``."""
    d = FiniteDifference2D(tuple(x.shape[-2:]))
    g = d(x)  # (N, 1, 2, H, W)
    return d.H(g / torch.sqrt((g * g).sum(dim=-3, keepdim=True) + eps**2))


class LGDStep(nn.Module):
    """One step: state ``(x (N,1,H,W), s (N,M,H,W))`` → ``(x + Δx, s')``."""

    def __init__(self, n_memory: int, width: int, depth: int, regulariser: bool) -> None:
        super().__init__()
        self.regulariser = regulariser
        self.block = ConvBlock(2 + int(regulariser) + n_memory, 1 + n_memory, width, depth)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        x, memory = state
        inputs = [x, op.H(op(x.to(y.dtype)) - y).to(x.dtype)]
        if self.regulariser:
            inputs.append(tv_gradient(x))
        update = self.block(torch.cat([*inputs, memory], dim=1))
        return x + update[:, :1], update[:, 1:]


class LearnedGradientDescent(Unrolled):
    """Learned gradient descent: ``n_iter`` steps of :class:`LGDStep`.

    Args:
        n_iter: iterations (Adler & Öktem: 10).
        n_memory: memory channels (5).
        width, depth: each step's CNN (32 channels, 3 layers).
        share_weights: one step module for all iterations.
        init: the initial reconstruction (see :data:`~learnrecon.models.base.INITS`).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
    """

    regulariser = False

    def __init__(
        self,
        n_iter: int = 10,
        n_memory: int = 5,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
    ) -> None:
        steps = [LGDStep(n_memory, width, depth, self.regulariser) for _ in range(1 if share_weights else n_iter)]
        super().__init__(steps, n_iter, init, normalise)
        self.n_memory = n_memory

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        return x0, x0.new_zeros(x0.shape[0], self.n_memory, *x0.shape[-2:])


class GeneralisedLGD(LearnedGradientDescent):
    """Learned gradient descent whose update network also sees the smoothed-TV gradient of the iterate."""

    regulariser = True
