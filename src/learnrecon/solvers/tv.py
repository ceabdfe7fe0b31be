"""Total-variation regularised reconstruction by the primal-dual hybrid gradient (Chambolle–Pock) method.

Solves  min_x ½‖A x − y‖² + λ‖∇x‖₂,₁ (+ the constraint x ≥ 0)  with ∇ the forward-difference gradient
in pixel units and ‖·‖₂,₁ the isotropic TV (sum over pixels of the Euclidean norm of the gradient).

The saddle-point form uses K = [A; c∇] with c = ‖A‖/‖∇‖ so that both blocks have the same norm
(faster convergence than the unscaled operator); then λ‖∇x‖₂,₁ = (λ/c)‖c∇x‖₂,₁ and
  p ← (p + σ(A x̄ − y)) / (1 + σ),   q ← proj_{|q| ≤ λ/c}(q + σ c∇x̄),
  x⁺ ← proj_{x ≥ 0}(x − τ(Aᵀp + c∇ᵀq)),   x̄ ← 2x⁺ − x,
with σ = τ = 0.99/‖K‖, ‖K‖ = √2·‖A‖ (Chambolle & Pock 2011, θ = 1).
"""

from __future__ import annotations

import math

import torch

from learnrecon._checks import check_complexity, check_finite, check_tensor, check_trailing_shape
from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.gradient import FiniteDifference2D

__all__ = ["tv_pdhg"]


def tv_pdhg(
    y: torch.Tensor,
    op: LinearOperator,
    lam: float,
    n_iter: int = 1000,
    nonneg: bool = True,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Isotropic-TV reconstruction of ``y`` (*batch, *op.range_shape) → (*batch, H, W) by PDHG.

    Args:
        y: measurements.
        op: forward operator with a 2-D image domain (H, W).
        lam: TV weight λ ≥ 0 (in the units of ½‖Ax − y‖²).
        n_iter: PDHG iterations.
        nonneg: constrain x ≥ 0.
        x0: starting image (default zero).
    """
    check_tensor(y, "measurements")
    check_complexity(y, op.range_complex, "measurements")
    check_trailing_shape(y, op.range_shape, "measurements", what=op.name)
    check_finite(y, "measurements")
    if len(op.domain_shape) != 2:
        raise ParameterError(f"tv_pdhg needs an operator on 2-D images, {op.name} has domain {op.domain_shape}")
    if not (lam >= 0 and math.isfinite(lam)):
        raise ParameterError(f"lam must be a finite number >= 0, got {lam}")
    if int(n_iter) < 0:
        raise ParameterError(f"n_iter must be >= 0, got {n_iter}")
    grad = FiniteDifference2D(op.domain_shape)
    norm_a = op.norm(torch.float64, y.device)
    c = norm_a / grad.norm_bound()
    step = 0.99 / (math.sqrt(2.0) * norm_a)
    batch = y.shape[: y.ndim - len(op.range_shape)]
    x = torch.zeros(*batch, *op.domain_shape, dtype=y.dtype, device=y.device) if x0 is None else x0.clone()
    x_bar = x.clone()
    p = torch.zeros_like(y)
    q = torch.zeros(*batch, *grad.range_shape, dtype=y.dtype, device=y.device)
    radius = lam / c
    with torch.no_grad():
        for _ in range(int(n_iter)):
            p = (p + step * (op(x_bar) - y)) / (1 + step)
            q = q + (step * c) * grad(x_bar)
            q = q / (q.norm(dim=-3, keepdim=True) / radius).clamp_min(1) if radius > 0 else torch.zeros_like(q)
            x_new = x - step * (op.H(p) + c * grad.H(q))
            if nonneg:
                x_new = x_new.clamp_min(0)
            x_bar = 2 * x_new - x
            x = x_new
    return x
