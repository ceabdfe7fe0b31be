"""The matrix-free backend of the ray transforms: Joseph's weights computed on the fly, chunk by chunk of rays.

The entries are those of the native backend's CSR matrix (:func:`learnrecon.operators._joseph.joseph_csr`: the
same per-ray lines and the same arithmetic in the same dtype), but they are never stored: the forward
projection computes a chunk of rays' entries and gathers the image at their pixels (``index_add_`` into the rays),
and the adjoint computes the same entries and scatters the data into the pixels. Forward and adjoint are so the
transposes of one matrix, and the dot-product test holds to rounding. Plain torch, on any device.

Memory: the per-ray line parameters (8 numbers, 64 bytes a ray; 33 MB at LoDoPaB size, 513,000 rays, against the
CSR pair's 3.6 GB in float32) and the temporaries of one chunk (``CHUNK_ENTRIES`` entries times the batch);
the price is time: the entries are recomputed at every product.
"""

from __future__ import annotations

import torch

from learnrecon.operators._joseph import _chunk_entries, _ray_lines

__all__ = ["RayLines", "matrix_free_product"]

#: Matrix entries a chunk computes at once, counted over the batch (each entry: ~40 bytes of temporaries plus
#: 4–8 bytes per image of the batch).
CHUNK_ENTRIES = 2**22


class RayLines:
    """The per-ray lines of a geometry on one device, and the chunks of rays the products walk through.

    ``lines``: the tensors of :func:`~learnrecon.operators._joseph._ray_lines` on ``device``; ``chunks``: per
    chunk ``(first ray, end ray, sampling steps)`` (computed once, on the CPU, so the products need no sync).
    """

    def __init__(self, p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float, device) -> None:
        lines = _ray_lines(p0, r, shape, h)
        self.n_rays = p0.shape[0]
        steps = lines["n_steps"]
        self.step_end = torch.cumsum(steps, 0)
        self.lines = {k: v.to(device) for k, v in lines.items()}
        self.device = torch.device(device)

    def chunks(self, batch: int) -> list[tuple[int, int, int]]:
        """``(start, stop, steps)`` of consecutive rays with at most ``CHUNK_ENTRIES / batch`` entries (≥ 1 ray)."""
        budget = max(CHUNK_ENTRIES // (2 * max(batch, 1)), 1)
        out, start = [], 0
        step_end = self.step_end
        while start < self.n_rays:
            before = int(step_end[start - 1]) if start else 0
            stop = int(torch.searchsorted(step_end, before + budget, right=True))
            stop = min(max(stop, start + 1), self.n_rays)
            out.append((start, stop, int(step_end[stop - 1]) - before))
            start = stop
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.lines.values())


def matrix_free_product(lines: RayLines, x: torch.Tensor, n_pixels: int, adjoint: bool) -> torch.Tensor:
    """``A x`` (``x`` (N, n_pixels) → (N, n_rays)) or ``Aᵀ x`` (``x`` (N, n_rays) → (N, n_pixels)) with the Joseph
    entries of ``lines`` computed chunk by chunk in ``x``'s dtype."""
    n = x.shape[0]
    out = x.new_zeros(n, n_pixels if adjoint else lines.n_rays)
    for start, stop, steps in lines.chunks(n):
        if steps == 0:
            continue
        cols, vals, valid, ray = _chunk_entries(lines.lines, slice(start, stop), x.dtype, total=steps)
        vals = torch.where(valid, vals, 0)
        cols = torch.where(valid, cols, 0)
        rays = (ray + start).repeat_interleave(2)
        if adjoint:
            out.index_add_(1, cols, x.index_select(1, rays) * vals)
        else:
            out.index_add_(1, rays, x.index_select(1, cols) * vals)
    return out
