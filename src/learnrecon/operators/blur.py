"""Blur: 2-D convolution with a kernel, with zero or periodic boundary, and its exact adjoint.

``boundary="zero"``: (A x)[i, j] = Σ_{a,b} k[a, b] · x[i − a + ca, j − b + cb] with x = 0 outside the
image ('same' size; ca, cb the kernel centre); the adjoint is the correlation with k, zero-padded.
``boundary="periodic"``: circular convolution computed by FFT; the adjoint multiplies by the
conjugate transfer function, and ‖A‖ = max |k̂|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from learnrecon._checks import check_complexity, check_finite, check_tensor
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators._precision import full_float32
from learnrecon.operators.base import LinearOperator

__all__ = ["Blur", "gaussian_kernel", "motion_kernel"]


class Blur(LinearOperator):
    """Convolution of (*batch, H, W) images with a (kh, kw) kernel (odd sizes), same-size output.

    Args:
        kernel: (kh, kw) real kernel, odd side lengths, centre at (kh // 2, kw // 2).
        image_size: int or (H, W).
        boundary: "zero" (default) or "periodic".
    """

    def __init__(self, kernel: torch.Tensor, image_size: int | Sequence[int], boundary: str = "zero") -> None:
        if isinstance(kernel, (list, tuple)):
            kernel = torch.tensor(kernel, dtype=torch.float64)
        check_tensor(kernel, "kernel")
        check_complexity(kernel, False, "kernel")
        check_finite(kernel, "kernel")
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ShapeError(f"kernel must be 2-D with odd side lengths, got shape {tuple(kernel.shape)}")
        if boundary not in ("zero", "periodic"):
            raise ParameterError(f"unknown boundary {boundary!r}; choose 'zero' or 'periodic'")
        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if boundary == "periodic" and (kernel.shape[0] > shape[0] or kernel.shape[1] > shape[1]):
            raise ShapeError(f"kernel {tuple(kernel.shape)} is larger than the image {shape}")
        super().__init__(shape, shape)
        self.kernel = kernel.to(torch.float64)
        self.boundary = boundary

    def _kernel_like(self, x: torch.Tensor) -> torch.Tensor:
        return self._cached(("kernel", x.dtype, x.device), lambda: self.kernel.to(dtype=x.dtype, device=x.device))

    def _transfer(self, x: torch.Tensor) -> torch.Tensor:
        """rfft2 of the kernel placed with its centre at pixel (0, 0) (circular shift)."""

        def build():
            H, W = self.domain_shape
            kh, kw = self.kernel.shape
            padded = torch.zeros(H, W, dtype=torch.float64)
            padded[:kh, :kw] = self.kernel
            padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
            return torch.fft.rfft2(padded).to(device=x.device)

        return self._cached(("transfer", x.device), build)

    def _conv(self, x: torch.Tensor, flip: bool) -> torch.Tensor:
        batch = x.shape[:-2]
        flat = x.reshape(-1, 1, *self.domain_shape)
        k = self._kernel_like(x)
        # conv2d computes a correlation: convolution uses the flipped kernel.
        weight = (k if flip else torch.flip(k, dims=(0, 1)))[None, None]
        with full_float32():
            out = F.conv2d(flat, weight, padding=(k.shape[0] // 2, k.shape[1] // 2))
        return out.reshape(*batch, *self.domain_shape)

    def _fft(self, x: torch.Tensor, conjugate: bool) -> torch.Tensor:
        transfer = self._transfer(x)
        spectrum = torch.fft.rfft2(x.to(torch.float64)) * (transfer.conj() if conjugate else transfer)
        return torch.fft.irfft2(spectrum, s=self.domain_shape).to(x.dtype)

    def _forward(self, x):
        return self._conv(x, flip=False) if self.boundary == "zero" else self._fft(x, conjugate=False)

    def _adjoint(self, y):
        return self._conv(y, flip=True) if self.boundary == "zero" else self._fft(y, conjugate=True)

    def _exact_norm(self) -> float | None:
        if self.boundary == "periodic":
            return float(self._transfer(self.kernel).abs().max())
        return None

    @classmethod
    def from_config(
        cls,
        image_size: int | Sequence[int],
        kernel: Sequence[Sequence[float]] | None = None,
        sigma: float | None = None,
        kernel_size: int | None = None,
        boundary: str = "zero",
    ) -> Blur:
        """A blur from plain values (a config section): an explicit ``kernel`` (nested lists), or the Gaussian
        :func:`gaussian_kernel` of ``sigma`` (and ``kernel_size``). :meth:`config` writes the explicit kernel."""
        if (kernel is None) == (sigma is None):
            raise ParameterError("a Blur config needs exactly one of kernel (nested lists) or sigma (a Gaussian)")
        return cls(gaussian_kernel(sigma, kernel_size) if kernel is None else kernel, image_size, boundary)

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {
            "type": "Blur",
            "kernel": self.kernel.tolist(),
            "image_size": list(self.domain_shape),
            "boundary": self.boundary,
        }


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    """Normalised isotropic Gaussian kernel (size, size) float64; default size 2·⌈3σ⌉ + 1."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ParameterError(f"sigma must be a positive finite number, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else int(size)
    if size < 1 or size % 2 == 0:
        raise ParameterError(f"kernel size must be a positive odd integer, got {size}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernel(length: float, angle: float, size: int | None = None, samples: int = 64) -> torch.Tensor:
    """Normalised linear motion blur: a segment of ``length`` pixels at ``angle`` radians (counter-clockwise
    from the x axis), anti-aliased by splatting ``samples`` points per pixel of length bilinearly."""
    if not (length > 0 and math.isfinite(length)) or not math.isfinite(angle):
        raise ParameterError(f"motion blur needs a positive length and a finite angle, got {length}, {angle}")
    size = 2 * math.ceil(length / 2) + 1 if size is None else int(size)
    if size % 2 == 0 or size < 1:
        raise ParameterError(f"kernel size must be a positive odd integer, got {size}")
    t = torch.linspace(-length / 2, length / 2, max(2, int(samples * length)), dtype=torch.float64)
    cols = size // 2 + t * math.cos(angle)
    rows = size // 2 - t * math.sin(angle)
    k = torch.zeros(size + 1, size + 1, dtype=torch.float64)
    r0, c0 = rows.floor().long(), cols.floor().long()
    fr, fc = rows - r0, cols - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        k.index_put_((r0 + dr, c0 + dc), w, accumulate=True)
    k = k[:size, :size]
    return k / k.sum()
