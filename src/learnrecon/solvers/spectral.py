"""Spectral filtering from an explicit SVD A = U Σ Vᴴ, for problems small enough to write down.

x = V diag(φ(σ)/σ) Uᴴ y with the filter φ: truncated SVD keeps the ``rank`` largest singular values
(φ = 1 for them, 0 for the rest); Tikhonov uses φ(σ) = σ²/(σ² + α). The SVD of ``op.to_dense()``
(refused beyond ``max_entries``) is computed once per dtype and device and cached on the operator.
"""

from __future__ import annotations

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.solvers.stopping import check_data, check_parameter

__all__ = ["svd", "tikhonov_svd", "tsvd"]


def svd(op: LinearOperator, dtype: torch.dtype = torch.float64, device="cpu", max_entries: int | None = None):
    """(U, σ, Vᴴ) of the explicit matrix of ``op`` (reduced SVD), cached on the operator."""
    device = torch.device(device)
    return op._cached(
        ("svd", dtype, device),
        lambda: torch.linalg.svd(op.to_dense(dtype, device, max_entries=max_entries), full_matrices=False),
    )


def _filtered(y: torch.Tensor, op: LinearOperator, weights) -> torch.Tensor:
    real = y.real.dtype if y.is_complex() else y.dtype
    u, sigma, vh = svd(op, torch.float64 if real == torch.float64 else torch.float32, y.device)
    batch = y.shape[: y.ndim - len(op.range_shape)]
    flat = y.reshape(-1, u.shape[0]).to(u.dtype if u.is_complex() else y.dtype)
    coefficients = (flat @ u.conj()) * weights(sigma).to(flat.dtype)
    x = coefficients @ vh.conj()
    if not op.domain_complex and x.is_complex():
        x = x.real
    return x.reshape(*batch, *op.domain_shape)


def tsvd(y: torch.Tensor, op: LinearOperator, rank: int) -> torch.Tensor:
    """Truncated-SVD solution using the ``rank`` largest singular values (the minimum-norm
    least-squares solution of the projected problem)."""
    y = check_data(y, op)
    if int(rank) != rank or rank < 1:
        raise ParameterError(f"rank must be a positive integer, got {rank}")

    def weights(sigma):
        keep = torch.arange(sigma.numel(), device=sigma.device) < rank
        return torch.where(keep & (sigma > 0), 1 / sigma.clamp_min(torch.finfo(sigma.dtype).tiny), 0 * sigma)

    return _filtered(y, op, weights)


def tikhonov_svd(y: torch.Tensor, op: LinearOperator, alpha: float) -> torch.Tensor:
    """Tikhonov solution argmin ‖A x − y‖² + α‖x‖² in closed form: x = V diag(σ/(σ² + α)) Uᴴ y."""
    y = check_data(y, op)
    alpha = check_parameter("alpha", alpha)
    return _filtered(y, op, lambda sigma: sigma / (sigma**2 + alpha).clamp_min(torch.finfo(sigma.dtype).tiny))
