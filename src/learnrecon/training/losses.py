"""Training losses ``loss(x̂, x) -> scalar``: mean squared error, mean absolute error, 1 − SSIM."""

from __future__ import annotations

from collections.abc import Callable

import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError

__all__ = ["LOSSES", "get_loss"]


def _ssim_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return 1 - metrics.ssim(x_hat, x, data_range=1.0).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": torch.nn.functional.mse_loss,
    "l1": torch.nn.functional.l1_loss,
    "ssim": _ssim_loss,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ParameterError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
