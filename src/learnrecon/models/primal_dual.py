"""Learned primal-dual reconstruction (Adler & Öktem 2018).

Primal ``f ∈ X^{N_p}`` and dual ``h ∈ Y^{N_d}`` iterates with memory channels; channel 0 of ``f`` is the
image. Iteration ``k``:

    h_{k+1} = h_k + Γ_θk(h_k, A f_k^{(1)}, y)          (dual block, on sinograms)
    f_{k+1} = f_k + Λ_θk(f_k, A* h_{k+1}^{(0)})       (primal block, on images)

(Adler & Öktem feed the dual block channel 1 of ``f`` and the primal block channel 0 of ``h``.)
For a nonlinear forward operator ``A`` (e.g. :class:`~learnrecon.operators.nonlinear.BeerLambert`, pre-log
CT) the dual block sees ``A(f^{(1)})`` and the primal block ``[∂A(f^{(1)})]*(h^{(0)})``, the paper's
physics-constrained variant; a linear operator is its own derivative, so both read as above.
Defaults as in the paper: 10 iterations, 5 + 5 memory channels, blocks of 3 conv layers with 32
channels and PReLU, about 0.25 M parameters; the initial state is zero.
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.models.base import State, Unrolled
from learnrecon.models.complex import network_channels
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator

__all__ = ["LearnedPrimalDual", "PrimalDualStep"]


class PrimalDualStep(nn.Module):
    """One iteration: state ``(f (N, N_p·c_x, H, W), h (N, N_d·c_y, h, w))`` → ``(f', h')``, with ``c_x``, ``c_y``
    the channels of one image and one data element (1 for real spaces, 2 per complex slice:
    :mod:`learnrecon.models.complex`); primal copy ``i`` is channels ``[i·c_x, (i+1)·c_x)``, and so on."""

    def __init__(
        self,
        n_primal: int,
        n_dual: int,
        width: int,
        depth: int,
        channels: tuple[int, int] = (1, 1),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.cx, self.cy = cx, cy = channels
        self.dual = ConvBlock((n_dual + 2) * cy, n_dual * cy, width, depth, dropout)
        self.primal = ConvBlock((n_primal + 1) * cx, n_primal * cx, width, depth, dropout)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        f, h = state
        cx, cy = self.cx, self.cy
        f_dual = f[:, cx : 2 * cx] if f.shape[1] > cx else f[:, :cx]
        h = h + self.dual(torch.cat([h, op(f_dual.to(y.dtype)).to(h.dtype), y.to(h.dtype)], dim=1))
        back = op.derivative(f_dual.to(y.dtype)).H(h[:, :cy].to(y.dtype))  # A* h, or [∂A(f)]* h for a nonlinear A
        f = f + self.primal(torch.cat([f, back.to(f.dtype)], dim=1))
        return f, h


class LearnedPrimalDual(Unrolled):
    """Learned primal-dual: ``n_iter`` steps of :class:`PrimalDualStep`.

    Args:
        n_iter: iterations (10).
        n_primal, n_dual: memory channels (5 and 5).
        width, depth: each block's CNN (32 channels, 3 layers).
        share_weights: one step module for all iterations.
        init: the initial image in every primal channel (the paper: "zero").
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
        operator: the operator whose spaces fix the networks' channels (:mod:`learnrecon.models.complex`; for
            MRI the dual block convolves k-space, 2 channels per coil).
        dropout: channel dropout in every block (0: none), for Monte-Carlo dropout.
    """

    convolved_spaces = ("images", "data")

    def __init__(
        self,
        n_iter: int = 10,
        n_primal: int = 5,
        n_dual: int = 5,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "zero",
        normalise: bool = True,
        operator: LinearOperator | None = None,
        dropout: float = 0.0,
    ) -> None:
        channels = network_channels(operator)
        steps = [
            PrimalDualStep(n_primal, n_dual, width, depth, channels, dropout)
            for _ in range(1 if share_weights else n_iter)
        ]
        super().__init__(steps, n_iter, init, normalise, operator)
        self.n_primal, self.n_dual = n_primal, n_dual

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        f = x0.repeat(1, self.n_primal, 1, 1)
        return f, x0.new_zeros(y.shape[0], self.n_dual * y.shape[1], *y.shape[2:])
