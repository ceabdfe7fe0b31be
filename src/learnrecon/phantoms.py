"""Phantoms: the modified Shepp–Logan head and random ellipses, with segmentation labels.

Coordinates: the image covers [−1, 1]²; column ``j`` is at x = −1 + (2j + 1)/W (left to right) and row
``i`` at y = 1 − (2i + 1)/H (top to bottom), so ``plt.imshow(image)`` shows the phantom upright. An
ellipse (value v, half-axes a, b, centre (x0, y0), rotation φ counter-clockwise) adds v where
((x−x0)cos φ + (y−y0)sin φ)²/a² + (−(x−x0)sin φ + (y−y0)cos φ)²/b² ≤ 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from learnrecon.errors import ParameterError

__all__ = [
    "ELLIPSE_CLASSES",
    "ELLIPSE_PHANTOMS",
    "ELLIPSE_SCALINGS",
    "DEFAULT_SCALING",
    "MRI_PHANTOMS",
    "mri_phantoms",
    "smooth_phase",
    "dival_ellipses",
    "draw_ellipses",
    "ellipses_image",
    "random_ellipses",
    "shepp_logan",
    "shepp_logan_labels",
]

# value, a, b, x0, y0, phi (degrees): Toft's modified Shepp–Logan (intensities span [0, 1]).
_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)
_SHEPP_LOGAN_ORIGINAL_VALUES = (2.0, -0.98, -0.02, -0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01)
#: Label of each Shepp–Logan ellipse: 1 skull, 2 brain, 3 ventricles, 4 small structures (0 is outside).
_SHEPP_LOGAN_CLASSES = (1, 2, 3, 3, 4, 4, 4, 4, 4, 4)

#: Random-ellipse label classes: 0 background, 1 where the topmost ellipse is denser (v > 0), 2 lighter (v < 0).
ELLIPSE_CLASSES = {0: "background", 1: "positive ellipse", 2: "negative ellipse"}

#: Intensity scalings of the random ellipses: "minmax" maps each image onto [0, 1]; "none" keeps the sum of
#: the ellipses' values (background 0, values of either sign), as Adler & Öktem's ``random_phantom`` does.
ELLIPSE_SCALINGS = ("minmax", "none")

#: The one default scaling, everywhere (phantoms, data configs, the CLI): the shipped models' ("none").
DEFAULT_SCALING = "none"

#: Random-ellipse phantoms: "ellipses" (Adler & Öktem's LGD/LPD setup, :func:`random_ellipses`) and
#: "dival-ellipses" (DIVal's ellipses data set, :func:`dival_ellipses`).
ELLIPSE_PHANTOMS = ("ellipses", "dival-ellipses")


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ParameterError(f"image size must be positive, got {size}")
    return int(h), int(w)


def ellipses_image(
    params: torch.Tensor, size: int | tuple[int, int], dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ellipses ``params`` (E, 6) = (value, a, b, x0, y0, φ in radians) on an (H, W) grid.

    Returns the image (sum of the values of the ellipses covering each pixel centre) and the index of
    the topmost (last) covering ellipse, −1 where none covers. The grid spans [−1, 1]², y upwards. Pixel
    ``(x, y)`` is covered when ``u² + v² ≤ 1`` with ``u = (dx cos φ + dy sin φ) / a``,
    ``v = (−dx sin φ + dy cos φ) / b``, ``(dx, dy) = (x − x0, y − y0)``; each ellipse is tested only on the
    pixels of its bounding box (half-widths ``√(a² cos² φ + b² sin² φ)`` and ``√(a² sin² φ + b² cos² φ)``),
    grown by a pixel, so the cost follows the area the ellipses cover, not their number times the image.
    """
    h, w = _shape(size)
    p = params.to(torch.float64)
    xs = -1 + (2 * torch.arange(w, dtype=torch.float64) + 1) / w
    ys = 1 - (2 * torch.arange(h, dtype=torch.float64) + 1) / h
    cos, sin = torch.cos(p[:, 5]), torch.sin(p[:, 5])
    half_x = torch.sqrt((p[:, 1] * cos) ** 2 + (p[:, 2] * sin) ** 2)
    half_y = torch.sqrt((p[:, 1] * sin) ** 2 + (p[:, 2] * cos) ** 2)
    image = torch.zeros(h, w, dtype=torch.float64)
    top = torch.full((h, w), -1, dtype=torch.int64)
    for e in range(p.shape[0]):
        value, a, b, x0, y0 = p[e, :5]
        cols = _pixel_range(float(x0 - half_x[e] + 1) * w / 2, float(x0 + half_x[e] + 1) * w / 2, w)
        rows = _pixel_range(float(1 - y0 - half_y[e]) * h / 2, float(1 - y0 + half_y[e]) * h / 2, h)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        dx = xs[None, cols] - x0
        dy = ys[rows, None] - y0
        u = (dx * cos[e] + dy * sin[e]) / a
        v = (-dx * sin[e] + dy * cos[e]) / b
        inside = (u * u + v * v) <= 1
        image[rows, cols] += inside * value
        top[rows, cols] = torch.where(inside, e, top[rows, cols])
    return image.to(dtype), top


