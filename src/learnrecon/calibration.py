"""Calibration: estimating an unknown operator parameter from measured data alone.

- :func:`estimate_detector_shift`: the centre-of-rotation / detector offset ``δ`` (in detector cells) of
  parallel-beam data over [0, π), from the Helgason–Ludwig moment conditions. For the ideal transform the
  zeroth moment ``m₀(θ) = Σ_k p(θ, s_k)`` is the image's mass ``m`` at every angle and the first moment
  ``m₁(θ) = Σ_k s_k p(θ, s_k)`` is ``m·(c_x cos θ + c_y sin θ)`` (the centre of mass projected); with the data
  shifted by ``δ`` cells it becomes ``m·(c_x cos θ + c_y sin θ + δ)``. Every image ``i`` of a data set
  contributes ``m₁ᵢ(θ) = aᵢ cos θ + bᵢ sin θ + δ m̄₀ᵢ`` and one linear least-squares fit over all images and
  angles gives the shared ``δ`` (exact on noise-free data; its noise falls like 1/√(images)).
- :func:`estimate_blur_width`: the width σ of a Gaussian blur of piecewise-constant images, by the re-blur
  gradient ratio at edges (an ideal step blurred by σ and re-blurred by σ₀ has the gradient ratio
  ``R = sqrt(σ² + σ₀²)/σ`` at the edge, so ``σ = σ₀ / sqrt(R² − 1)``; :func:`edge_width` takes the median over
  the 5 % strongest edges). On a pixel grid the edge estimate is biased (about +0.2 px at σ = 1), so the estimate
  is read off the response curve of :func:`edge_width` measured on images from the prior (e.g. the phantom
  generator the learned models were trained on) blurred by a grid of widths, with the same noise.

Both operator parameters also exist as differentiable tensors (:mod:`learnrecon.operators.calibrated`) for
estimation jointly with a reconstruction or a network's weights (:func:`learnrecon.training.adaptation.adapt`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from learnrecon._checks import check_finite, check_tensor
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators.calibrated import GaussianBlur
from learnrecon.operators.tomography import ParallelBeam2D

__all__ = ["edge_width", "estimate_blur_width", "estimate_detector_shift"]


def estimate_detector_shift(y: torch.Tensor, ray: ParallelBeam2D) -> float:
    """The detector offset ``δ`` (cells) shared by the sinograms ``y`` ``(N, 1, n_angles, D)`` of the ideal
    parallel-beam transform ``ray`` (angles covering [0, π)); see the module docstring."""
    if not isinstance(ray, ParallelBeam2D):
        raise ParameterError(f"the moment method needs parallel-beam data, got {ray!r}")
    y = check_finite(check_tensor(y, "sinograms"), "sinograms")
    if y.ndim != 4 or tuple(y.shape[-2:]) != tuple(ray.range_shape):
        raise ShapeError(
            f"sinograms have shape {tuple(y.shape)}; need (N, 1, {ray.range_shape[0]}, {ray.range_shape[1]})"
        )
    theta = ray.angles.to(torch.float64)
    s = ray.detector_positions() / ray.detector_spacing
    p = y[:, 0].to(torch.float64).cpu()
    m0, m1 = p.sum(-1), (p * s).sum(-1)  # (N, T)
    n, t = m0.shape
    design = torch.zeros(n * t, 2 * n + 1, dtype=torch.float64)
    for i in range(n):
        rows = slice(i * t, (i + 1) * t)
        design[rows, 2 * i], design[rows, 2 * i + 1] = torch.cos(theta), torch.sin(theta)
        design[rows, -1] = m0[i].mean()
    return float(torch.linalg.lstsq(design, m1.reshape(-1, 1)).solution[-1, 0])


def _gradient_magnitude(z: torch.Tensor) -> torch.Tensor:
    gy = 0.5 * (z[..., 2:, 1:-1] - z[..., :-2, 1:-1])
    gx = 0.5 * (z[..., 1:-1, 2:] - z[..., 1:-1, :-2])
    return torch.sqrt(gx**2 + gy**2)


def edge_width(y: torch.Tensor, reblur: float = 2.0, quantile: float = 0.95) -> float:
    """The re-blur gradient-ratio width ``σ₀/sqrt(R² − 1)`` (median over the pixels whose gradient magnitude is
    above its ``quantile``) of images ``y`` ``(N, 1, H, W)``; see the module docstring."""
    y = check_finite(check_tensor(y, "images"), "images").to(torch.float64)
    g1 = _gradient_magnitude(y)
    g2 = _gradient_magnitude(GaussianBlur(tuple(y.shape[-2:]), reblur)(y))
    strong = g1 > torch.quantile(g1.flatten(), quantile)
    ratio = g1[strong] / g2[strong]
    ratio = ratio[ratio > 1 + 1e-6]
    if ratio.numel() == 0:
        raise ParameterError("the images have no edges to measure a blur width on")
    return float((reblur / torch.sqrt(ratio**2 - 1)).median())


def estimate_blur_width(
    y: torch.Tensor,
    prior: torch.Tensor,
    *,
    noise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    widths: Sequence[float] = tuple(0.5 + 0.2 * i for i in range(16)),
    reblur: float = 2.0,
    quantile: float = 0.95,
) -> float:
    """The Gaussian blur width σ (pixels) of blurred images ``y`` ``(N, 1, H, W)``: :func:`edge_width` of ``y``
    read off the response curve σ ↦ edge_width(noise(G_σ prior)) over ``widths`` (linear interpolation), with
    ``prior`` sharp images of the same kind ``(M, 1, H, W)`` and ``noise`` the measurement noise (or None)."""
    if len(widths) < 2:
        raise ParameterError("need at least two candidate widths")
    measured = edge_width(y, reblur, quantile)
    prior = check_tensor(prior, "prior images").to(torch.float64)
    curve = []
    with torch.no_grad():
        for w in widths:
            blurred = GaussianBlur(tuple(prior.shape[-2:]), float(w))(prior)
            curve.append(edge_width(noise(blurred) if noise is not None else blurred, reblur, quantile))
    xs, ys = torch.tensor(list(widths), dtype=torch.float64), torch.tensor(curve, dtype=torch.float64)
    ys = torch.cummax(ys, 0).values  # the response is increasing; guard against noise in the curve
    if not ys[0] <= measured <= ys[-1]:
        raise ParameterError(
            f"the measured edge width {measured:.3g} lies outside the response of the candidate widths "
            f"{xs[0]:.3g} … {xs[-1]:.3g} ({ys[0]:.3g} … {ys[-1]:.3g}); widen widths="
        )
    k = int(torch.searchsorted(ys, torch.tensor(measured, dtype=torch.float64)).clamp(1, len(xs) - 1))
    t = (measured - ys[k - 1]) / (ys[k] - ys[k - 1]).clamp_min(1e-12)
    return float(xs[k - 1] + t * (xs[k] - xs[k - 1]))
