"""Joseph's method: the sparse system matrix of a 2-D ray transform, built vectorised in chunks of rays.

A ray ``p0 + t·r`` (unit ``r``) that is more horizontal than vertical (|r_x| ≥ |r_y|) is sampled at
every pixel column x_j: its height y(x_j) falls between two pixel rows, which share the weight
``h / |r_x|`` (the ray's length per column) by linear interpolation. Steeper rays are sampled per row.
This is ASTRA's 'linear' projector; line integrals of smooth images are exact to O(h²).

Pixel ``(i, j)`` of an ``(H, W)`` image with pixel size ``h`` has its centre at
``x_j = (j + ½)h − W h/2`` and ``y_i = H h/2 − (i + ½)h`` (row 0 at the top).
"""

from __future__ import annotations

import torch

__all__ = ["csr_transpose", "joseph_csr"]

#: Entries computed at once (before dropping zeros); bounds the builder's temporary memory (~40 B each).
CHUNK_ENTRIES = 2**24


def _chunk_entries(p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float):
    """Columns and values of the rays ``p0, r`` (R, 2), in ray-major order, with each ray's entry count."""
    H, W = shape
    n_rays = p0.shape[0]
    L = max(H, W)
    m = torch.arange(L, dtype=torch.float64)
    x_major = r[:, 0].abs() >= r[:, 1].abs()  # (R,)
    # Sample position along the major axis: column centre x_m or row centre y_m.
    x_m = (m + 0.5) * h - W * h / 2
    y_m = H * h / 2 - (m + 0.5) * h
    rx, ry = r[:, 0:1], r[:, 1:2]
    px, py = p0[:, 0:1], p0[:, 1:2]
    safe_rx = torch.where(x_major[:, None], rx, torch.ones_like(rx))
    safe_ry = torch.where(x_major[:, None], torch.ones_like(ry), ry)
    # x-major: y at column m -> fractional row index; y-major: x at row m -> fractional column index.
    y_at = py + (x_m[None] - px) / safe_rx * ry
    x_at = px + (y_m[None] - py) / safe_ry * rx
    frac_index = torch.where(x_major[:, None], (H * h / 2 - y_at) / h - 0.5, (x_at + W * h / 2) / h - 0.5)
    lower = torch.floor(frac_index)
    frac = frac_index - lower
    lower = lower.long()
    weight = torch.where(x_major, h / r[:, 0].abs().clamp_min(1e-300), h / r[:, 1].abs().clamp_min(1e-300))[:, None]
    minor_len = torch.where(x_major, H, W)[:, None]
    major_len = torch.where(x_major, W, H)[:, None]
    step = torch.arange(L)[None]
    cols, vals, valid = [], [], []
    for offset, share in ((0, 1 - frac), (1, frac)):
        minor = lower + offset
        ok = (minor >= 0) & (minor < minor_len) & (step < major_len) & (share > 0)
        row_index = torch.where(x_major[:, None], minor, step)
        col_index = torch.where(x_major[:, None], step, minor)
        cols.append(row_index * W + col_index)
        vals.append(weight * share)
        valid.append(ok)
    # Interleave the two interpolation partners per step, keeping ray-major order.
    cols = torch.stack(cols, dim=-1).reshape(n_rays, -1)
    vals = torch.stack(vals, dim=-1).reshape(n_rays, -1)
    valid = torch.stack(valid, dim=-1).reshape(n_rays, -1)
    counts = valid.sum(dim=1)
    return cols[valid], vals[valid], counts


def joseph_csr(
    p0: torch.Tensor, r: torch.Tensor, shape: tuple[int, int], h: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR arrays (crow_indices, col_indices, values) of the (R, H·W) Joseph matrix for rays ``p0 + t r``.

    Args:
        p0: (R, 2) a point on each ray (float64).
        r: (R, 2) unit direction of each ray (float64).
        shape: image (H, W); h: pixel size.
        dtype: dtype of the returned values (weights are computed in float64).

    Indices are int32 when the matrix allows it (fewer bytes, faster SpMM), else int64.
    """
    H, W = shape
    n_rays = p0.shape[0]
    rays_per_chunk = max(1, CHUNK_ENTRIES // (2 * max(H, W)))
    cols, vals, counts = [], [], []
    for start in range(0, n_rays, rays_per_chunk):
        c, v, n = _chunk_entries(p0[start : start + rays_per_chunk], r[start : start + rays_per_chunk], shape, h)
        index_dtype = torch.int32 if H * W < 2**31 else torch.int64
        cols.append(c.to(index_dtype))
        vals.append(v.to(dtype))
        counts.append(n)
    counts = torch.cat(counts)
    nnz = int(counts.sum())
    index_dtype = torch.int32 if max(nnz, H * W) < 2**31 else torch.int64
    crow = torch.zeros(n_rays + 1, dtype=torch.int64)
    torch.cumsum(counts, dim=0, out=crow[1:])
    return crow.to(index_dtype), torch.cat(cols).to(index_dtype), torch.cat(vals)


def csr_transpose(
    crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR arrays of the transpose of the (R, ``n_cols``) CSR matrix ``(crow, col, val)``.

    A stable counting sort by column: entries keep their row order within each column, which is what
    ``to_sparse_csc`` gives, at about half its time (measured at case b: 3.9 s against 8.6 s).
    """
    n_rows = crow.numel() - 1
    rows = torch.repeat_interleave(torch.arange(n_rows, dtype=col.dtype), torch.diff(crow.long()))
    order = torch.argsort(col, stable=True)
    t_crow = torch.zeros(n_cols + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(col.long(), minlength=n_cols), dim=0, out=t_crow[1:])
    return t_crow.to(crow.dtype), rows[order], val[order]
