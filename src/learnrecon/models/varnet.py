"""The variational network in its MRI form (Hammernik et al. 2018) and an E2E-VarNet-style model (Sriram et al.
2020), both for Cartesian (multi-coil) MRI with known coil sensitivities.

:class:`MRIVariationalNetwork` is :class:`~learnrecon.models.variational.VariationalNetwork` with Hammernik et
al.'s MRI settings: complex images as two real channels (:mod:`learnrecon.models.complex`), so each of the
``n_filters`` filters has a real and an imaginary part, ``K_i x = k_i^re * Re x + k_i^im * Im x``, with RBF
potentials and the data term's gradient ``λ_t A*(A x − y)`` through the (multi-coil) operator, from the
zero-filled image. Hammernik et al.: 10 stages, 48 filters of 11×11, 31 RBFs (the defaults here).

:class:`E2EVarNet` works in k-space: cascades

    k_{t+1} = k_t − η_t M (k_t − ỹ) − E(U_t(R(k_t))),    k_0 = ỹ,

with ``ỹ`` the measured (zero-filled) k-space, ``M`` the sampling mask, ``E x = (F(S_c x))_c`` the coil expansion
and ``R k = Σ_c conj(S_c) F⁻¹ k_c`` its adjoint (the SENSE combination; with ``Σ_c |S_c|² = 1``, ``R E = I``),
``U_t`` a U-Net on the two real channels of the image (normalised by each image's mean and standard deviation, as
fastMRI's ``NormUnet``) and ``η_t`` a learned soft data-consistency weight (starting at 1). The output is
``R(k_T)``, the complex image (fastMRI's model returns the root-sum-of-squares magnitude of ``F⁻¹ k_T``
instead, and estimates the sensitivities with a second U-Net; here they are given: the operator's).
Defaults are CPU-sized (the paper: 12 cascades, U-Nets of 18 channels and 4 levels).
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import DeviceError, ParameterError
from learnrecon.models.base import flatten_channels
from learnrecon.models.complex import from_channels, to_channels
from learnrecon.models.nets import UNet
from learnrecon.models.variational import VariationalNetwork
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.mri import MRI, centred_fft2, centred_ifft2

__all__ = ["E2EVarNet", "MRIVariationalNetwork", "VarNetCascade", "coil_expand", "coil_reduce"]


class MRIVariationalNetwork(VariationalNetwork):
    """The variational network with Hammernik et al.'s MRI settings (module docstring); its parameters are
    :class:`~learnrecon.models.variational.VariationalNetwork`'s. ``operator`` (an MRI operator, passed by
    ``build_model``) gives the filters their real and imaginary parts."""

    def __init__(
        self,
        n_stages: int = 10,
        n_filters: int = 48,
        filter_size: int = 11,
        n_rbf: int = 31,
        v_max: float = 1.0,
        alpha: float = 0.01,
        share_weights: bool = False,
        init: str = "auto",
        normalise: bool = True,
        operator: LinearOperator | None = None,
    ) -> None:
        super().__init__(
            n_stages, n_filters, filter_size, n_rbf, v_max, alpha, share_weights, init, normalise, operator
        )


def _check_mri(op: LinearOperator, model: str) -> MRI:
    if not isinstance(op, MRI):
        raise ParameterError(
            f"{model} works in the k-space of a Cartesian MRI operator (learnrecon.operators.MRI), got {op.name}; "
            "for other operators use an unrolled model (lgd, lpd, vn)"
        )
    return op


def coil_expand(op: MRI, x: torch.Tensor) -> torch.Tensor:
    """``E x``: the full (unmasked) k-space of every coil, ``(N, *op.range_shape)`` from images
    ``(N, *op.domain_shape)``."""
    if op.coil_maps is not None:
        x = x * op.coil_maps.to(dtype=x.dtype, device=x.device)
    return centred_fft2(x)


def coil_reduce(op: MRI, k: torch.Tensor) -> torch.Tensor:
    """``R k = Σ_c conj(S_c) F⁻¹ k_c`` (the adjoint of :func:`coil_expand`), images ``(N, *op.domain_shape)``."""
    image = centred_ifft2(k)
    if op.coil_maps is not None:
        image = (image * op.coil_maps.to(dtype=image.dtype, device=image.device).conj()).sum(dim=-3, keepdim=True)
    return image


class _NormUNet(nn.Module):
    """A U-Net on the two real channels of complex images, each channel normalised by its image's mean and
    standard deviation and scaled back afterwards (fastMRI's ``NormUnet``)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.unet = UNet(2, 2, depth=depth, width=width, batch_norm=False)

    def forward(self, image: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        t = to_channels(image, shape, True)  # (N, 2, H, W)
        weight = self.unet.head.weight
        t = t.to(weight.dtype)
        mean = t.mean(dim=(-2, -1), keepdim=True)
        std = t.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        out = self.unet((t - mean) / std) * std + mean
        return from_channels(out.to(image.real.dtype).contiguous(), shape, True)


class VarNetCascade(nn.Module):
    """One cascade: ``k ↦ k − η M (k − ỹ) − E(U(R k))`` (module docstring); ``regulariser=False`` leaves only
    the soft data consistency (for tests of its formula)."""

    def __init__(self, width: int, depth: int, regulariser: bool = True) -> None:
        super().__init__()
        self.dc_weight = nn.Parameter(torch.ones(()))
        self.regulariser = _NormUNet(width, depth) if regulariser else None

    def forward(self, k: torch.Tensor, y: torch.Tensor, op: MRI) -> torch.Tensor:
        mask = op.mask.to(k.device)
        soft_dc = torch.where(mask, k - y, torch.zeros((), dtype=k.dtype, device=k.device)) * self.dc_weight
        if self.regulariser is None:
            return k - soft_dc
        image = coil_reduce(op, k)
        model_term = coil_expand(op, self.regulariser(image, op.domain_shape))
        return k - soft_dc - model_term


class E2EVarNet(nn.Module):
    """E2E-VarNet-style reconstruction with given coil sensitivities (module docstring).

    Args:
        n_cascades: cascades (Sriram et al.: 12).
        width, depth: each cascade's U-Net (top channels, levels; Sriram et al.: 18, 4).
        share_weights: one cascade's parameters for all cascades.
    """

    def __init__(self, n_cascades: int = 6, width: int = 8, depth: int = 2, share_weights: bool = False) -> None:
        super().__init__()
        if n_cascades < 1:
            raise ParameterError(f"n_cascades must be >= 1, got {n_cascades}")
        self.cascades = nn.ModuleList(VarNetCascade(width, depth) for _ in range(1 if share_weights else n_cascades))
        self.n_cascades = n_cascades

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """Reconstruct ``(B, C, *op.domain_shape)`` (complex) from k-space ``y`` ``(B, C, *op.range_shape)``."""
        op = _check_mri(op, type(self).__name__)
        flat = flatten_channels(y, op)
        batch = y.shape[: -len(op.range_shape)]
        weight = next(self.parameters())
        if weight.device != y.device:
            raise DeviceError(
                f"measurements are on {y.device} but the model's weights are on {weight.device}; "
                "move one of them with .to(device)"
            )
        if not flat.is_complex():
            raise ParameterError(f"{type(self).__name__} needs complex k-space data, got {flat.dtype}")
        y_k = flat.reshape(-1, *op.range_shape)
        mask = op.mask.to(y_k.device)
        y_k = torch.where(mask, y_k, torch.zeros((), dtype=y_k.dtype, device=y_k.device))
        k = y_k
        for t in range(self.n_cascades):
            k = self.cascades[t % len(self.cascades)](k, y_k, op)
        return coil_reduce(op, k).reshape(*batch, *op.domain_shape)
