"""Joseph's method: the sparse system matrix of a 2-D ray transform, built vectorised in chunks of rays.

A ray ``p0 + t·r`` (unit ``r``) that is more horizontal than vertical (|r_x| ≥ |r_y|) is sampled at
every pixel column ``m`` it crosses: there its fractional row index is ``f(m) = a + b·m``, and the two
rows ``⌊f⌋`` and ``⌊f⌋ + 1`` share the weight ``h / |r_x|`` (the ray's length per column) as ``1 − frac``
and ``frac``. Steeper rays are sampled per row, with the roles of rows and columns swapped.
This is ASTRA's 'linear' projector; line integrals of smooth images are exact to O(h²).

Pixel ``(i, j)`` of an ``(H, W)`` image with pixel size ``h`` has its centre at
``x_j = (j + ½)h − W h/2`` and ``y_i = H h/2 − (i + ½)h`` (row 0 at the top).

Only the steps ``m`` where a ray is inside the image are enumerated (found per ray from ``a`` and ``b``),
so the work and the temporaries are proportional to the number of nonzeros, and the arrays are written
into preallocated outputs: at LoDoPaB size (362², 1000 angles, 513 detectors; 236 M nonzeros) the
builder needs little beyond the two matrices it returns.
"""

from __future__ import annotations

import torch

__all__ = ["csr_transpose", "joseph_csr"]

#: Sampling steps (two entries each) computed at once; bounds the builder's temporary memory (~60 B each).
CHUNK_STEPS = 2**20
#: Entries transposed at once: small sorts are cheaper per entry (they stay in cache).
TRANSPOSE_CHUNK_ENTRIES = 2**19


def _index_dtype(largest: int) -> torch.dtype:
    return torch.int32 if largest < 2**31 else torch.int64


def _ray_lines(p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float) -> dict[str, torch.Tensor]:
    """Per ray (float64 / int64, each (R,)): the line ``f(m) = a + b·m`` of fractional minor indices, the
    weight ``h/|r_major|``, the pixel strides along the minor and major axes, and the range of steps
    ``m_lo ≤ m ≤ m_hi`` where the ray can touch the image.

    x-major (|r_x| ≥ |r_y|), at column centre m: ``f = H/2 − ½ − p_y/h − (m + ½ − W/2 − p_x/h)·r_y/r_x``.
    y-major, at row centre m: ``f = W/2 − ½ + p_x/h + (H/2 − ½ − m − p_y/h)·r_x/r_y``.
    """
    H, W = shape
    px, py, rx, ry = p0[:, 0] / h, p0[:, 1] / h, r[:, 0], r[:, 1]
    x_major = rx.abs() >= ry.abs()
    slope = torch.where(x_major, ry / torch.where(x_major, rx, 1.0), rx / torch.where(x_major, 1.0, ry))
    a_x = H / 2 - 0.5 - py - (0.5 - W / 2 - px) * slope
    a_y = W / 2 - 0.5 + px + (H / 2 - 0.5 - py) * slope
    a = torch.where(x_major, a_x, a_y)
    b = -slope
    minor_len = torch.where(x_major, H, W)
    major_len = torch.where(x_major, W, H)
    # Entries need -1 < f(m) < minor_len; solve for m, widened by one step (the mask below is exact).
    ends = torch.stack([(-1 - a) / b, (minor_len - a) / b])
    flat = b == 0
    inside = (a > -1) & (a < minor_len)
    lo = torch.where(flat, torch.where(inside, 0.0, float(max(H, W))), ends.min(dim=0).values.floor() - 1)
    hi = torch.where(flat, torch.where(inside, major_len - 1.0, -1.0), ends.max(dim=0).values.ceil() + 1)
    m_lo = lo.clamp(0, max(H, W)).long()
    m_hi = torch.minimum(hi.clamp(-1, max(H, W)).long(), major_len - 1)
    return {
        "a": a,
        "b": b,
        "weight": h / torch.where(x_major, rx.abs(), ry.abs()),
        "minor_len": minor_len,
        "minor_stride": torch.where(x_major, W, 1),
        "major_stride": torch.where(x_major, 1, W),
        "m_lo": m_lo,
        "n_steps": (m_hi - m_lo + 1).clamp_min(0),
    }


