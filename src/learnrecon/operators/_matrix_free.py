"""The matrix-free backend of the ray transforms: Joseph's weights computed on the fly, chunk by chunk of rays.

The entries are those of the native backend's CSR matrix (:func:`learnrecon.operators._joseph.joseph_csr`: the
same per-ray lines ``f(m) = a + b·m`` and the same arithmetic in the same dtype), but they are never stored. A chunk
of rays is laid out densely, ray × major step ``m = 0 … max(H, W) − 1`` × the two interpolation partners, the
steps outside a ray's range (or outside the image) masked to zero weight: the forward projection gathers the image
at those pixels and sums along each ray; the adjoint computes the same entries and scatters the data into the
pixels (``index_add_``). Forward and adjoint are so the transposes of one matrix, and the dot-product test holds to
rounding. Plain torch, on any device.

Memory: the per-ray line parameters (8 numbers, 64 bytes a ray; 33 MB at LoDoPaB size, 513,000 rays, against the
CSR pair's 3.6 GB in float32) and the temporaries of one chunk (about ``CHUNK_ENTRIES`` entries over the batch);
the price is time: the entries are recomputed at every product (about 1.25 × the nonzeros, the padding of the
dense layout).
"""

from __future__ import annotations

import torch

from learnrecon.operators._joseph import _ray_lines

__all__ = ["RayLines", "matrix_free_product"]

#: Entries (ray × step × partner × image of the batch) a chunk computes at once; ~30 bytes of temporaries each.
CHUNK_ENTRIES = 2**19

_FIELDS = ("a", "b", "weight", "minor_len", "minor_stride", "major_stride", "m_lo", "m_hi")


class RayLines:
    """The per-ray lines of a geometry (:func:`~learnrecon.operators._joseph._ray_lines`) on one device."""

    def __init__(self, p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float, device) -> None:
        lines = _ray_lines(p0, r, shape, h)
        lines["m_hi"] = lines["m_lo"] + lines["n_steps"] - 1
        self.lines = {k: lines[k].to(device) for k in _FIELDS}
        self.n_rays, self.n_major, self.n_pixels = p0.shape[0], max(shape), shape[0] * shape[1]
        self.steps = torch.arange(self.n_major, device=device)
        self.device = torch.device(device)

    def chunks(self, batch: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of consecutive rays, about ``CHUNK_ENTRIES`` entries over a batch of ``batch``."""
        size = max(CHUNK_ENTRIES // (2 * self.n_major * max(batch, 1)), 1)
        return [(start, min(start + size, self.n_rays)) for start in range(0, self.n_rays, size)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.lines.values(), self.steps))

    def entries(self, start: int, stop: int, dtype: torch.dtype):
        """Pixel indices and weights of both interpolation partners, each ``(R, max(H, W))``, of rays ``start …
        stop − 1`` (zero weight where the CSR matrix has no entry), computed as
        :func:`~learnrecon.operators._joseph.joseph_csr` computes its values: ``f = a + b·m`` in ``dtype``, the
        weights ``(1 − frac)·w`` and ``frac·w``."""
        ln = {k: v[start:stop, None] for k, v in self.lines.items()}
        m = self.steps[None]
        f = ln["a"].to(dtype) + ln["b"].to(dtype) * m.to(dtype)
        lower = torch.floor(f)
        frac = f - lower
        weight = ln["weight"].to(dtype)
        top = ln["minor_len"].to(dtype) - 1
        inside = (m >= ln["m_lo"]) & (m <= ln["m_hi"])
        zero = torch.zeros((), dtype=dtype, device=f.device)
        v0 = torch.where(inside & (lower >= 0) & (lower <= top), (1 - frac) * weight, zero)
        v1 = torch.where(inside & (lower >= -1) & (lower <= top - 1), frac * weight, zero)
        # Pixel indices, exact in the index dtype (float64 for images of 2**24 pixels or more).
        index_dtype = dtype if self.n_pixels < 2**24 and dtype != torch.float16 else torch.float64
        lower_i, top_i = lower.to(index_dtype), top.to(index_dtype)
        major = (m * ln["major_stride"]).to(index_dtype)
        stride = ln["minor_stride"].to(index_dtype)
        c0 = torch.minimum(lower_i.clamp_min(0), top_i) * stride + major
        c1 = torch.minimum((lower_i + 1).clamp_min(0), top_i) * stride + major
        c0 = torch.where(inside, c0, 0).long()
        c1 = torch.where(inside, c1, 0).long()
        return c0, v0, c1, v1


def matrix_free_product(lines: RayLines, x: torch.Tensor, n_pixels: int, adjoint: bool) -> torch.Tensor:
    """``A x`` (``x`` (N, n_pixels) → (N, n_rays)) or ``Aᵀ x`` (``x`` (N, n_rays) → (N, n_pixels)) with the Joseph
    entries of ``lines`` computed chunk by chunk in ``x``'s dtype."""
    n = x.shape[0]
    out = x.new_zeros(n, n_pixels if adjoint else lines.n_rays)
    for start, stop in lines.chunks(n):
        c0, v0, c1, v1 = lines.entries(start, stop, x.dtype)
        if adjoint:
            part = x[:, start:stop, None]
            out.index_add_(1, c0.flatten(), (part * v0).reshape(n, -1))
            out.index_add_(1, c1.flatten(), (part * v1).reshape(n, -1))
        else:
            g0 = x.index_select(1, c0.flatten()).reshape(n, *c0.shape)
            g1 = x.index_select(1, c1.flatten()).reshape(n, *c1.shape)
            out[:, start:stop] = (g0 * v0 + g1 * v1).sum(-1)
    return out
