"""Training losses ``loss(x̂, x) -> scalar``: mean squared error, mean absolute error, 1 − SSIM, − PSNR.

``ssim`` is one minus the mean per-image SSIM with the range of each reference as its data range, and
``psnr`` is minus the mean per-image PSNR, ``−(1/B) Σ_b 10·log10(r_b² / MSE_b)`` with ``r_b`` the range
(max − min) of reference ``b``: the benchmark's metrics themselves, unchanged when an image and its reference
are scaled together. Mean squared error weighs image ``b`` by ``r_b²`` (its errors scale with its
intensities), so on phantoms whose ranges vary (raw ellipse sums: 0.8-2.0 between the 5th and 95th
percentile) it spends its capacity on the high-contrast images that mean PSNR counts no more than the
others; the gradient of ``log MSE_b`` is that of ``MSE_b`` divided by ``MSE_b``.

:class:`JointLoss` is task-adapted training's ``(1 − C)·ℓ_X(x̂, x) + C·ℓ_D(logits, d)`` (Adler et al. 2022), with
``ℓ_D`` the pixel-mean cross-entropy, plus ``dice_weight`` times the soft Dice loss if asked.

Complex images (MRI): ``mse`` and ``l1`` take the complex error, ``mean |x̂ − x|²`` and ``mean |x̂ − x|`` (the
squared error of the two real channels, :mod:`learnrecon.models.complex`); ``ssim`` and ``psnr`` compare the
magnitudes ``|x̂|`` and ``|x|``, as the evaluation scores them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError

__all__ = ["LOSSES", "JointLoss", "get_loss", "soft_dice_loss"]


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


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1 − mean_k 2 Σ p_k q_k / (Σ p_k + Σ q_k)`` over the classes, with ``p = softmax(logits)`` ``(B, K, H, W)``
    and ``q`` the one-hot labels ``(B, H, W)``: a differentiable Dice (Milletari et al. 2016)."""
    p = logits.softmax(dim=1)
    q = torch.nn.functional.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = (0, 2, 3)
    return 1 - (2 * (p * q).sum(dims) / (p.sum(dims) + q.sum(dims)).clamp_min(1e-6)).mean()


class JointLoss:
    """``ℓ = (1 − C)·ℓ_X(x̂, x) + C·(CE(logits, d) + dice_weight·soft_dice(logits, d))`` for a task-adapted model's
    output ``(x̂, logits)``, truth ``x`` and labels ``d`` ``(B, H, W)`` (classes ``0 … K−1``).

    ``task_weight`` is ``C`` ∈ [0, 1]: 0 trains for the image only, 1 for the task only (end to end). With
    ``C = 0`` or ``1`` the other term is not computed, so no gradient flows from it.
    """

    #: The trainer passes the batch's labels to losses that say so.
    uses_labels = True

    def __init__(self, task_weight: float, image_loss: str = "mse", dice_weight: float = 0.0) -> None:
        if isinstance(task_weight, bool) or not isinstance(task_weight, int | float) or not 0 <= task_weight <= 1:
            raise ParameterError(f"the task weight C must be a number in [0, 1], got {task_weight!r}")
        if dice_weight < 0:
            raise ParameterError(f"the soft Dice weight must be >= 0, got {dice_weight!r}")
        self.task_weight, self.dice_weight = float(task_weight), float(dice_weight)
        self.image_loss = get_loss(image_loss)

    def terms(self, output, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The image loss ``ℓ_X`` and the task loss ``ℓ_D`` (each computed only where its weight is not 0)."""
        terms = {}
        if self.task_weight < 1:
            image = output.image
            terms["image"] = self.image_loss(image if image.is_complex() else image.float(), x)
        if self.task_weight > 0:
            logits = output.logits.float()
            task = torch.nn.functional.cross_entropy(logits, labels)
            terms["task"] = task + self.dice_weight * soft_dice_loss(logits, labels) if self.dice_weight else task
        return terms

    def __call__(self, output, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        terms = self.terms(output, x, labels)
        c = self.task_weight
        return (1 - c) * terms.get("image", 0.0) + c * terms.get("task", 0.0)
