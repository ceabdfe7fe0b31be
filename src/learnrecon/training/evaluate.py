"""Evaluate a reconstructor on (x, y) pairs: per-image PSNR and SSIM, their means, and the time per image."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from learnrecon import metrics
from learnrecon.operators.base import LinearOperator

__all__ = ["evaluate_model"]


@torch.no_grad()
def evaluate_model(
    model: Callable[[torch.Tensor, LinearOperator], torch.Tensor],
    op: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    data_range: float | None = 1.0,
) -> dict:
    """Reconstruct ``y`` ``(n, 1, *range)`` with ``model(y, op)`` and compare with ``x`` ``(n, 1, H, W)``.

    PSNR and SSIM use the peak ``data_range`` (default 1: images in [0, 1], as training validates), or with
    ``None`` each truth image's own max − min (as the benchmark reports). Returns ``{"psnr": mean, "ssim":
    mean, "ms_per_image": …, "per_image": {"psnr": [...], "ssim": [...]}, "reconstructions": tensor}``.
    """
    if isinstance(model, torch.nn.Module):
        model.eval()
    outputs = []
    started = time.perf_counter()
    for i in tqdm(range(0, len(y), batch_size), desc="evaluating", leave=False, disable=not progress):
        outputs.append(model(y[i : i + batch_size].to(device), op).float().cpu())
    seconds = time.perf_counter() - started
    x_hat = torch.cat(outputs)
    psnr = metrics.psnr(x_hat, x, data_range=data_range)
    ssim = metrics.ssim(x_hat, x, data_range=data_range)
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "ms_per_image": 1000 * seconds / max(len(y), 1),
        "per_image": {"psnr": psnr.tolist(), "ssim": ssim.tolist()},
        "reconstructions": x_hat,
    }
