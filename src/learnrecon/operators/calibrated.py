"""Operators with an unknown physical parameter held as a differentiable tensor, for calibration.

- :class:`ShiftedDetector`: a ray transform whose data are shifted along the detector by ``shift`` cells (a
  centre-of-rotation / detector offset), ``y[θ, k] = (A x)(θ, s_k − shift·Δs)``, by a Fourier shift on the
  sinogram zero-padded to an odd length ``M ≥ 2D + 1`` (no wrap-around, no Nyquist bin: the shift is unitary on
  the padded line, so the adjoint is the shift by ``−shift`` and is exact).
- :class:`GaussianBlur`: convolution with the normalised Gaussian of width ``sigma`` (pixels), zero boundary,
  a kernel of fixed support ``2·radius + 1``; the kernel is symmetric, so the operator is self-adjoint.

Both are linear in the image and differentiable in their parameter: the parameter may be a tensor with
``requires_grad`` (a calibration optimises it with the reconstruction, or with a network's weights). They are
:class:`~learnrecon.operators.nonlinear.Linearisation`\\ s, so autograd sees the parameter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.nonlinear import Linearisation

__all__ = ["GaussianBlur", "ShiftedDetector", "fourier_shift"]


def _parameter(value, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float64) if not isinstance(value, torch.Tensor) else value
    if tensor.numel() != 1 or not bool(torch.isfinite(tensor.detach()).all()):
        raise ParameterError(f"{name} must be one finite number (or a 0-d tensor), got {value!r}")
    return tensor.reshape(())


def fourier_shift(v: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``v`` (…, D) shifted by ``shift`` samples towards higher indices, ``w[k] = v(k − shift)`` (band-limited
    interpolation on the line zero-padded to odd length ``2D + 1``; differentiable in ``v`` and ``shift``)."""
    n = v.shape[-1]
    m = 2 * n + 1
    spectrum = torch.fft.rfft(v, n=m, dim=-1)
    freq = torch.fft.rfftfreq(m, dtype=torch.float64).to(v.device)
    phase = torch.exp(-2j * math.pi * freq * shift.to(device=v.device, dtype=torch.float64))
    return torch.fft.irfft(spectrum * phase.to(spectrum.dtype), n=m, dim=-1)[..., :n]


class ShiftedDetector(Linearisation):
    """``x ↦ S_shift(A x)``: the ray transform ``A`` with its data shifted by ``shift`` detector cells.

    Args:
        ray: the ideal ray transform (centre of rotation on the detector's centre).
        shift: the offset in detector cells (a number, or a 0-d tensor that may require grad).
    """

    def __init__(self, ray: LinearOperator, shift) -> None:
        if not isinstance(ray, LinearOperator) or len(ray.range_shape) != 2:
            raise ParameterError(f"ShiftedDetector needs a 2-D ray transform, got {ray!r}")
        super().__init__(ray.domain_shape, ray.range_shape)
        self.ray, self.shift = ray, _parameter(shift, "shift")
        self.pseudo_inverse_options = ray.pseudo_inverse_options

    def __repr__(self) -> str:
        return f"ShiftedDetector({self.ray!r}, shift={float(self.shift.detach()):g})"

    def _forward(self, x):
        return fourier_shift(self.ray(x), self.shift).to(x.dtype)

    def _adjoint(self, y):
        return self.ray.H(fourier_shift(y, -self.shift).to(y.dtype))

    def norm(self, dtype=torch.float64, device="cpu", **kwargs) -> float:
        """≤ ‖A‖ (the shift is unitary on the padded line, then cropped); taken as ‖A‖."""
        return self.ray.norm(dtype, device)

    def pseudo_inverse(self, y: torch.Tensor, **options) -> torch.Tensor:
        """The ray transform's pseudo-inverse of the data shifted back."""
        return self.ray.pseudo_inverse(fourier_shift(y, -self.shift.detach()).to(y.dtype), **options)


def _gaussian(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=sigma.device)
    g = torch.exp(-(t**2) / (2 * sigma.to(torch.float64) ** 2))
    return g / g.sum()


class GaussianBlur(Linearisation):
    """Zero-boundary convolution with the separable Gaussian of width ``sigma`` pixels (differentiable in it).

    Args:
        image_size: int or (H, W).
        sigma: the width (a positive number or a 0-d tensor that may require grad).
        radius: the kernel's half-size (default ``⌈4·sigma⌉`` of the initial value).
    """

    def __init__(self, image_size, sigma, radius: int | None = None) -> None:
        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        self.sigma = _parameter(sigma, "sigma")
        if not float(self.sigma.detach()) > 0:
            raise ParameterError(f"sigma must be positive, got {float(self.sigma.detach())}")
        self.radius = math.ceil(4 * float(self.sigma.detach())) if radius is None else int(radius)
        if self.radius < 1:
            raise ParameterError(f"radius must be >= 1, got {self.radius}")
        super().__init__(shape, shape)

    def __repr__(self) -> str:
        return f"GaussianBlur({self.domain_shape}, sigma={float(self.sigma.detach()):g}, radius={self.radius})"

    def kernel(self) -> torch.Tensor:
        """The 2-D kernel ``(2r + 1, 2r + 1)`` float64."""
        g = _gaussian(self.sigma, self.radius)
        return g[:, None] * g[None, :]

    def _forward(self, x):
        batch = x.shape[:-2]
        flat = x.reshape(-1, 1, *self.domain_shape)
        g = _gaussian(self.sigma, self.radius).to(device=x.device, dtype=x.dtype)
        r = self.radius
        out = F.conv2d(flat, g.reshape(1, 1, -1, 1), padding=(r, 0))
        out = F.conv2d(out, g.reshape(1, 1, 1, -1), padding=(0, r))
        return out.reshape(*batch, *self.domain_shape)

    _adjoint = _forward  # a symmetric kernel with zero padding: the operator is self-adjoint
