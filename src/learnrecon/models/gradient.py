"""Learned gradient descent (Adler & Öktem 2017) and its generalisation with a regulariser gradient.

Each of the ``K`` steps is a small CNN Λ_θk that sees the iterate, the gradient of the data term,
optionally the gradient of a known regulariser R, and ``M`` memory channels, and returns an update of the
iterate and new memory:

    (Δx, s_{k+1}) = Λ_θk(x_k, ∇_x ½‖A x_k − y‖², [∇R(x_k)], s_k),    x_{k+1} = x_k + Δx,

with ``∇_x ½‖A x − y‖² = A*(A x − y)``; for a nonlinear operator ``A`` the step sees
``[∂A(x)]*(A(x) − y)``, the gradient of ``½‖A(x) − y‖²``. The regulariser gradients on offer (``D``: forward differences
with a zero difference across the last row and column):

- ``"quadratic"``: ``R(x) = ½‖Dx‖²``, ``∇R(x) = DᵀD x``, what Adler & Öktem's network sees;
- ``"tv"``: the smoothed isotropic total variation ``R(x) = Σ sqrt(|Dx|² + ε²)``,
  ``∇R(x) = Dᵀ(Dx / sqrt(|Dx|² + ε²))`` (:class:`GeneralisedLGD`'s default).

Where this differs from Adler & Öktem's code (``learned_gradient_tomography``): the step CNN uses PReLU
where theirs uses ReLU, and the memory is passed on as the CNN returns it where theirs passes it through a
ReLU; ``share_weights=True, regulariser="quadratic"`` gives their one CNN for all iterations and their
inputs (``configs/lgd_paper.yaml``).
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import State, Unrolled
from learnrecon.models.complex import network_channels
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.gradient import FiniteDifference2D

__all__ = ["REGULARISERS", "GeneralisedLGD", "LearnedGradientDescent", "LGDStep", "regulariser_gradient", "tv_gradient"]

#: The regulariser gradients a learned gradient step can see (see the module docstring).
REGULARISERS = ("quadratic", "tv")


def tv_gradient(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Gradient of the smoothed isotropic TV ``Σ sqrt(|Dx|² + ε²)`` of images ``(N, 1, H, W)``."""
    d = FiniteDifference2D(tuple(x.shape[-2:]))
    g = d(x)  # (N, 1, 2, H, W)
    return d.H(g / torch.sqrt((g * g).sum(dim=-3, keepdim=True) + eps**2))


def _check_regulariser(kind: str) -> None:
    if kind not in REGULARISERS:
        raise ParameterError(f"unknown regulariser {kind!r}; choose one of {', '.join(REGULARISERS)}")


def regulariser_gradient(x: torch.Tensor, kind: str, eps: float = 1e-2) -> torch.Tensor:
    """``∇R(x)`` of images ``(N, 1, H, W)`` for ``kind`` in :data:`REGULARISERS` (``eps``: TV's smoothing)."""
    _check_regulariser(kind)
    if kind == "quadratic":
        d = FiniteDifference2D(tuple(x.shape[-2:]))
        return d.H(d(x))
    return tv_gradient(x, eps)


class LGDStep(nn.Module):
    """One step: state ``(x (N,c,H,W), s (N,M,H,W))`` → ``(x + Δx, s')`` (``c`` image channels: 1 for real
    images, 2 for complex ones, :mod:`learnrecon.models.complex`).

    ``regulariser`` (one of :data:`REGULARISERS`, or ``None``) adds ``∇R(x)`` (of each channel) to the CNN's inputs.
    """

    def __init__(
        self,
        n_memory: int,
        width: int,
        depth: int,
        regulariser: str | None,
        tv_eps: float = 1e-2,
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        if regulariser is not None:
            _check_regulariser(regulariser)
        self.regulariser = regulariser
        self.tv_eps = tv_eps
        self.c = c = image_channels
        self.block = ConvBlock(c * (2 + int(regulariser is not None)) + n_memory, c + n_memory, width, depth)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        x, memory = state
        x_data = x.to(y.dtype)
        inputs = [x, op.derivative(x_data).H(op(x_data) - y).to(x.dtype)]  # ∇ ½‖A(x) − y‖² = [∂A(x)]*(A(x) − y)
        if self.regulariser is not None:
            inputs.append(regulariser_gradient(x, self.regulariser, self.tv_eps))
        update = self.block(torch.cat([*inputs, memory], dim=1))
        return x + update[:, : self.c], update[:, self.c :]


class LearnedGradientDescent(Unrolled):
    """Learned gradient descent: ``n_iter`` steps of :class:`LGDStep`.

    Args:
        n_iter: iterations (Adler & Öktem: 10).
        n_memory: memory channels (5).
        width, depth: each step's CNN (32 channels, 3 layers).
        share_weights: one step module for all iterations (as Adler & Öktem's code).
        init: the initial reconstruction (see :data:`~learnrecon.models.base.INITS`).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
        regulariser: ``None`` (the default), or the regulariser whose gradient the CNN also sees
            (:data:`REGULARISERS`; Adler & Öktem: ``"quadratic"``).
        tv_eps: the smoothing ε of ``regulariser="tv"``, in the image's units.
        operator: the operator whose spaces fix the networks' channels (complex images: 2; see
            :mod:`learnrecon.models.complex`; ``None``: real images); passed by ``build_model``.
    """

    def __init__(
        self,
        n_iter: int = 10,
        n_memory: int = 5,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
        regulariser: str | None = None,
        tv_eps: float = 1e-2,
        operator: LinearOperator | None = None,
    ) -> None:
        if tv_eps <= 0:
            raise ParameterError(f"tv_eps must be positive, got {tv_eps}")
        c = network_channels(operator)[0]
        steps = [LGDStep(n_memory, width, depth, regulariser, tv_eps, c) for _ in range(1 if share_weights else n_iter)]
        super().__init__(steps, n_iter, init, normalise, operator)
        self.n_memory = n_memory

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        return x0, x0.new_zeros(x0.shape[0], self.n_memory, *x0.shape[-2:])


class GeneralisedLGD(LearnedGradientDescent):
    """Learned gradient descent whose update network also sees a regulariser's gradient: the smoothed TV's
    unless ``regulariser`` names another (the parameters are :class:`LearnedGradientDescent`'s)."""

    def __init__(
        self,
        n_iter: int = 10,
        n_memory: int = 5,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
        regulariser: str = "tv",
        tv_eps: float = 1e-2,
        operator: LinearOperator | None = None,
    ) -> None:
        if regulariser is None:
            raise ParameterError("GeneralisedLGD needs a regulariser; LearnedGradientDescent is the one without")
        super().__init__(n_iter, n_memory, width, depth, share_weights, init, normalise, regulariser, tv_eps, operator)