def _chunk_entries(lines: dict[str, torch.Tensor], rays: slice, dtype: torch.dtype, total: int | None = None):
    """Columns, values and validity (each (2S,), step-major: both interpolation partners of a step side
    by side) of the S sampling steps of ``rays``, ray after ray, and the ray (counted from ``rays.start``) of
    each step, (S,). Computed on the device of ``lines``; ``total`` (S, when known) spares a GPU a sync."""
    n_steps = lines["n_steps"][rays]
    device = n_steps.device
    ray = torch.repeat_interleave(torch.arange(n_steps.numel(), device=device), n_steps, output_size=total)

    def per_step(name: str, as_dtype: torch.dtype | None = None) -> torch.Tensor:
        values = lines[name][rays]
        return values.to(as_dtype or values.dtype).index_select(0, ray)

    first_step = torch.cumsum(n_steps, 0) - n_steps
    m = torch.arange(ray.numel(), device=device) - first_step.index_select(0, ray) + per_step("m_lo")
    f = per_step("a", dtype) + per_step("b", dtype) * m.to(dtype)
    lower = torch.floor(f)
    frac = f - lower
    minor = lower.long()[:, None] + torch.tensor([0, 1], device=device)
    share = torch.stack([1 - frac, frac], dim=1)
    valid = (minor >= 0) & (minor < per_step("minor_len")[:, None]) & (share > 0)
    cols = minor * per_step("minor_stride")[:, None] + (m * per_step("major_stride"))[:, None]
    vals = share * per_step("weight", dtype)[:, None]
    return cols.flatten(), vals.flatten(), valid.flatten(), ray


def joseph_csr(
    p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR arrays (crow_indices, col_indices, values) of the (R, H·W) Joseph matrix for rays ``p0 + t r``.

    Args:
        p0: (R, 2) a point on each ray (float64).
        r: (R, 2) unit direction of each ray (float64).
        shape: image (H, W); h: pixel size.
        dtype: dtype of the values; the sampling positions ``a + b·m`` are computed in it too (float32:
            positions to ~1e-5 pixel at 362², well inside the discretisation error).

    Indices are int32 when the matrix allows it (fewer bytes, faster SpMM), else int64.
    """
    H, W = shape
    n_rays = p0.shape[0]
    lines = _ray_lines(p0, r, shape, h)
    bound = 2 * int(lines["n_steps"].sum())
    index_dtype = _index_dtype(max(bound, H * W))
    out_cols = torch.empty(bound + 1, dtype=index_dtype)  # the last slot receives the dropped entries
    out_vals = torch.empty(bound + 1, dtype=dtype)
    step_end = torch.cumsum(lines["n_steps"], 0)
    crow = torch.zeros(n_rays + 1, dtype=torch.int64)
    nnz, start = 0, 0
    while start < n_rays:
        # As many rays as fit in CHUNK_STEPS (at least one).
        stop = int(torch.searchsorted(step_end, step_end[start] - lines["n_steps"][start] + CHUNK_STEPS, right=True))
        stop = min(max(stop, start + 1), n_rays)
        cols, vals, valid, _ = _chunk_entries(lines, slice(start, stop), dtype)
        kept = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.int64), valid.long()]), 0)  # kept before each
        dest = torch.where(valid, nnz + kept[:-1], bound)  # entries compacted in order (index_copy_ is fast)
        out_cols.index_copy_(0, dest, cols.to(index_dtype))
        out_vals.index_copy_(0, dest, vals)
        chunk_step_end = step_end[start:stop] - (step_end[start] - lines["n_steps"][start])
        crow[start + 1 : stop + 1] = nnz + kept[2 * chunk_step_end]  # entries up to the end of each ray
        nnz, start = nnz + int(kept[-1]), stop
    return crow.to(index_dtype), out_cols[:nnz], out_vals[:nnz]


def csr_transpose(
    crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR arrays of the transpose of the (R, ``n_cols``) CSR matrix ``(crow, col, val)``.

    A counting sort by column, chunk by chunk of rows: each column's entries keep their row order (the
    same arrays as ``to_sparse_csc``), written straight into the preallocated result, so the temporary
    memory is that of one chunk rather than of an argsort of every entry.
    """
    n_rows = crow.numel() - 1
    crow64 = crow.long()
    t_crow = torch.zeros(n_cols + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(col, minlength=n_cols), dim=0, out=t_crow[1:])
    t_col = torch.empty_like(col)
    t_val = torch.empty_like(val)
    next_free = t_crow[:-1].clone()  # next free slot of each column
    start = 0
    while start < n_rows:
        stop = int(torch.searchsorted(crow64, crow64[start] + TRANSPOSE_CHUNK_ENTRIES, right=True)) - 1
        stop = min(max(stop, start + 1), n_rows)
        lo, hi = int(crow64[start]), int(crow64[stop])
        sorted_cols, order = torch.sort(col[lo:hi], stable=True)
        sorted_cols = sorted_cols.long()
        counts = torch.bincount(sorted_cols, minlength=n_cols)
        run_start = torch.cumsum(counts, 0) - counts  # where each column's run begins in sorted_cols
        dest_sorted = next_free[sorted_cols] + torch.arange(hi - lo) - run_start[sorted_cols]
        dest = torch.empty_like(dest_sorted).index_copy_(0, order, dest_sorted)  # in the chunk's entry order
        rows = torch.repeat_interleave(torch.arange(start, stop, dtype=col.dtype), torch.diff(crow64[start : stop + 1]))
        t_col.index_copy_(0, dest, rows)
        t_val.index_copy_(0, dest, val[lo:hi])
        next_free += counts
        start = stop
    return t_crow.to(crow.dtype), t_col, t_val
