"""Inference and scoring: the one loop that runs a reconstructor over data in batches, and the one metric
convention that training, validation, ``learnrecon evaluate``/``reconstruct`` and the benchmark all use.

A reconstructor is anything called ``method(y, op) -> x``: a learned model or a classical solver. :func:`predict`
runs it over ``y`` ``(n, C, *op.range_shape)`` in batches, without gradients and in evaluation mode, and
returns the images on the CPU; :func:`predict_batches` does the same for batches that arrive one at a time (read
from a file), so that nothing larger than a batch is held.

**The metric convention** (:data:`DATA_RANGE`): PSNR and SSIM take as their data range each reference image's own
``max − min`` (DIVal's convention; for magnitude images, whose minimum is about 0, fastMRI's per-image maximum),
unless a number is given. Complex images (MRI) are scored on their magnitudes ``|x̂|`` against ``|x|``. A
task-adapted model's output (:class:`~learnrecon.models.TaskOutput`) is scored on its image; its segmentation by
:func:`segmentation_scores` (Dice per class and their mean over the foreground classes, cross-entropy, pixel
accuracy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, NamedTuple

import torch
from tqdm.auto import tqdm

from learnrecon import metrics
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.segmentation import TaskOutput, image_of
from learnrecon.operators.base import LinearOperator

__all__ = [
    "DATA_RANGE",
    "Reconstructor",
    "Scores",
    "diagnostics_of",
    "evaluate",
    "evaluate_batches",
    "mean_diagnostics",
    "predict",
    "predict_batches",
    "check_labels",
    "predict_task",
    "score",
    "segmentation_scores",
]

#: A reconstruction method: ``method(y, op) -> x`` (a learned model, or a classical solver with its parameters).
Reconstructor = Callable[[torch.Tensor, LinearOperator], torch.Tensor]

#: The data range of PSNR and SSIM: ``"image"`` (each reference image's max − min) or a number (a fixed peak).
DataRange = float | Literal["image"]

#: The library's metric convention: each reference image's own range.
DATA_RANGE: DataRange = "image"


class Scores(NamedTuple):
    """Per-image PSNR (dB) and SSIM, each ``(n,)``."""

    psnr: torch.Tensor
    ssim: torch.Tensor


def _peak(data_range: DataRange) -> float | None:
    """``data_range`` as :mod:`learnrecon.metrics` takes it (None: each reference's range)."""
    if data_range == "image":
        return None
    if isinstance(data_range, bool) or not isinstance(data_range, int | float) or not data_range > 0:
        raise ParameterError(f"data_range must be 'image' or a positive number, got {data_range!r}")
    return float(data_range)


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    """``x`` as the metrics take it: magnitudes of complex images, and ``(n, C, 1, H, W)`` images (multi-coil
    MRI's) as ``(n, C, H, W)``."""
    x = x.abs() if x.is_complex() else x
    return x.reshape(x.shape[0], -1, *x.shape[-2:]) if x.ndim > 4 else x


def score(x_hat: torch.Tensor, x: torch.Tensor, *, data_range: DataRange = DATA_RANGE) -> Scores:
    """PSNR and SSIM of reconstructions ``x_hat`` against references ``x`` ``(n, C, H, W)``, per image, under
    the :data:`DATA_RANGE` convention (complex images on their magnitudes)."""
    peak = _peak(data_range)
    x_hat, x = _magnitude(x_hat), _magnitude(x)
    psnr = metrics.psnr(x_hat, x, data_range=peak).reshape(-1)
    ssim = metrics.ssim(x_hat, x, data_range=peak).reshape(-1)
    return Scores(psnr, ssim)


def _to_cpu(x: torch.Tensor) -> torch.Tensor:
    """``x`` on the CPU in single precision (complex64 for complex images)."""
    return x.detach().to("cpu", torch.complex64 if x.is_complex() else torch.float32)


def _eval_mode(model: Reconstructor) -> None:
    if isinstance(model, torch.nn.Module):
        model.eval()


def _predict_one(model: Reconstructor, y: torch.Tensor, op: LinearOperator, device) -> torch.Tensor:
    with torch.no_grad():
        return _to_cpu(image_of(model(y.to(device), op)))


def predict_batches(
    model: Reconstructor,
    batches: Iterable[torch.Tensor],
    op: LinearOperator,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
    desc: str | None = None,
) -> Iterator[torch.Tensor]:
    """``model(y, op)`` for each batch ``y`` of ``batches``, in evaluation mode and without gradients, moved to
    ``device`` and returned on the CPU in single precision; a tqdm bar over the ``total`` batches if asked."""
    _eval_mode(model)
    for y in tqdm(batches, total=total, desc=desc, unit="batch", leave=False, disable=not progress):
        yield _predict_one(model, y, op, device)


def predict(
    model: Reconstructor,
    y: torch.Tensor,
    op: LinearOperator,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Reconstructions of ``y`` ``(n, C, *op.range_shape)`` by ``model(y, op)`` in batches of ``batch_size``:
    ``(n, C, *op.domain_shape)`` on the CPU (see :func:`predict_batches`)."""
    starts = _starts(y.shape[0], batch_size)
    chunks = (y[i : i + batch_size] for i in starts)
    return torch.cat(
        list(predict_batches(model, chunks, op, device=device, progress=progress, total=len(starts), desc=desc))
    )


def _starts(n: int, batch_size: int) -> range:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    return range(0, n, batch_size)


def diagnostics_of(model: Reconstructor) -> dict[str, float]:
    """What ``model`` reports of its last forward pass (e.g. an equilibrium model's non-converged fraction),
    through an optional ``diagnostics() -> dict[str, float]`` method; ``{}`` for a model without one."""
    report = getattr(model, "diagnostics", None)
    return dict(report()) if callable(report) else {}


def evaluate_batches(
    model: Reconstructor,
    batches: Iterable[tuple[torch.Tensor | None, torch.Tensor]],
    op: LinearOperator,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
    desc: str | None = None,
    data_range: DataRange = DATA_RANGE,
    sink: Callable[[int, torch.Tensor], None] | None = None,
) -> dict:
    """Reconstruct each batch ``(x, y)`` of ``batches`` and score it against its truth ``x`` (None: not scored),
    one batch at a time: each batch's reconstructions go to ``sink(offset, x_hat)`` (e.g. a file being written)
    and are not kept, so the memory is bounded by the batch, not by the data set.

    Returns ``{"n", "ms_per_image"}``, with truth ``{"psnr", "psnr_std", "ssim", "psnr_per_image",
    "ssim_per_image"}`` (:func:`score`), and for a model with ``diagnostics()`` their mean over the batches
    (weighted by batch size) as ``"diagnostics"``.
    """
    _peak(data_range)  # a bad data range fails before any reconstruction
    _eval_mode(model)
    psnr, ssim, reports, n, seconds = [], [], [], 0, 0.0
    for x, y in tqdm(batches, total=total, desc=desc, unit="batch", leave=False, disable=not progress):
        started = time.perf_counter()
        x_hat = _predict_one(model, y, op, device)
        seconds += time.perf_counter() - started
        reports.append((x_hat.shape[0], diagnostics_of(model)))
        if x is not None:
            # Kept as Python floats: thousands of small tensors interleaved with each batch's large temporaries
            # would pin the allocator's heap and grow the memory with the number of images.
            scores = score(x_hat, x, data_range=data_range)
            psnr.extend(scores.psnr.tolist())
            ssim.extend(scores.ssim.tolist())
        if sink is not None:
            sink(n, x_hat)
        n += x_hat.shape[0]
    result: dict = {"n": n, "ms_per_image": 1000 * seconds / max(n, 1)}
    if psnr:
        all_psnr, all_ssim = torch.tensor(psnr), torch.tensor(ssim)
        result.update(
            psnr=float(all_psnr.mean()),
            psnr_std=float(all_psnr.std()) if all_psnr.numel() > 1 else 0.0,
            ssim=float(all_ssim.mean()),
            psnr_per_image=all_psnr.tolist(),
            ssim_per_image=all_ssim.tolist(),
        )
    if any(report for _, report in reports):
        result["diagnostics"] = mean_diagnostics(reports)
    return result


def evaluate(
    model: Reconstructor,
    y: torch.Tensor,
    x: torch.Tensor,
    op: LinearOperator,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str | None = None,
    data_range: DataRange = DATA_RANGE,
) -> dict:
    """:func:`evaluate_batches` of the pairs ``(x, y)`` in memory, in batches of ``batch_size``, with the
    reconstructions kept as ``"reconstruction"`` ``(n, C, *op.domain_shape)``."""
    starts = _starts(y.shape[0], batch_size)
    outputs: list[torch.Tensor] = []
    result = evaluate_batches(
        model,
        ((x[i : i + batch_size], y[i : i + batch_size]) for i in starts),
        op,
        device=device,
        progress=progress,
        total=len(starts),
        desc=desc,
        data_range=data_range,
        sink=lambda offset, x_hat: outputs.append(x_hat),
    )
    return {**result, "reconstruction": torch.cat(outputs)}


def segmentation_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Scores of class logits ``(n, K, H, W)`` against label maps ``(n, H, W)``: ``dice`` (per image the mean Dice
    of the foreground classes 1 … K−1 present in either map, then the mean over images), ``dice_per_class`` (class
    k's Dice averaged over the images where it appears), ``cross_entropy`` (mean over pixels) and ``accuracy``
    (the fraction of pixels labelled right)."""
    check_labels(labels, logits.shape[1], logits.shape[-2:])
    labels = labels.to(logits.device)
    predicted = logits.argmax(dim=1)
    per_class = metrics.dice_per_class(predicted, labels, logits.shape[1])
    foreground = per_class[:, 1:]
    per_image = torch.where(foreground.isnan().all(dim=1), 1.0, foreground.nanmean(dim=1))
    return {
        "dice": float(per_image.mean()),
        "dice_per_class": [float(v) for v in per_class.nanmean(dim=0)],
        "cross_entropy": float(torch.nn.functional.cross_entropy(logits.float(), labels)),
        "accuracy": float(metrics.pixel_accuracy(predicted, labels).mean()),
    }


def check_labels(labels: torch.Tensor, n_classes: int, image_shape: tuple[int, ...]) -> None:
    """Refuse label maps that are not integer ``(n, *image_shape)`` maps of classes ``0 … n_classes − 1``."""
    if labels.is_floating_point() or labels.is_complex():
        raise ParameterError(f"labels must be integer class maps, got {labels.dtype}")
    if tuple(labels.shape[1:]) != tuple(image_shape) or labels.ndim != len(image_shape) + 1:
        raise ShapeError(
            f"labels have shape {tuple(labels.shape)}; the images need (n, {', '.join(map(str, image_shape))})"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ParameterError(
            f"labels hold classes {int(labels.min())} … {int(labels.max())}, but the model has {n_classes} classes "
            f"(0 … {n_classes - 1})"
        )


def predict_task(
    model: Callable[[torch.Tensor, LinearOperator], TaskOutput],
    y: torch.Tensor,
    op: LinearOperator,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> TaskOutput:
    """A task-adapted model's images and logits for ``y`` ``(n, 1, *op.range_shape)``, in batches, on the CPU."""
    _eval_mode(model)
    images, logits = [], []
    with torch.no_grad():
        for i in _starts(y.shape[0], batch_size):
            out = model(y[i : i + batch_size].to(device), op)
            images.append(_to_cpu(out.image))
            logits.append(_to_cpu(out.logits))
    return TaskOutput(torch.cat(images), torch.cat(logits))


def mean_diagnostics(reports: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """The mean of each diagnostic over batches, weighted by their sizes: ``reports`` holds ``(n, diagnostics)``."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for n, report in reports:
        for key, value in report.items():
            totals[key] = totals.get(key, 0.0) + n * float(value)
            counts[key] = counts.get(key, 0) + n
    return {key: totals[key] / counts[key] for key in totals}
