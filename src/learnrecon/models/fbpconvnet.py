"""FBPConvNet (Jin, McCann, Froustey & Unser 2017): a U-Net that removes the artefacts of an initial
reconstruction, with a residual connection: ``x = x_0 + U_θ(x_0)``, ``x_0 = FBP(y)``.

With ``symmetric=True`` the U-Net is averaged over the quarter turns and reflections ``D`` of the image grid,
``x = x_0 + (1/|D|) Σ_{g ∈ D} g⁻¹ U_θ(g x_0)`` (:func:`~learnrecon.models.ensemble.dihedral_image_average`):
a U-Net made equivariant by group averaging (Celledoni et al. 2021 build the same equivariance into learned
reconstruction with group convolutions). Where the geometry carries the grid's symmetries to permutations of the
data (``A g = T_g A``; uniform parallel-beam angles, :mod:`learnrecon.operators.symmetry`), FBP is equivariant and
so is the whole model, ``x(T_g y) = g x(y)``, as the best reconstruction is when the images' distribution is
invariant too. It costs ``|D|`` (8 on square images) U-Net evaluations."""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import INITS, as_weights_dtype, initial_reconstruction, network_input
from learnrecon.models.complex import from_network, network_channels, network_operator, to_network
from learnrecon.models.ensemble import dihedral_image_average
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
        symmetric: average the U-Net over the grid's quarter turns and reflections (module docstring).
        operator: the operator whose images fix the U-Net's channels (complex MRI images: 2, real and imaginary,
            :mod:`learnrecon.models.complex`; then ``init="auto"`` is the zero-filled inverse FFT); ``None``: real.
    """

    #: Parameters that change what the model computes but not its weights: a checkpoint trained with one
    #: value can start training (``training.init_from``) with another.
    weight_free_params = ("symmetric",)

    def __init__(
        self,
        depth: int = 3,
        width: int = 16,
        batch_norm: bool = True,
        init: str = "fbp",
        fbp_filter: str = "hann",
        symmetric: bool = False,
        operator: LinearOperator | None = None,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ParameterError(f"unknown initial reconstruction {init!r}; choose one of {', '.join(INITS)}")
        self.channels = network_channels(operator)
        c = self.channels[0]
        self.unet = UNet(c, c, depth=depth, width=width, batch_norm=batch_norm)
        self.init = init
        self.fbp_filter = fbp_filter
        self.symmetric = symmetric

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """``(B, C, *op.range_shape) -> (B, C, *op.domain_shape)``."""
        flat = network_input(self, y, op)
        batch = y.shape[: -len(op.range_shape)]
        view = network_operator(op)
        x0 = as_weights_dtype(self, initial_reconstruction(to_network(flat, op), view, self.init, self.fbp_filter))
        correction = dihedral_image_average(self.unet, x0) if self.symmetric else self.unet(x0)
        return from_network(x0 + correction, op).reshape(*batch, *op.domain_shape)
