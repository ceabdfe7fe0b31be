"""Lipschitz-constrained CNNs for equilibrium models: 3×3 convolutions of operator norm at most 1.

A :class:`LipschitzConv` rescales its kernel ``W`` to ``W / max(1, ‖W‖)``, where ``‖W‖`` is the operator norm of
the convolution: on a periodic ``grid × grid`` image the convolution is block-diagonalised by the DFT, so its norm
is the largest spectral norm of the ``C_out × C_in`` matrices ``Ŵ(ω)`` over the grid's frequencies (computed
exactly, in float64). Zero padding restricts the periodic convolution of a larger grid, and ``Ŵ`` is a
trigonometric polynomial of degree 1, so this is the norm on any image up to a tiny discretisation of the
frequencies (``grid`` = 32: below 1 % for a 3×3 kernel); :meth:`DeepEquilibrium.certify
<learnrecon.models.deq.DeepEquilibrium.certify>` measures what the whole map does on the data.

A :class:`LipschitzNet` chains such convolutions with LeakyReLU (1-Lipschitz) and adds a learned convex skip:
``N(x) = a·x[:, :C_out] + (1 − a)·M(x)``, ``a = sigmoid(s)`` ∈ (0, 1), so ``N`` is 1-Lipschitz in all its inputs;
scaled by ε it is ε-Lipschitz. ``M``'s last layer starts at zero, so ``N`` starts as ``a·x``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.errors import ParameterError

__all__ = ["LipschitzConv", "LipschitzNet", "conv_operator_norm", "frozen_normalisation"]


def conv_operator_norm(weight: torch.Tensor, grid: int = 32) -> torch.Tensor:
    """The operator norm of the 2-D convolution with kernel ``weight`` ``(C_out, C_in, k, k)`` on a periodic
    ``grid × grid`` image: ``max_ω ‖Ŵ(ω)‖₂`` (differentiable in ``weight``)."""
    spectrum = torch.fft.fft2(weight.to(torch.float64), s=(grid, grid))  # (C_out, C_in, grid, grid)
    matrices = spectrum.permute(2, 3, 0, 1).reshape(grid * grid, *weight.shape[:2])
    return torch.linalg.matrix_norm(matrices, ord=2).max().to(weight.dtype)


class LipschitzConv(nn.Module):
    """A 3×3 convolution (zero padding, with bias) whose operator norm is at most 1 (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, *, grid: int = 32, zero: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        if zero:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)
        self.grid = grid
        self._frozen: torch.Tensor | None = None

    def normalised_weight(self) -> torch.Tensor:
        """``W / max(1, ‖W‖)``."""
        return self.weight / conv_operator_norm(self.weight, self.grid).clamp_min(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._frozen if self._frozen is not None else self.normalised_weight()
        return F.conv2d(x, weight, self.bias, padding=1)


class LipschitzNet(nn.Module):
    """``N(x) = a·x[:, :out] + (1 − a)·M(x)`` (``skip=True``) or ``M(x)``, ``M`` a chain of ``depth``
    :class:`LipschitzConv` with LeakyReLU(0.2) between them: 1-Lipschitz from ``(B, in, H, W)`` to
    ``(B, out, H, W)``. ``skip_init`` is the initial ``a``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 32,
        depth: int = 3,
        *,
        skip: bool = True,
        skip_init: float = 0.9,
        grid: int = 32,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or in_channels < 1 or out_channels < 1:
            raise ParameterError(
                f"a Lipschitz net needs positive channels, width and depth, got in={in_channels}, "
                f"out={out_channels}, width={width}, depth={depth}"
            )
        if skip and in_channels < out_channels:
            raise ParameterError(f"a skip needs in_channels >= out_channels, got {in_channels} < {out_channels}")
        if skip and not 0 < skip_init < 1:
            raise ParameterError(f"skip_init must be in (0, 1), got {skip_init}")
        channels = [in_channels] + [width] * (depth - 1) + [out_channels]
        self.convs = nn.ModuleList(
            LipschitzConv(a, b, grid=grid, zero=i == depth - 1)
            for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True))
        )
        self.out_channels = out_channels
        self.skip_logit = nn.Parameter(torch.tensor(math.log(skip_init / (1 - skip_init)))) if skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.leaky_relu(h, 0.2)
        if self.skip_logit is None:
            return h
        a = torch.sigmoid(self.skip_logit)
        return a * x[:, : self.out_channels] + (1 - a) * h


@contextmanager
def frozen_normalisation(module: nn.Module) -> Iterator[None]:
    """Compute each :class:`LipschitzConv`'s normalised kernel once (in the autograd graph) and reuse it inside
    the block, instead of at every call: an equilibrium model calls its step many times with the same weights."""
    convs = [m for m in module.modules() if isinstance(m, LipschitzConv)]
    try:
        for conv in convs:
            conv._frozen = conv.normalised_weight()
        yield
    finally:
        for conv in convs:
            conv._frozen = None
