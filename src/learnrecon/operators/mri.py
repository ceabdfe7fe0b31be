"""Cartesian MRI: the orthonormal centred 2-D Fourier transform, sampling masks and coil sensitivities.

Single coil: A x = M ⊙ F x for images (*batch, H, W) → k-space (*batch, H, W).
Multi-coil:  (A x)_c = M ⊙ F (S_c ⊙ x) for images (*batch, 1, H, W) → k-space (*batch, n_coils, H, W),
adjoint A* y = Σ_c conj(S_c) ⊙ F⁻¹(M ⊙ y_c). F = fftshift ∘ fft2(norm="ortho") ∘ ifftshift (unitary),
so with a binary mask and Σ_c |S_c|² = 1 the operator has norm ≤ 1. Images and k-space are complex.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from learnrecon._checks import check_tensor
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators.base import LinearOperator

__all__ = [
    "MASK_TYPES",
    "MRI",
    "cartesian_mask",
    "centred_fft2",
    "centred_ifft2",
    "fastmri_center_fraction",
    "gaussian_coil_maps",
]

#: Cartesian line masks (fastMRI's two kinds): "random" columns besides the centre, or "equispaced" ones.
MASK_TYPES = ("random", "equispaced")


def fastmri_center_fraction(acceleration: float) -> float:
    """fastMRI's fully sampled centre: 0.08 of the columns at 4×, 0.04 at 8× (the challenge's pairs), and
    ``0.32 / acceleration`` (the same rule) at other accelerations."""
    return 0.32 / acceleration


def centred_fft2(x: torch.Tensor) -> torch.Tensor:
    """Unitary 2-D DFT over the last two dimensions with the zero frequency in the centre."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims)


