"""Variational network (Hammernik et al. 2018): unrolled gradient steps on a learned field-of-experts
regulariser with a learned data-term weight per stage.

    x_{t+1} = x_t − Σ_i K_iᵀ φ'_{t,i}(K_i x_t) − λ_t A*(A x_t − y),

where ``K_i`` are convolutions with zero-mean, unit-norm filters (``n_filters`` of ``filter_size²``) and
each potential derivative is a mix of Gaussian radial basis functions,
``φ'_{t,i}(z) = Σ_j w_{t,i,j} exp(−(z − μ_j)²/(2σ²))`` with ``n_rbf`` centres μ_j evenly spaced in
``[−v_max, v_max]`` and σ their spacing. Hammernik et al.: 10 stages, 24 filters of 11×11, 31 RBFs.
The potentials start as ``φ'(z) ≈ α z`` (a quadratic smoothness prior) and ``λ_t`` at 1
(on the normalised operator). Unlike Hammernik et al.'s code, the filters are reparameterised onto the unit
sphere (their code projects onto the ball ‖k‖ ≤ 1), and the convolutions pad with zeros (theirs reflect).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import State, Unrolled
from learnrecon.models.complex import network_channels
from learnrecon.operators.base import LinearOperator

__all__ = ["VariationalNetwork", "VNStage"]


class _RBFMix(torch.autograd.Function):
    """``Σ_j w_{ij} exp(−(z − μ_j)²/(2σ²))`` per filter ``i``, with a hand-written backward that recomputes
    the Gaussians one centre at a time instead of storing them: the backward keeps only ``z`` (one stage at 128²,
    batch 5, 24 filters: 31 MB of memory after the forward instead of 1006 MB with autograd), about as fast."""

    @staticmethod
    def forward(ctx, z, weights, centres, sigma):
        out = torch.zeros_like(z)
        for j in range(centres.shape[0]):
            out += weights[:, j, None, None] * torch.exp(-((z - centres[j]) ** 2) / (2 * sigma**2))
        ctx.save_for_backward(z, weights, centres)
        ctx.sigma = sigma
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        z, weights, centres = ctx.saved_tensors
        sigma = ctx.sigma
        grad_z, grad_w = torch.zeros_like(z), torch.empty_like(weights)
        for j in range(centres.shape[0]):
            diff = z - centres[j]
            gauss = torch.exp(-(diff**2) / (2 * sigma**2))
            grad_w[:, j] = (grad * gauss).sum(dim=(0, 2, 3))
            grad_z -= weights[:, j, None, None] * gauss * diff / sigma**2
        return grad * grad_z, grad_w, None, None


class VNStage(nn.Module):
    """One stage: state ``(x,)`` → ``(x − Σ K_iᵀ φ'_i(K_i x) − λ A*(A x − y),)``."""

    def __init__(
        self, n_filters: int, filter_size: int, n_rbf: int, v_max: float, alpha: float, image_channels: int = 1
    ) -> None:
        super().__init__()
        if filter_size % 2 == 0 or n_rbf < 2 or v_max <= 0:
            raise ParameterError(
                f"need an odd filter_size, n_rbf >= 2 and v_max > 0, got {filter_size}, {n_rbf}, {v_max}"
            )
        shape = (n_filters, image_channels, filter_size, filter_size)
        self.filters = nn.Parameter(torch.randn(shape) / (filter_size * image_channels**0.5))
        centres = torch.linspace(-v_max, v_max, n_rbf)
        self.register_buffer("centres", centres)
        self.sigma = float(centres[1] - centres[0])
        # Σ_j μ_j exp(−(z − μ_j)²/(2σ²)) ≈ √(2π) z when σ is the spacing of the μ_j, hence the 1/√(2π).
        self.weights = nn.Parameter(alpha / math.sqrt(2 * math.pi) * centres.repeat(n_filters, 1))  # (n_filters, n_rbf)
        self.log_lam = nn.Parameter(torch.zeros(()))

    def kernels(self) -> torch.Tensor:
        """The filters ``(n_filters, c, s, s)``, zero-mean on each channel and of unit norm over all of them."""
        k = self.filters - self.filters.mean(dim=(-2, -1), keepdim=True)
        return k / k.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]

    def potential_derivative(self, z: torch.Tensor) -> torch.Tensor:
        """``φ'_i(z)`` for responses ``z`` ``(N, n_filters, H, W)``."""
        return _RBFMix.apply(z, self.weights, self.centres.to(z.dtype), self.sigma)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (x,) = state
        k = self.kernels()
        pad = k.shape[-1] // 2
        response = F.conv2d(x, k, padding=pad)  # K x (zero boundary); its exact adjoint is conv_transpose2d
        regulariser = F.conv_transpose2d(self.potential_derivative(response), k, padding=pad)
        data = op.H(op(x.to(y.dtype)) - y).to(x.dtype)
        return (x - regulariser - self.log_lam.exp() * data,)


class VariationalNetwork(Unrolled):
    """A variational network of ``n_stages`` :class:`VNStage` s.

    Args:
        n_stages, n_filters, filter_size, n_rbf: Hammernik et al. use 10, 24, 11, 31.
        v_max: the RBF centres span ``[−v_max, v_max]`` (filter responses of [0, 1] images).
        alpha: initial slope of the potential derivatives.
        share_weights: one stage's parameters for all stages.
        init: the initial reconstruction (see :data:`~learnrecon.models.base.INITS`).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
        operator: the operator whose spaces fix the filters' channels: for complex (MRI) images each filter has
            a real and an imaginary part, ``K_i x = k_i^re * Re x + k_i^im * Im x`` (Hammernik et al.'s MRI form;
            :mod:`learnrecon.models.complex`); ``None``: real images.
    """

    def __init__(
        self,
        n_stages: int = 10,
        n_filters: int = 24,
        filter_size: int = 11,
        n_rbf: int = 31,
        v_max: float = 1.0,
        alpha: float = 0.01,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
        operator: LinearOperator | None = None,
    ) -> None:
        c = network_channels(operator)[0]
        stages = [
            VNStage(n_filters, filter_size, n_rbf, v_max, alpha, c) for _ in range(1 if share_weights else n_stages)
        ]
        super().__init__(stages, n_stages, init, normalise, operator)
