"""The matrix-free backend of the ray transforms: Joseph's weights computed on the fly, chunk by chunk of rays.

Joseph's method samples a ray at each pixel column (or row) ``m`` it crosses, at the fractional row (or column)
``f(m) = a + b·m``, by linear interpolation between the two pixels there, and weighs the samples by the ray's
length per column ``w`` (:mod:`learnrecon.operators._joseph`). That is bilinear interpolation at the points
``(m, f(m))``, whose coordinate along the major axis is a pixel centre: ``torch.nn.functional.grid_sample``
(bilinear, zero outside the image) computes it, and its gradient with respect to the image is the exact transpose.
So, chunk by chunk of rays, the forward projection samples the image at the ``max(H, W)`` points of each ray and
sums them times ``w``; the adjoint spreads ``w·y`` of each ray back over the same points
(``grid_sampler_2d_backward``). Forward and adjoint are the transposes of one matrix, so the dot-product test holds
to rounding, and that matrix is the CSR backend's up to the rounding of the sample positions (the grid is
normalised to [−1, 1] and back: relative differences of about 1e-6 in float32, 1e-15 in float64). Plain torch on
any device, with torch's own CPU and CUDA kernels.

Memory: the per-ray line parameters (3 numbers, 24 bytes a ray; 12 MB at LoDoPaB size, 513,000 rays,
against the CSR pair's 3.6 GB in float32) and the temporaries of one chunk (about ``CHUNK_ENTRIES`` samples over
the batch: the grid, the samples and, for the adjoint, one image per batch entry); the price is time: the weights are
recomputed at every product, also at the padding of the dense ray × step layout (about 1.25 × the nonzeros).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learnrecon.operators._joseph import _ray_lines

__all__ = ["RayLines", "matrix_free_product"]

#: Samples (ray × step × image of the batch) a chunk computes at once; ~20 bytes of temporaries each.
CHUNK_ENTRIES = 2**21


class RayLines:
    """The per-ray lines of a geometry on one device, for ``grid_sample``: the minor coordinate of ray ``i``'s sample
    at major step ``m`` is ``a[i] + b[i]·m`` (normalised to [−1, 1] across the image, from
    :func:`~learnrecon.operators._joseph._ray_lines`' ``f(m)``), its major coordinate the centre of pixel ``m``;
    ``weight`` is Joseph's ``h/|r_major|``. The rays are walked in runs of one orientation (per column or per row),
    so a chunk's grid is one multiply-add and a stack."""

    def __init__(self, p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float, device) -> None:
        lines = _ray_lines(p0, r, shape, h)
        H, W = shape
        x_major = lines["minor_stride"] == W
        minor_size = torch.where(x_major, H, W).to(torch.float64)
        self.shape = shape
        self.a = ((2 * lines["a"] + 1) / minor_size - 1).to(device)
        self.b = (2 * lines["b"] / minor_size).to(device)
        self.weight = lines["weight"].to(device)
        self.n_rays, self.n_major = p0.shape[0], max(shape)
        m = torch.arange(self.n_major, dtype=torch.float64)
        self.major = {True: ((2 * m + 1) / W - 1).to(device), False: ((2 * m + 1) / H - 1).to(device)}
        change = (torch.nonzero(x_major[1:] != x_major[:-1]).flatten() + 1).tolist()
        bounds = [0, *change, self.n_rays]
        self.runs = [(lo, hi, bool(x_major[lo])) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        self.device = torch.device(device)

    def chunks(self, batch: int) -> list[tuple[int, int, bool]]:
        """``(start, stop, x_major)`` of consecutive rays of one orientation, about ``CHUNK_ENTRIES`` samples over a
        batch of ``batch``."""
        size = max(CHUNK_ENTRIES // (self.n_major * max(batch, 1)), 1)
        return [(lo, min(lo + size, hi), x) for run_lo, hi, x in self.runs for lo in range(run_lo, hi, size)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.a, self.b, self.weight, *self.major.values()))

    def grid(self, start: int, stop: int, x_major: bool, dtype: torch.dtype) -> torch.Tensor:
        """The sample points of rays ``start … stop − 1`` (all sampled per column when ``x_major``, else per row)
        for ``grid_sample`` (``align_corners=False``): ``(1, R, max(H, W), 2)`` in ``dtype``, ``(x, y)``."""
        steps = torch.arange(self.n_major, device=self.device, dtype=dtype)[None]
        minor = torch.addcmul(self.a[start:stop, None].to(dtype), self.b[start:stop, None].to(dtype), steps)
        major = self.major[x_major].to(dtype)[None].expand_as(minor)
        return torch.stack([major, minor] if x_major else [minor, major], dim=-1)[None]


def matrix_free_product(lines: RayLines, x: torch.Tensor, n_pixels: int, adjoint: bool) -> torch.Tensor:
    """``A x`` (``x`` (N, n_pixels) → (N, n_rays)) or ``Aᵀ x`` (``x`` (N, n_rays) → (N, n_pixels)), Joseph's weights
    computed chunk by chunk in ``x``'s dtype."""
    n = x.shape[0]
    H, W = lines.shape
    if adjoint:
        out = x.new_zeros(1, n, H, W)
        shape_only = x.new_zeros(1, n, H, W)  # grid_sampler_2d_backward reads only the input's shape and dtype
        for start, stop, x_major in lines.chunks(n):
            grid = lines.grid(start, stop, x_major, x.dtype)
            weighted = (x[:, start:stop] * lines.weight[start:stop].to(x.dtype))[None, :, :, None]
            spread = weighted.expand(1, n, stop - start, lines.n_major).contiguous()
            image, _ = torch.ops.aten.grid_sampler_2d_backward(spread, shape_only, grid, 0, 0, False, [True, False])
            out += image
        return out.reshape(n, n_pixels)
    image = x.reshape(1, n, H, W)
    out = x.new_empty(n, lines.n_rays)
    for start, stop, x_major in lines.chunks(n):
        grid = lines.grid(start, stop, x_major, x.dtype)
        samples = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[:, start:stop] = samples[0].sum(-1) * lines.weight[start:stop].to(x.dtype)
    return out