def centred_ifft2(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`centred_fft2`."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims), norm="ortho"), dim=dims)


class MRI(LinearOperator):
    """Cartesian (multi-coil) MRI forward model with a binary sampling mask.

    Args:
        mask: (H, W) 0/1 (bool, int or float) sampling pattern in centred k-space.
        coil_maps: optional (n_coils, H, W) complex sensitivities; then images are (*batch, 1, H, W).
    """

    def __init__(self, mask: torch.Tensor, coil_maps: torch.Tensor | None = None) -> None:
        if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
            raise ShapeError(f"mask must be an (H, W) tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ParameterError("mask must contain only 0 and 1 (a sampling pattern); use cartesian_mask(...)")
        self.mask = mask.to(torch.bool)
        shape = tuple(mask.shape)
        self.coil_maps = None
        #: How :func:`gaussian_coil_maps` made the coil maps (``n_coils``, ``coil_width``), when it did.
        self.coil_spec: dict | None = None
        if coil_maps is not None:
            check_tensor(coil_maps, "coil_maps")
            if coil_maps.ndim != 3 or tuple(coil_maps.shape[1:]) != shape:
                raise ShapeError(
                    f"coil_maps has shape {tuple(coil_maps.shape)}; expected (n_coils, {shape[0]}, {shape[1]})"
                )
            self.coil_maps = coil_maps.to(torch.complex128)
            super().__init__((1, *shape), (coil_maps.shape[0], *shape), domain_complex=True, range_complex=True)
        else:
            super().__init__(shape, shape, domain_complex=True, range_complex=True)

    @classmethod
    def from_config(
        cls,
        image_size: int | Sequence[int],
        acceleration: float | None = None,
        center_fraction: float | None = None,
        mask_seed: int = 0,
        mask_type: str = "random",
        mask_columns: Sequence[int] | None = None,
        mask_indices: Sequence[int] | None = None,
        n_coils: int | None = None,
        coil_width: float = 0.6,
    ) -> MRI:
        """An MRI operator from plain values (a config section): the mask is :func:`cartesian_mask` of
        ``acceleration``, ``center_fraction`` (default: fastMRI's, :func:`fastmri_center_fraction`), ``mask_seed``
        and ``mask_type`` (:data:`MASK_TYPES`), or given by its sampled ``mask_columns`` or
        (any pattern) the flat ``mask_indices`` of its samples; ``n_coils`` simulated coils of
        :func:`gaussian_coil_maps` (None: one coil, no sensitivities). :meth:`config` writes the same values."""
        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        given = [name for name, v in (("acceleration", acceleration), ("mask_columns", mask_columns),
                                      ("mask_indices", mask_indices)) if v is not None]  # fmt: skip
        if len(given) != 1:
            raise ParameterError(
                f"an MRI config needs exactly one of acceleration, mask_columns or mask_indices, got {given or 'none'}"
            )
        if acceleration is not None:
            if center_fraction is None:
                center_fraction = fastmri_center_fraction(acceleration)
            mask = cartesian_mask(shape, acceleration, center_fraction, seed=mask_seed, kind=mask_type)
        else:
            mask = torch.zeros(shape[0] * shape[1] if mask_indices is not None else shape[1], dtype=torch.bool)
            mask[
                torch.as_tensor(list(mask_indices if mask_indices is not None else mask_columns), dtype=torch.long)
            ] = True
            mask = mask.reshape(shape) if mask_indices is not None else mask[None, :].expand(shape).clone()
        if n_coils is None:
            return cls(mask)
        op = cls(mask, gaussian_coil_maps(n_coils, shape, coil_width))
        op.coil_spec = {"n_coils": int(n_coils), "coil_width": float(coil_width)}
        return op

    def config(self) -> dict:
        """Plain values that rebuild this operator through :meth:`from_config` (the mask by its sampled columns,
        or its sampled points when it is not a set of whole columns; coil maps only as :func:`gaussian_coil_maps`
        made them)."""
        mask = self.mask
        columns = bool((mask == mask[:1]).all())
        sampled = (
            {"mask_columns": mask[0].nonzero().flatten().tolist()}
            if columns
            else {"mask_indices": mask.flatten().nonzero().flatten().tolist()}
        )
        coils = {}
        if self.coil_maps is not None:
            if self.coil_spec is None:
                raise ParameterError(
                    "this MRI operator's coil maps were not made by gaussian_coil_maps, so a config cannot rebuild "
                    "them; build it with MRI.from_config(..., n_coils=...) or keep the maps with the data"
                )
            coils = dict(self.coil_spec)
        return {"type": "MRI", "image_size": list(mask.shape), **sampled, **coils}

    @property
    def acceleration(self) -> float:
        """Number of k-space samples over the number acquired."""
        return self.mask.numel() / max(int(self.mask.sum()), 1)

    def _mask_like(self, t: torch.Tensor) -> torch.Tensor:
        return self._cached(("mask", t.device), lambda: self.mask.to(t.device))

    def _maps_like(self, t: torch.Tensor) -> torch.Tensor:
        return self._cached(("maps", t.dtype, t.device), lambda: self.coil_maps.to(dtype=t.dtype, device=t.device))

    def _forward(self, x):
        if self.coil_maps is not None:
            x = x * self._maps_like(x)  # (*batch, 1, H, W) * (C, H, W) -> (*batch, C, H, W)
        k = centred_fft2(x)
        return torch.where(self._mask_like(k), k, torch.zeros((), dtype=k.dtype, device=k.device))

    def _adjoint(self, y):
        masked = torch.where(self._mask_like(y), y, torch.zeros((), dtype=y.dtype, device=y.device))
        image = centred_ifft2(masked)
        if self.coil_maps is not None:
            image = (image * self._maps_like(image).conj()).sum(dim=-3, keepdim=True)
        return image

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The zero-filled inverse ``A* y``: the inverse FFT of the acquired k-space (coil-combined with the
        sensitivities' conjugates, which sum to one in square)."""
        return self.apply_adjoint(y)

    def _exact_norm(self) -> float | None:
        if self.coil_maps is None:
            return 1.0 if bool(self.mask.any()) else 0.0
        return None


def cartesian_mask(
    shape: Sequence[int], acceleration: float, center_fraction: float = 0.08, seed: int = 0, kind: str = "random"
) -> torch.Tensor:
    """A Cartesian line mask (H, W) bool, as in fastMRI: whole columns (phase-encode lines) sampled.

    ``round(W · center_fraction)`` central columns are always sampled (fastMRI: 0.08 at 4×, 0.04 at 8×,
    :func:`fastmri_center_fraction`). ``kind="random"``: further columns are drawn at random (uniformly,
    without replacement, from ``numpy``'s ``default_rng(seed)``) until ``round(W / acceleration)`` columns are
    sampled in all (fastMRI's ``RandomMaskFunc`` draws each column with that expected count instead).
    ``kind="equispaced"``: fastMRI's ``EquispacedMaskFunc``, every ``a``-th column from a random offset in
    ``[0, round(a))`` with ``a = R (n_c − W) / (n_c R − W)`` (``n_c`` centre columns), so that with the centre
    about ``W / R`` columns are sampled.
    """
    if kind not in MASK_TYPES:
        raise ParameterError(f"unknown mask type {kind!r}; choose one of {', '.join(MASK_TYPES)}")
    import numpy as np

    h, w = (int(s) for s in shape)
    if min(h, w) < 1:
        raise ParameterError(f"mask shape must be positive, got {tuple(shape)}")
    if not (acceleration >= 1 and math.isfinite(acceleration)):
        raise ParameterError(f"acceleration must be a finite number >= 1, got {acceleration}")
    if not 0 <= center_fraction <= 1:
        raise ParameterError(f"center_fraction must be in [0, 1], got {center_fraction}")
    n_lines = max(1, round(w / acceleration))
    n_centre = min(round(w * center_fraction), n_lines)
    centre = np.arange((w - n_centre + 1) // 2, (w - n_centre + 1) // 2 + n_centre)
    others = np.setdiff1d(np.arange(w), centre)
    rng = np.random.default_rng(seed)
    if kind == "random":
        extra = rng.choice(others, size=n_lines - n_centre, replace=False)
    elif n_centre * acceleration >= w or n_centre == 0:
        extra = np.arange(0, w, max(1, round(acceleration)))  # no centre to adjust the spacing for
    else:
        spacing = acceleration * (n_centre - w) / (n_centre * acceleration - w)
        offset = int(rng.integers(0, max(1, round(spacing))))
        extra = np.round(np.arange(offset, w - 1, spacing)).astype(np.int64)
    lines = torch.zeros(w, dtype=torch.bool)
    lines[torch.from_numpy(np.concatenate([centre, extra]).astype(np.int64))] = True
    return lines[None, :].expand(h, w).clone()


def gaussian_coil_maps(n_coils: int, shape: Sequence[int], width: float = 0.6) -> torch.Tensor:
    """Smooth simulated coil sensitivities (n_coils, H, W) complex128 with Σ_c |S_c|² = 1.

    Coil c sits on a circle of radius 1.2 (image in [−1, 1]²) at angle 2πc/n; its magnitude is a
    Gaussian of the distance (std ``width``) and its phase grows linearly with that distance.
    """
    if n_coils < 1:
        raise ParameterError(f"n_coils must be >= 1, got {n_coils}")
    h, w = (int(s) for s in shape)
    ys = torch.linspace(1, -1, h, dtype=torch.float64)[:, None]
    xs = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    angles = 2 * math.pi * torch.arange(n_coils, dtype=torch.float64) / n_coils
    cx, cy = 1.2 * torch.cos(angles)[:, None, None], 1.2 * torch.sin(angles)[:, None, None]
    distance = torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    maps = torch.exp(-(distance**2) / (2 * width**2)) * torch.exp(1j * distance)
    return maps / torch.sqrt((maps.abs() ** 2).sum(dim=0, keepdim=True))
