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
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator

__all__ = ["LearnedPrimalDual", "PrimalDualStep"]


class PrimalDualStep(nn.Module):
    """One iteration: state ``(f (N,N_p,H,W), h (N,N_d,*range))`` → ``(f', h')``."""

    def __init__(self, n_primal: int, n_dual: int, width: int, depth: int) -> None:
        super().__init__()
        self.dual = ConvBlock(n_dual + 2, n_dual, width, depth)
        self.primal = ConvBlock(n_primal + 1, n_primal, width, depth)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        f, h = state
        f_dual = f[:, 1:2] if f.shape[1] > 1 else f[:, :1]
        h = h + self.dual(torch.cat([h, op(f_dual.to(y.dtype)).to(h.dtype), y.to(h.dtype)], dim=1))
        back = op.derivative(f_dual.to(y.dtype)).H(h[:, :1].to(y.dtype))  # A* h, or [∂A(f)]* h for a nonlinear A
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
    ) -> None:
        steps = [PrimalDualStep(n_primal, n_dual, width, depth) for _ in range(1 if share_weights else n_iter)]
        super().__init__(steps, n_iter, init, normalise)
        self.n_primal, self.n_dual = n_primal, n_dual

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        return x0.expand(-1, self.n_primal, -1, -1).clone(), x0.new_zeros(y.shape[0], self.n_dual, *y.shape[2:])
