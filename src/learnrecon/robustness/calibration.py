"""Is the predicted standard deviation worth anything? Calibration of a per-pixel uncertainty against the truth.

For a mean ``μ``, a predicted standard deviation ``s`` and the truth ``x`` (all ``(n, C, H, W)``):

- coverage: the fraction of pixels with ``x`` inside the central interval of level ``q`` (default 90 %), the
  Gaussian interval ``μ ± z s`` (``z = Φ⁻¹((1 + q)/2)``, 1.645 for 90 %) or the samples' own quantiles;
  a calibrated method covers ``q`` of the pixels;
- the correlation of ``s`` with the actual error ``|μ − x|`` over the pixels (Pearson, and Spearman on ranks):
  does the method know *where* it is wrong;
- the calibration curve: the root-mean-square error in bins of equal numbers of pixels sorted by ``s``
  (a calibrated method has RMSE ≈ s in every bin);
- the recalibration factor: the ``c`` for which ``μ ± z c s`` covers ``q`` of the pixels (fit it on validation
  images, report the coverage of ``c s`` on others).
"""

from __future__ import annotations

import torch

from learnrecon.errors import ParameterError

__all__ = [
    "calibration_report",
    "coverage",
    "gaussian_interval",
    "rank_correlation",
    "recalibration_factor",
    "sample_interval",
]


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ParameterError(f"the interval's level must lie in (0, 1), got {level!r}")
    return float(level)


def _z(level: float, like: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtri(torch.tensor((1 + _check_level(level)) / 2, dtype=torch.float64)).to(like.dtype)


def gaussian_interval(mean: torch.Tensor, std: torch.Tensor, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The central interval ``mean ± z std`` of level ``level``."""
    half = _z(level, mean) * std
    return mean - half, mean + half


def sample_interval(samples: torch.Tensor, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The central interval of level ``level`` of ``samples`` ``(k, ...)`` by their empirical quantiles."""
    tail = (1 - _check_level(level)) / 2
    bounds = torch.quantile(samples.float(), torch.tensor([tail, 1 - tail]), dim=0)
    return bounds[0].to(samples.dtype), bounds[1].to(samples.dtype)


def coverage(truth: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> float:
    """The fraction of pixels with ``lower ≤ truth ≤ upper``."""
    if truth.shape != lower.shape or truth.shape != upper.shape:
        raise ParameterError(
            f"truth {tuple(truth.shape)} and interval {tuple(lower.shape)}, {tuple(upper.shape)} differ in shape"
        )
    return float(((truth >= lower) & (truth <= upper)).double().mean())


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def _ranks(a: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(a, dtype=torch.float64)
    ranks[a.argsort()] = torch.arange(a.numel(), dtype=torch.float64)
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of the entries of ``a`` and ``b`` (ties broken by order)."""
    return _pearson(_ranks(a.reshape(-1)), _ranks(b.reshape(-1)))


def recalibration_factor(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, level: float = 0.9) -> float:
    """The factor ``c`` with which the interval ``mean ± z c std`` covers ``level`` of the pixels: the
    ``level``-quantile of ``|mean − truth| / (z std)`` (pixels with ``std = 0`` count as infinitely far)."""
    ratio = (mean - truth).abs() / (_z(level, mean) * std)
    ratio = torch.where(std > 0, ratio, torch.full_like(ratio, float("inf")))
    return float(torch.quantile(ratio.reshape(-1).double(), level))


def calibration_report(
    mean: torch.Tensor,
    std: torch.Tensor,
    truth: torch.Tensor,
    level: float = 0.9,
    samples: torch.Tensor | None = None,
    n_bins: int = 10,
    factor: float = 1.0,
) -> dict[str, object]:
    """Coverage of the Gaussian interval (of ``factor · std``; and of the samples' quantiles when given), the
    Pearson and Spearman correlations of ``std`` with ``|mean − truth|``, the mean std and the RMSE, and the
    calibration curve over ``n_bins`` bins of ``std`` (mean std and RMSE per bin)."""
    if mean.shape != truth.shape or std.shape != truth.shape:
        raise ParameterError(
            f"mean {tuple(mean.shape)}, std {tuple(std.shape)} and truth {tuple(truth.shape)} differ in shape"
        )
    if bool((std < 0).any()):
        raise ParameterError("a standard deviation cannot be negative")
    error = (mean - truth).abs()
    report: dict[str, object] = {
        "level": _check_level(level),
        "coverage": coverage(truth, *gaussian_interval(mean, factor * std, level)),
        "pearson(std, |error|)": _pearson(std.reshape(-1), error.reshape(-1)),
        "spearman(std, |error|)": rank_correlation(std, error),
        "mean std": float(factor * std.double().mean()),
        "rmse": float(error.double().pow(2).mean().sqrt()),
        "factor": factor,
    }
    if samples is not None:
        report["coverage (sample quantiles)"] = coverage(truth, *sample_interval(samples, level))
    order = std.reshape(-1).argsort()
    bins = []
    for chunk in order.chunk(n_bins):
        bins.append(
            {
                "mean std": float(factor * std.reshape(-1)[chunk].double().mean()),
                "rmse": float(error.reshape(-1)[chunk].double().pow(2).mean().sqrt()),
            }
        )
    report["curve"] = bins
    return report
