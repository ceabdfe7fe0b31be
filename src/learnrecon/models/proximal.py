"""Learned proximal gradient descent: a CNN in place of the proximal operator of the regulariser.

    x_{k+1} = Γ_θk(x_k − τ_k A*(A x_k − y)),    Γ_θ(z) = z + CNN_θ(z),

with a learned step ``τ_k`` per iteration (stored as log τ_k, so it stays positive; it starts at 1,
which is ``1/‖A‖²`` on the normalised operator, the default) and a residual CNN that starts as the identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from learnrecon.models.base import State, Unrolled
from learnrecon.models.complex import network_channels
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator

__all__ = ["LearnedProximal", "ProximalStep"]


class ProximalStep(nn.Module):
    """One step: state ``(x,)`` → ``(Γ(x − τ A*(A x − y)),)``."""

    def __init__(self, width: int, depth: int, step: float, image_channels: int = 1) -> None:
        super().__init__()
        self.log_step = nn.Parameter(torch.tensor(math.log(step)))
        self.prox = ConvBlock(image_channels, image_channels, width, depth)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (x,) = state
        z = x - self.log_step.exp() * op.H(op(x.to(y.dtype)) - y).to(x.dtype)
        return (z + self.prox(z),)


class LearnedProximal(Unrolled):
    """Learned proximal gradient: ``n_iter`` steps of :class:`ProximalStep`.

    Args:
        n_iter: iterations.
        width, depth: each step's CNN.
        share_weights: one step module for all iterations.
        init: the initial reconstruction (see :data:`~learnrecon.models.base.INITS`).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖`` (then the initial step 1 is ``1/‖A‖²``).
        operator: the operator whose spaces fix the networks' channels (:mod:`learnrecon.models.complex`).
    """

    def __init__(
        self,
        n_iter: int = 10,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
        operator: LinearOperator | None = None,
    ) -> None:
        c = network_channels(operator)[0]
        steps = [ProximalStep(width, depth, 1.0, c) for _ in range(1 if share_weights else n_iter)]
        super().__init__(steps, n_iter, init, normalise, operator)
