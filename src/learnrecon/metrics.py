"""Image quality and data-fit metrics, batched per image.

Images are ``(B, C, H, W)`` (a 2-D ``(H, W)`` image is one image); each metric returns one value per
image, shape ``(B,)``, or a 0-d tensor for a 2-D input. PSNR and SSIM use ``data_range`` = the
reference's per-image max − min unless given (the DIVal convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learnrecon._checks import check_complexity, check_same_device, check_same_shape, check_tensor
from learnrecon.errors import DTypeError, ShapeError
from learnrecon.operators.base import LinearOperator

__all__ = ["data_discrepancy", "dice", "dice_per_class", "mse", "pixel_accuracy", "psnr", "relative_error", "ssim"]


def _pair(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate two real images and return them as (B, C, H, W) plus whether the input was 2-D."""
    for name, t in (("x", x), ("reference", ref)):
        check_tensor(t, name)
        check_complexity(t, False, name)
    check_same_shape(x, ref)
    check_same_device(("x", x), ("reference", ref))
    if x.ndim not in (2, 4):
        raise ShapeError(f"images must be (H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    two_d = x.ndim == 2
    if two_d:
        x, ref = x[None, None], ref[None, None]
    return x, ref.to(x.dtype), two_d


def _finish(values: torch.Tensor, two_d: bool) -> torch.Tensor:
    return values[0] if two_d else values


def _range(ref: torch.Tensor, data_range: float | None) -> torch.Tensor:
    if data_range is not None:
        return torch.full((ref.shape[0],), float(data_range), dtype=ref.dtype, device=ref.device)
    flat = ref.flatten(1)
    return flat.amax(dim=1) - flat.amin(dim=1)


def mse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image."""
    x, ref, two_d = _pair(x, ref)
    return _finish((x - ref).pow(2).flatten(1).mean(dim=1), two_d)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio 10·log10(data_range² / MSE) in dB, per image."""
    x, ref, two_d = _pair(x, ref)
    err = (x - ref).pow(2).flatten(1).mean(dim=1)
    return _finish(10 * torch.log10(_range(ref, data_range).pow(2) / err), two_d)


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """‖x − ref‖₂ / ‖ref‖₂ per image."""
    x, ref, two_d = _pair(x, ref)
    return _finish((x - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1), two_d)


def _gaussian_window(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(3.5 * sigma + 0.5)  # scikit-image: truncate = 3.5 -> 11 taps for sigma 1.5
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def _filter(img: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of (N, 1, H, W) images with the 1-D window ``w``."""
    img = F.conv2d(img, w.reshape(1, 1, -1, 1))
    return F.conv2d(img, w.reshape(1, 1, 1, -1))


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float | None = None, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, per image (mean over channels).

    Matches ``skimage.metrics.structural_similarity(x, ref, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)``: K1 = 0.01, K2 = 0.03, window of 2·⌊3.5σ + 0.5⌋ + 1
    taps, and the mean over the region the window fits in (the border is cropped).
    """
    x, ref, two_d = _pair(x, ref)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    b, c, h, w_ = x.shape
    w = _gaussian_window(sigma, dtype, x.device)
    if min(h, w_) < w.numel():
        raise ShapeError(f"images of {h}×{w_} are smaller than the {w.numel()}-pixel SSIM window")
    rng = _range(ref, data_range).to(dtype).repeat_interleave(c).reshape(-1, 1, 1, 1)
    a = x.to(dtype).reshape(b * c, 1, h, w_)
    r = ref.to(dtype).reshape(b * c, 1, h, w_)
    mu_a, mu_r = _filter(a, w), _filter(r, w)
    var_a = _filter(a * a, w) - mu_a**2
    var_r = _filter(r * r, w) - mu_r**2
    cov = _filter(a * r, w) - mu_a * mu_r
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    s = ((2 * mu_a * mu_r + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_r**2 + c1) * (var_a + var_r + c2))
    return _finish(s.flatten(1).mean(dim=1).reshape(b, c).mean(dim=1).to(x.dtype), two_d)


def dice(seg: torch.Tensor, ref: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """Mean Dice coefficient 2|S∩R|/(|S|+|R|) over the foreground classes 1..K present in ``ref`` or ``seg``.

    ``seg`` and ``ref`` are integer label maps ``(B, H, W)`` (or ``(H, W)``); class 0 is background and
    not counted. An image with no foreground in either map scores 1.
    """
    for name, t in (("segmentation", seg), ("reference", ref)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
            raise DTypeError(f"{name} must be an integer label tensor; convert with .long() or argmax(dim=1)")
    check_same_shape(seg, ref, ("segmentation", "reference"))
    check_same_device(("segmentation", seg), ("reference", ref))
    two_d = seg.ndim == 2
    if two_d:
        seg, ref = seg[None], ref[None]
    k = int(max(seg.max(), ref.max())) + 1 if n_classes is None else n_classes
    scores = []
    for s, r in zip(seg.flatten(1), ref.flatten(1), strict=True):
        per_class = []
        for cls in range(1, k):
            a, b = s == cls, r == cls
            total = int(a.sum() + b.sum())
            if total:
                per_class.append(2 * int((a & b).sum()) / total)
        scores.append(sum(per_class) / len(per_class) if per_class else 1.0)
    result = torch.tensor(scores, dtype=torch.float64, device=seg.device)
    return result[0] if two_d else result


def _label_maps(seg: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("segmentation", seg), ("reference", ref)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
            raise DTypeError(f"{name} must be an integer label tensor; convert with .long() or argmax(dim=1)")
    check_same_shape(seg, ref, ("segmentation", "reference"))
    check_same_device(("segmentation", seg), ("reference", ref))
    return (seg[None], ref[None]) if seg.ndim == 2 else (seg, ref)


def dice_per_class(seg: torch.Tensor, ref: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Dice 2|S_k∩R_k|/(|S_k|+|R_k|) of every class ``k = 0 … n_classes − 1`` in every image: ``(B, n_classes)``
    float64, NaN where class ``k`` is in neither map (``seg``, ``ref``: label maps ``(B, H, W)``)."""
    seg, ref = _label_maps(seg, ref)
    classes = torch.arange(n_classes, device=seg.device)[:, None, None]
    s, r = seg.flatten(1)[:, None] == classes[None, :, 0], ref.flatten(1)[:, None] == classes[None, :, 0]
    total = (s.sum(-1) + r.sum(-1)).double()
    overlap = (s & r).sum(-1).double()
    return torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.nan)


def pixel_accuracy(seg: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The fraction of pixels whose label is right, per image ``(B,)`` float64."""
    seg, ref = _label_maps(seg, ref)
    return (seg == ref).flatten(1).double().mean(dim=1)


def data_discrepancy(x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    """‖op(x) − y‖₂ per sample (over all dimensions but the first)."""
    residual = (op(x) - y).abs()
    if residual.ndim == len(op.range_shape):
        return residual.pow(2).sum().sqrt()
    return residual.pow(2).flatten(1).sum(dim=1).sqrt()