def _pixel_range(low: float, high: float, n: int) -> slice:
    """The pixels ``j`` of a row of ``n`` whose centre ``j + ½`` lies in ``[low, high]`` (positions in pixels from
    the grid's first edge), grown by one pixel on each side against rounding."""
    return slice(max(math.floor(low - 0.5) - 1, 0), min(math.ceil(high - 0.5) + 2, n))


def _shepp_logan_params(modified: bool) -> torch.Tensor:
    p = torch.tensor(_SHEPP_LOGAN, dtype=torch.float64)
    if not modified:
        p[:, 0] = torch.tensor(_SHEPP_LOGAN_ORIGINAL_VALUES, dtype=torch.float64)
    p[:, 5] = torch.deg2rad(p[:, 5])
    return p


def shepp_logan(size: int | tuple[int, int], modified: bool = True, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Shepp–Logan head phantom ``(H, W)``; ``modified`` (Toft) has intensities in [0, 1].

    The original phantom (``modified=False``) has values in [0, 2] with low contrast inside.
    """
    image, _ = ellipses_image(_shepp_logan_params(modified), size, dtype)
    return image.clamp_min(0) if modified else image


def shepp_logan_labels(size: int | tuple[int, int]) -> torch.Tensor:
    """Segmentation ``(H, W)`` int64: 0 outside, 1 skull, 2 brain, 3 ventricles, 4 small structures."""
    _, top = ellipses_image(_shepp_logan_params(True), size)
    classes = torch.tensor((0, *_SHEPP_LOGAN_CLASSES))
    return classes[top + 1]


def _random_ellipse_params(rng: np.random.Generator, mean_ellipses: float) -> torch.Tensor:
    """Parameters as in Adler & Öktem's ``random_phantom`` (learned primal-dual code, ODL coordinates):
    value (U − ½)·Exp(0.4), half-axes 0.2·Exp(1), centre uniform in [−1, 1]², angle uniform in [0, 2π)."""
    n = rng.poisson(mean_ellipses)
    values = (rng.random(n) - 0.5) * rng.exponential(0.4, n)
    a = rng.exponential(1.0, n) * 0.2
    b = rng.exponential(1.0, n) * 0.2
    x0 = 2 * rng.random(n) - 1
    y0 = 2 * rng.random(n) - 1
    phi = rng.random(n) * 2 * math.pi
    return torch.from_numpy(np.stack([values, a, b, x0, y0, phi], axis=1))


def _dival_ellipse_params(rng: np.random.Generator) -> torch.Tensor:
    """Parameters as in DIVal's ``EllipsesDataset`` (Baguer et al. 2020): min(Poisson(40), 70) ellipses,
    value uniform in [−0.4, 1], half-axes 0.2·Exp(1), centre uniform in [−0.9, 0.9]², angle uniform in [0, 2π)."""
    n = min(rng.poisson(40), 70)
    values = rng.uniform(-0.4, 1.0, n)
    a = rng.exponential(1.0, n) * 0.2
    b = rng.exponential(1.0, n) * 0.2
    x0 = rng.uniform(-0.9, 0.9, n)
    y0 = rng.uniform(-0.9, 0.9, n)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    return torch.from_numpy(np.stack([values, a, b, x0, y0, phi], axis=1))


def _minmax(image: torch.Tensor) -> torch.Tensor:
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else torch.zeros_like(image)


def _foreground_to_unit(image: torch.Tensor) -> torch.Tensor:
    """DIVal's normalisation: the non-zero pixels are shifted by the image's minimum, then all divided by the
    maximum, so the background stays 0 and the image spans [0, 1]."""
    image = torch.where(image != 0, image - image.min(), image)
    high = image.max()
    return image / high if high > 0 else torch.zeros_like(image)


def _draw(
    params: Callable[[np.random.Generator], torch.Tensor],
    normalise: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    size: int | tuple[int, int],
    seed: int,
    start: int,
    supersample: int,
    dtype: torch.dtype,
    return_labels: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Images ``start … start + n − 1`` of a stream: image ``i`` renders ``params(default_rng([seed, i]))``,
    supersampled ``supersample`` times, then ``normalise``; labels are the sign of the topmost ellipse."""
    if n < 0 or start < 0 or supersample < 1:
        raise ParameterError(
            f"need n >= 0, start >= 0 and supersample >= 1, got n={n}, start={start}, supersample={supersample}"
        )
    h, w = _shape(size)
    k = int(supersample)
    images = torch.empty(n, 1, h, w, dtype=dtype)
    labels = torch.empty(n, h, w, dtype=torch.int64)
    for i in range(n):
        p = params(np.random.default_rng([seed, start + i]))
        fine, top = ellipses_image(p, (k * h, k * w))
        image = F.avg_pool2d(fine[None, None], k)[0, 0] if k > 1 else fine
        images[i, 0] = normalise(image).to(dtype)
        if return_labels:
            top = top[k // 2 :: k, k // 2 :: k]
            sign_class = torch.where(p[:, 0] >= 0, 1, 2)
            labels[i] = torch.cat([torch.zeros(1, dtype=torch.int64), sign_class])[top + 1]
    return (images, labels) if return_labels else images


def random_ellipses(
    n: int,
    size: int | tuple[int, int],
    *,
    seed: int = 0,
    start: int = 0,
    supersample: int = 1,
    scaling: str = DEFAULT_SCALING,
    mean_ellipses: float = 50,
    dtype: torch.dtype = torch.float32,
    return_labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random-ellipse phantoms ``(n, 1, H, W)`` as in the LGD/LPD setup.

    Image ``i`` (``i = start, …, start + n − 1``) draws Poisson(``mean_ellipses``) ellipses from
    ``numpy.random.default_rng([seed, i])``, so it does not depend on ``n``: a stream of training images
    can be generated in any chunks. With ``scaling="none"`` (the default, :data:`DEFAULT_SCALING`) the sum
    of ellipses is kept as drawn, as in Adler & Öktem's code (background 0, values of either sign, mostly
    within ±0.5), as the shipped models were trained; with ``"minmax"`` it is min–max scaled to [0, 1] (a
    constant image becomes 0). With ``supersample=k`` the image is
    rendered on a k-times finer grid and averaged over k×k blocks (partial-volume effect, against the
    inverse crime).

    With ``return_labels`` also returns labels ``(n, H, W)`` int64 from :data:`ELLIPSE_CLASSES`: the sign
    of the topmost ellipse at the pixel centre (0 where no ellipse covers it).
    """
    if scaling not in ELLIPSE_SCALINGS:
        raise ParameterError(f"unknown ellipse scaling {scaling!r}; choose one of {', '.join(ELLIPSE_SCALINGS)}")
    if mean_ellipses < 0:
        raise ParameterError(f"mean_ellipses must be >= 0, got {mean_ellipses}")
    normalise = _minmax if scaling == "minmax" else (lambda image: image)
    params = lambda rng: _random_ellipse_params(rng, mean_ellipses)  # noqa: E731
    return _draw(params, normalise, n, size, seed, start, supersample, dtype, return_labels)


def dival_ellipses(
    n: int,
    size: int | tuple[int, int],
    *,
    seed: int = 0,
    start: int = 0,
    supersample: int = 1,
    dtype: torch.dtype = torch.float32,
    return_labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random-ellipse phantoms ``(n, 1, H, W)`` as in DIVal's ellipses data set (Baguer et al. 2020).

    min(Poisson(40), 70) ellipses of value U(−0.4, 1) centred in [−0.9, 0.9]² (half-axes and angles as in
    :func:`random_ellipses`); the non-zero pixels are shifted by the image minimum and the image divided by
    its maximum, so the background is 0 and the values span [0, 1]. Image ``i`` draws from
    ``numpy.random.default_rng([seed, i])``; ``supersample`` and ``return_labels`` as in
    :func:`random_ellipses`.
    """
    return _draw(_dival_ellipse_params, _foreground_to_unit, n, size, seed, start, supersample, dtype, return_labels)


def draw_ellipses(
    kind: str,
    *,
    n: int,
    size: int | tuple[int, int],
    seed: int = 0,
    start: int = 0,
    supersample: int = 1,
    scaling: str = DEFAULT_SCALING,
    return_labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Float32 phantoms of ``kind`` (see :data:`ELLIPSE_PHANTOMS`); ``scaling`` applies to "ellipses"."""
    if kind == "ellipses":
        return random_ellipses(
            n, size, seed=seed, start=start, supersample=supersample, scaling=scaling, return_labels=return_labels
        )
    if kind == "dival-ellipses":
        return dival_ellipses(n, size, seed=seed, supersample=supersample, return_labels=return_labels, start=start)
    raise ParameterError(f"unknown ellipse phantom {kind!r}; choose one of {', '.join(ELLIPSE_PHANTOMS)}")


#: Complex-valued phantoms for MRI: "mri-ellipses" (DIVal's ellipses as magnitude) and "mri-shepp-logan" (the
#: modified Shepp–Logan head as magnitude), each with a smooth random phase (:func:`mri_phantoms`).
MRI_PHANTOMS = ("mri-ellipses", "mri-shepp-logan")


def smooth_phase(rng: np.random.Generator, size: int | tuple[int, int], max_phase: float = math.pi) -> torch.Tensor:
    """A smooth random phase map ``(H, W)`` float64 in ``[−max_phase, max_phase]``: three plane cosines
    ``Σ_j α_j cos(π(u_j x + v_j y) + θ_j)`` (``α_j, u_j, v_j ~ U(−1, 1)``, ``θ_j ~ U(0, 2π)``, at most one
    period across the image, as a slowly varying B0/coil phase) scaled so that its largest modulus is
    ``max_phase``."""
    h, w = _shape(size)
    xs = (-1 + (2 * torch.arange(w, dtype=torch.float64) + 1) / w)[None, :]
    ys = (1 - (2 * torch.arange(h, dtype=torch.float64) + 1) / h)[:, None]
    coeffs = torch.from_numpy(rng.uniform(-1, 1, size=(3, 3)))
    shifts = torch.from_numpy(rng.uniform(0, 2 * math.pi, size=3))
    phase = sum(
        coeffs[j, 0] * torch.cos(math.pi * (coeffs[j, 1] * xs + coeffs[j, 2] * ys) + shifts[j]) for j in range(3)
    )
    peak = phase.abs().max()
    return phase * (max_phase / peak) if peak > 0 else phase


def mri_phantoms(
    kind: str,
    *,
    n: int,
    size: int | tuple[int, int],
    seed: int = 0,
    start: int = 0,
    supersample: int = 1,
    max_phase: float = math.pi,
    dtype: torch.dtype = torch.complex64,
    return_labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Complex phantoms ``(n, 1, H, W)``: a magnitude in [0, 1] times ``exp(iφ)`` with a smooth random phase φ
    (:func:`smooth_phase` of ``default_rng([seed, i, 1])`` for image ``i``).

    ``kind="mri-ellipses"``: the magnitude is :func:`dival_ellipses` image ``i`` of ``seed`` (so the magnitudes
    are those of the "dival-ellipses" stream); ``"mri-shepp-logan"``: the modified Shepp–Logan head (rendered
    ``supersample`` times finer and averaged), the same for every ``i``, only the phase differs.

    With ``return_labels`` also returns the magnitudes' label maps ``(n, H, W)`` int64 (the phase does not change
    them): those of :func:`dival_ellipses` for ``"mri-ellipses"`` (:data:`ELLIPSE_CLASSES`), those of
    :func:`shepp_logan_labels` for ``"mri-shepp-logan"``.
    """
    if kind not in MRI_PHANTOMS:
        raise ParameterError(f"unknown MRI phantom {kind!r}; choose one of {', '.join(MRI_PHANTOMS)}")
    if not (0 <= max_phase <= 4 * math.pi):
        raise ParameterError(f"max_phase must be in [0, 4π] (radians), got {max_phase}")
    h, w = _shape(size)
    if kind == "mri-ellipses":
        magnitude, labels = dival_ellipses(
            n, (h, w), seed=seed, start=start, supersample=supersample, dtype=torch.float64, return_labels=True
        )
    else:
        if n < 0 or supersample < 1:
            raise ParameterError(f"need n >= 0 and supersample >= 1, got n={n}, supersample={supersample}")
        fine = shepp_logan((supersample * h, supersample * w))
        head = F.avg_pool2d(fine[None, None], supersample)[0, 0] if supersample > 1 else fine
        magnitude = head.expand(n, 1, h, w)
        labels = shepp_logan_labels((h, w)).expand(n, h, w).clone() if return_labels else None
    phase = torch.stack(
        [smooth_phase(np.random.default_rng([seed, start + i, 1]), (h, w), max_phase) for i in range(n)]
    )
    images = torch.polar(magnitude, phase.reshape(n, 1, h, w).to(magnitude.dtype)).to(dtype)
    return (images, labels) if return_labels else images
