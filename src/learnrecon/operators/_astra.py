"""The optional ASTRA backend of the ray transforms: ASTRA's CPU projectors, image by image.

``ParallelBeam2D(..., backend="astra")`` uses ASTRA's 'linear' projector (the same Joseph weights as the
native backend) and ``FanBeam2D(..., backend="astra")`` its 'line_fanflat' projector (line lengths: a
slightly different discretisation). ASTRA works in pixel units, so its projections and backprojections
are multiplied by the pixel size. Tensors on another device are copied to the CPU and back.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["astra_product"]


def _projector(op):
    try:
        import astra
    except ImportError as err:
        raise ImportError("backend='astra' needs ASTRA: pip install 'learnrecon[astra]' (astra-toolbox)") from err
    H, W = op.image_shape
    vol = astra.create_vol_geom(H, W)
    h = op.pixel_size
    angles = op.angles.numpy()
    if hasattr(op, "source_distance"):
        geometry = astra.create_proj_geom(
            "fanflat", op.detector_spacing / h, op.n_detectors, angles, op.source_distance / h, op.detector_distance / h
        )
        return astra.OpTomo(astra.create_projector("line_fanflat", geometry, vol))
    geometry = astra.create_proj_geom("parallel", op.detector_spacing / h, op.n_detectors, angles)
    return astra.OpTomo(astra.create_projector("linear", geometry, vol))


def astra_product(op, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
    """``op(x)`` (or ``op.H(x)`` when ``adjoint``) for ``x`` (*batch, *in_shape) computed by ASTRA."""
    w = op._cached(("astra",), lambda: _projector(op))
    in_shape, out_shape = (op.range_shape, op.domain_shape) if adjoint else (op.domain_shape, op.range_shape)
    batch = x.shape[: x.ndim - 2]
    flat = x.detach().reshape(-1, in_shape[0] * in_shape[1]).to("cpu", torch.float32).numpy()
    apply = w.T if adjoint else w
    out = np.stack([apply * item for item in flat]) if len(flat) else np.zeros((0, out_shape[0] * out_shape[1]))
    result = torch.from_numpy(out * op.pixel_size).reshape(*batch, *out_shape)
    return result.to(device=x.device, dtype=x.dtype)
