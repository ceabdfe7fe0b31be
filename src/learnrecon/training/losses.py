"""Training losses ``loss(x̂, x) -> scalar``: mean squared error, mean absolute error, 1 − SSIM, − PSNR.

``ssim`` is one minus the mean per-image SSIM with the range of each reference as its data range, and
``psnr`` is minus the mean per-image PSNR, ``−(1/B) Σ_b 10·log10(r_b² / MSE_b)`` with ``r_b`` the range
(max − min) of reference ``b``: the benchmark's metrics themselves, unchanged when an image and its reference
are scaled together. Mean squared error weighs image ``b`` by ``r_b²`` (its errors scale with its
intensities), so on phantoms whose ranges vary (raw ellipse sums: 0.8-2.0 between the 5th and 95th
percentile) it spends its capacity on the high-contrast images that mean PSNR counts no more than the
others; the gradient of ``log MSE_b`` is that of ``MSE_b`` divided by ``MSE_b``.

Complex images (MRI): ``mse`` and ``l1`` take the complex error, ``mean |x̂ − x|²`` and ``mean |x̂ − x|`` (the
squared error of the two real channels, :mod:`learnrecon.models.complex`); ``ssim`` and ``psnr`` compare the
magnitudes ``|x̂|`` and ``|x|``, as the evaluation scores them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError

__all__ = ["LOSSES", "get_loss"]


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    x = x.abs() if x.is_complex() else x
    return x.reshape(x.shape[0], -1, *x.shape[-2:]) if x.ndim > 4 else x


def _ssim_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return 1 - metrics.ssim(_magnitude(x_hat), _magnitude(x)).mean()


def _psnr_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -metrics.psnr(_magnitude(x_hat), _magnitude(x)).mean()


def _mse_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x_hat.is_complex() or x.is_complex():
        return (x_hat - x).abs().pow(2).mean()
    return torch.nn.functional.mse_loss(x_hat, x)


def _l1_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x_hat.is_complex() or x.is_complex():
        return (x_hat - x).abs().mean()
    return torch.nn.functional.l1_loss(x_hat, x)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": _mse_loss,
    "l1": _l1_loss,
    "ssim": _ssim_loss,
    "psnr": _psnr_loss,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ParameterError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
