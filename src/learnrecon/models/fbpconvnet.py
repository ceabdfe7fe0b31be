"""FBPConvNet (Jin, McCann, Froustey & Unser 2017): a U-Net that removes the artefacts of an initial
reconstruction, with a residual connection: ``x = x_0 + U_θ(x_0)``, ``x_0 = FBP(y)``."""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import INITS, as_weights_dtype, initial_reconstruction, network_input
from learnrecon.models.nets import UNet
from learnrecon.operators.base import LinearOperator

__all__ = ["FBPConvNet"]


class FBPConvNet(nn.Module):
    """Post-processing U-Net with a residual connection.

    Args:
        depth, width, batch_norm: the :class:`~learnrecon.models.nets.UNet` (Jin et al.: depth 4, width 64).
        init: the initial reconstruction (FBP with ``fbp_filter`` by default; see
            :data:`~learnrecon.models.base.INITS`).
        fbp_filter: the FBP filter.
    """

    def __init__(
        self, depth: int = 3, width: int = 16, batch_norm: bool = True, init: str = "fbp", fbp_filter: str = "hann"
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ParameterError(f"unknown initial reconstruction {init!r}; choose one of {', '.join(INITS)}")
        self.unet = UNet(1, 1, depth=depth, width=width, batch_norm=batch_norm)
        self.init = init
        self.fbp_filter = fbp_filter

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """``(B, C, *op.range_shape) -> (B, C, *op.domain_shape)``."""
        flat = network_input(self, y, op)
        batch = y.shape[: -len(op.range_shape)]
        x0 = as_weights_dtype(self, initial_reconstruction(flat, op, self.init, self.fbp_filter))
        return (x0 + self.unet(x0)).reshape(*batch, *op.domain_shape)
