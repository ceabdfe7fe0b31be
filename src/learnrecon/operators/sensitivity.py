"""Coil sensitivities estimated from the fully sampled k-space centre (the auto-calibration signal, ACS).

The classic low-resolution estimate (the starting point of E2E-VarNet's sensitivity module, Sriram et al. 2020):
keep the ACS, the ``n`` contiguous sampled columns around the zero frequency (column ``W // 2`` of centred
k-space), all rows, optionally tapered across the columns by a Hann window, and divide each coil's
low-resolution image by their root-sum-of-squares,

    I_c = F⁻¹(w ⊙ k_c),   S_c = I_c / max(√(Σ_c |I_c|²), ε · max √(Σ_c |I_c|²)),

``w`` the ACS columns' indicator (``window="none"``, E2E-VarNet's) or a Hann window over them (``"hann"``: less
ringing, lower resolution). With the whole of k-space as ACS, ``I_c = S_c x`` and ``S_c = S_c x / |x|`` exactly
where ``|x|`` exceeds the floor.

Since the true sensitivities are smooth, ``I_c ≈ S_c · (low-pass x)``, so the estimate is ``S_c · e^{iφ}`` with
``φ`` the phase of the low-pass image: the maps are known up to a phase common to all coils (and normalised to
``Σ_c |S_c|² = 1`` wherever the image is above ``ε`` of its maximum), which a SENSE reconstruction absorbs into the
image's phase, leaving its magnitude unchanged. ESPIRiT (eigenvector maps) is not implemented.
"""

from __future__ import annotations

import torch

from learnrecon._checks import check_tensor
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators.mri import centred_ifft2

__all__ = ["WINDOWS", "acs_width", "estimate_coil_maps"]


def _column_mask(mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The sampled columns ``(W,)`` bool of a line mask ``(W,)`` or ``(H, W)`` for k-space of ``shape`` (H, W)."""
    mask = torch.as_tensor(mask)
    if mask.is_complex():
        raise ParameterError("the mask must be real 0/1 values (a sampling pattern), not complex")
    mask = mask.to(torch.bool)
    if mask.ndim == 1:
        if mask.shape[0] != shape[1]:
            raise ShapeError(f"the mask has {mask.shape[0]} columns but the k-space {shape[1]} (shape {shape})")
        return mask
    if mask.ndim != 2 or tuple(mask.shape) != shape:
        raise ShapeError(f"the mask has shape {tuple(mask.shape)} but the k-space is {shape}; give (W,) or (H, W)")
    if not bool((mask == mask[:1]).all()):
        raise ParameterError(
            "estimating coil sensitivities needs a Cartesian line mask (whole columns sampled, as cartesian_mask "
            "makes), so that the k-space centre is fully sampled along every row"
        )
    return mask[0]


def acs_width(mask: torch.Tensor) -> int:
    """The number of contiguous sampled columns around the centre column ``W // 2`` of a line mask ``(W,)`` or
    ``(H, W)`` (fastMRI's ``num_low_frequency``); a ParameterError when the centre column is not sampled."""
    mask = torch.as_tensor(mask)
    left, right = _acs(_column_mask(mask, tuple(mask.shape) if mask.ndim == 2 else (1, mask.shape[-1])))
    return right - left + 1


def _acs(columns: torch.Tensor) -> tuple[int, int]:
    """The first and last column of the contiguous sampled block around ``W // 2`` of ``columns`` (W,) bool."""
    w = columns.shape[0]
    centre = w // 2
    if not bool(columns[centre]):
        raise ParameterError(
            f"the mask does not sample the k-space centre (column {centre} of {w}), so there is no fully sampled "
            "centre (ACS) to estimate coil sensitivities from; sample the centre lines (cartesian_mask's "
            "center_fraction > 0) or give the coil maps"
        )
    left, right = centre, centre
    while left > 0 and bool(columns[left - 1]):
        left -= 1
    while right < w - 1 and bool(columns[right + 1]):
        right += 1
    return left, right


#: The tapers of the ACS columns :func:`estimate_coil_maps` knows.
WINDOWS = ("none", "hann")


def estimate_coil_maps(
    kspace: torch.Tensor, mask: torch.Tensor, *, window: str = "none", eps: float = 0.05
) -> torch.Tensor:
    """Coil sensitivities from the ACS of multi-coil centred k-space (module docstring for the maths).

    Args:
        kspace: ``(*batch, n_coils, H, W)`` complex, centred (the zero frequency at ``(H // 2, W // 2)``, as
            :func:`~learnrecon.operators.mri.centred_fft2` and fastMRI store it); only the ACS is read.
        mask: the sampled columns, ``(W,)`` or an ``(H, W)`` line mask; its contiguous sampled columns around
            ``W // 2`` are the ACS (:func:`acs_width`).
        window: ``"none"`` (the ACS columns as they are) or ``"hann"`` (:data:`WINDOWS`).
        eps: the fraction of the largest low-resolution root-sum-of-squares below which the maps are damped
            (so that the background's noise is not normalised to unit sensitivity).

    Returns:
        ``(*batch, n_coils, H, W)`` complex sensitivities of ``kspace``'s dtype, ``Σ_c |S_c|² = 1`` where the
        low-resolution image exceeds ``eps`` of its maximum, known up to a phase common to the coils.
    """
    check_tensor(kspace, "kspace")
    if not kspace.is_complex() or kspace.ndim < 3:
        raise ShapeError(
            f"kspace must be complex multi-coil k-space (*batch, n_coils, H, W), got {kspace.dtype} "
            f"{tuple(kspace.shape)}"
        )
    if not 0 <= eps < 1:
        raise ParameterError(f"eps must be in [0, 1), got {eps}")
    if window not in WINDOWS:
        raise ParameterError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")
    left, right = _acs(_column_mask(mask, tuple(kspace.shape[-2:])))
    options = {"dtype": kspace.real.dtype, "device": kspace.device}
    taper = torch.zeros(kspace.shape[-1], **options)
    n = right - left + 1
    taper[left : right + 1] = 1 if window == "none" else torch.hann_window(n + 2, periodic=False, **options)[1:-1]
    images = centred_ifft2(kspace * taper)
    root = images.abs().pow(2).sum(dim=-3, keepdim=True).sqrt()
    floor = eps * root.amax(dim=(-2, -1), keepdim=True)
    return images / torch.maximum(root, floor).clamp_min(torch.finfo(options["dtype"]).tiny)
