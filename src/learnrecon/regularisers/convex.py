"""The adversarial convex regulariser (Mukherjee, Dittmer, Shumaylov, Lunz, Öktem & Schönlieb, 2020/2021).

The critic is an input-convex neural network (ICNN, Amos et al. 2017), convex in its input image by construction:

    z₁ = φ(W₀ x + b₀),   z_{k+1} = φ(U_k z_k + W_k x + b_k),   R_θ(x) = mean over pixels of z_L,

with convolutions ``W_k`` of any sign, convolutions ``U_k`` with non-negative weights (projected onto ``U ≥ 0``
after every optimiser step: :meth:`ConvexRegulariser.after_step`), and φ convex and non-decreasing: a smooth leaky
ReLU, ``φ(z) = 0.2z + 0.8 softplus(z)`` (Mukherjee et al. use LeakyReLU; a smooth φ makes the objective smooth, so
that gradient descent converges linearly and the gradient, hence the certificate below, goes to zero).
A non-negative combination of convex functions composed with a convex non-decreasing φ is convex, so every
``z_k`` is convex in ``x``; the mean is too. It is trained as the adversarial regulariser is (:mod:`.adversarial`).

The reconstruction ``argmin ½‖Ax − y‖² + λ(R_θ(x) + μ/2‖x‖²)`` is then a convex problem, μ-strongly convex for
μ > 0 (Mukherjee et al. add such a term): its minimiser is unique, gradient descent converges to it, and
``f(x) − f* ≤ ‖∇f(x)‖²/(2λμ)`` certifies the optimality gap: the solve stops when that bound is below
``gap_tol`` for every sample, or after ``n_iter`` iterations (:attr:`last_descent` holds the bounds reached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.regularisers.adversarial import VariationalReconstructor

__all__ = ["ICNN", "ConvexRegulariser"]


class ICNN(nn.Module):
    """An input-convex CNN: images ``(N, 1, H, W)`` → ``(N,)``, convex in the image (module docstring).

    ``depth`` layers of ``width`` channels, 3×3 convolutions (5×5 from the input), the smooth leaky ReLU φ.
    """

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.from_input = nn.ModuleList(
            nn.Conv2d(1, width if k < depth - 1 else 1, 5, padding=2) for k in range(depth)
        )  # W_k x + b_k
        self.from_hidden = nn.ModuleList(
            nn.Conv2d(width, width if k < depth - 2 else 1, 3, padding=1, bias=False) for k in range(depth - 1)
        )  # U_k z_k, U_k ≥ 0
        for conv in self.from_hidden:
            nn.init.uniform_(conv.weight, 0.0, 2.0 / (9 * width))
        self.project()

    @torch.no_grad()
    def project(self) -> None:
        """Clip the hidden-to-hidden weights to ``U ≥ 0`` (what keeps the network convex)."""
        for conv in self.from_hidden:
            conv.weight.clamp_(min=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = _phi(self.from_input[0](x))
        for hidden, direct in zip(self.from_hidden, self.from_input[1:], strict=True):
            z = _phi(hidden(z) + direct(x))
        return z.flatten(1).mean(dim=1)


def _phi(z: torch.Tensor) -> torch.Tensor:
    """``0.2z + 0.8 softplus(z)``: convex, non-decreasing, smooth, slopes 0.2 and 1 far from 0."""
    return 0.2 * z + 0.8 * F.softplus(z)


class ConvexRegulariser(VariationalReconstructor):
    """The adversarial convex regulariser as a reconstructor (see the module docstring).

    Args:
        width, depth: the ICNN's channels and layers.
        lam: the weight λ ≥ 0 on the normalised problem.
        convexity: μ > 0 of the strongly convex term ``μ/2‖x‖²`` inside the regulariser.
        n_iter: at most this many gradient-descent iterations (with backtracking).
        gap_tol: stop when every sample's optimality gap bound ``‖∇f‖²/(2λμ)`` is below this (0: run ``n_iter``).
        step: the initial step of the descent.
        penalty: μ of the gradient penalty in training.
        init, fbp_filter: the starting point (see :data:`learnrecon.models.base.INITS`).
    """

    def __init__(
        self,
        width: int = 16,
        depth: int = 4,
        lam: float = 0.1,
        convexity: float = 1e-3,
        n_iter: int = 200,
        gap_tol: float = 1e-6,
        step: float = 1.0,
        penalty: float = 10.0,
        init: str = "fbp",
        fbp_filter: str = "hann",
    ) -> None:
        super().__init__(lam, n_iter, step, penalty, init, fbp_filter)
        self.regulariser = ICNN(width, depth)
        self.strong_convexity = float(convexity)
        self.gap_tol = float(gap_tol)

    def after_step(self) -> None:
        """Called by the trainer after each optimiser step: keep the ICNN convex."""
        self.regulariser.project()
