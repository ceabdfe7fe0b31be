"""Iterative methods for linear least squares: Landweber, CGLS, Tikhonov by CG, projected gradient.

All take measurements ``y`` (*batch, *op.range_shape) and return images (*batch, *op.domain_shape),
or a :class:`~learnrecon.solvers.stopping.SolverResult` with ``return_info=True``. Scalars such as CG
step lengths are per sample, so a batch gives each sample its own iteration.
"""

from __future__ import annotations

import math

import torch

from learnrecon._checks import check_same_device
from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.solvers.stopping import Callback, SolverResult, Stopping, check_data, check_parameter, sample_norms

__all__ = ["cgls", "landweber", "projected_gradient", "tikhonov"]


def _start(y: torch.Tensor, op: LinearOperator, x0: torch.Tensor | None) -> torch.Tensor:
    batch = y.shape[: y.ndim - len(op.range_shape)]
    if x0 is None:
        dtype = y.dtype if not (y.is_complex() and not op.domain_complex) else y.real.dtype
        return torch.zeros(*batch, *op.domain_shape, dtype=dtype, device=y.device)
    if tuple(x0.shape) != (*batch, *op.domain_shape):
        raise ParameterError(f"x0 has shape {tuple(x0.shape)} but the solution has shape {(*batch, *op.domain_shape)}")
    check_same_device(("x0", x0), ("measurements", y))
    return x0.to(y.dtype if not y.is_complex() or op.domain_complex else y.real.dtype).clone()


def _per_sample(values: torch.Tensor, like: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Reshape per-sample scalars (n_samples,) to broadcast against ``like`` (*batch, *trailing)."""
    return values.reshape(*like.shape[: like.ndim - n_trailing], *([1] * n_trailing))


def _dot(a: torch.Tensor, b: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Per-sample real inner product Re⟨a, b⟩ over the last ``n_trailing`` dimensions."""
    prod = (a.conj() * b).real if a.is_complex() else a * b
    return prod.reshape(-1, math.prod(prod.shape[prod.ndim - n_trailing :])).sum(dim=1)


def _step(op: LinearOperator, step: float | None, y: torch.Tensor, bound_factor: float = 2.0) -> float:
    """The step ω, defaulting to 1/‖A‖²; refuse ω ≥ bound_factor/‖A‖² (the iteration would diverge)."""
    norm2 = op.norm(torch.float64, y.device) ** 2
    if step is None:
        return 1.0 / norm2
    step = check_parameter("step", step, positive=True)
    if step >= bound_factor / norm2:
        raise ParameterError(
            f"step {step:.4g} does not converge: it must be below {bound_factor:g}/‖A‖² = {bound_factor / norm2:.4g} "
            f"(‖A‖ = {norm2**0.5:.4g}); omit step= to use 1/‖A‖²"
        )
    return step


def _finish(stop: Stopping, x: torch.Tensor, k: int, return_info: bool):
    return stop.result(x, k) if return_info else x


def landweber(
    y: torch.Tensor,
    op: LinearOperator,
    n_iter: int = 100,
    step: float | None = None,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Landweber iteration x ← x + ω A*(y − A x), ω ∈ (0, 2/‖A‖²), default 1/‖A‖².

    An iterative regulariser: the error first falls, then rises as noise is fitted (semi-convergence);
    stop early with the discrepancy principle (``delta`` = noise norm ‖e‖ per sample) or ``n_iter``.
    """
    y = check_data(y, op)
    omega = _step(op, step, y)
    x = _start(y, op, x0)
    stop = Stopping(n_iter, rtol, delta, tau, callback, len(op.domain_shape))
    k = 0
    with torch.no_grad():
        residual = y - op(x)
        while k < stop.n_iter:
            k += 1
            x_old = x
            x = x + omega * op.H(residual)
            residual = y - op(x)
            if stop.update(k, x, x_old, sample_norms(residual, len(op.range_shape))):
                break
    return _finish(stop, x, k, return_info)


def cgls(
    y: torch.Tensor,
    op: LinearOperator,
    n_iter: int = 50,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Conjugate gradients on the normal equations A*A x = A*y (CGLS, Hestenes–Stiefel form).

    Converges to the least-squares solution of minimal norm (from x0 = 0) in at most rank(A) steps in
    exact arithmetic; like Landweber it semi-converges on noisy data, only faster. Stops early (reason
    "converged") once ‖A*r‖ has fallen by the working precision.
    """
    y = check_data(y, op)
    nd, nr = len(op.domain_shape), len(op.range_shape)
    x = _start(y, op, x0)
    stop = Stopping(n_iter, rtol, delta, tau, callback, nd)
    k = 0
    with torch.no_grad():
        r = y - op(x)
        s = op.H(r)
        p = s.clone()
        gamma = _dot(s, s, nd)
        # Converged to working precision: going on would divide round-off by round-off.
        floor = (10 * torch.finfo(s.real.dtype).eps) ** 2 * gamma
        while k < stop.n_iter and not bool((gamma <= floor).all()):
            k += 1
            q = op(p)
            qq = _dot(q, q, nr)
            alpha = torch.where(qq > 0, gamma / qq.clamp_min(torch.finfo(qq.dtype).tiny), torch.zeros_like(qq))
            x_old = x
            x = x + _per_sample(alpha, p, nd) * p
            r = r - _per_sample(alpha, q, nr) * q
            s = op.H(r)
            gamma_new = _dot(s, s, nd)
            beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(torch.finfo(gamma.dtype).tiny), 0 * gamma)
            p = s + _per_sample(beta, p, nd) * p
            gamma = gamma_new
            if stop.update(k, x, x_old, sample_norms(r, nr)):
                break
        if bool((gamma <= floor).all()):
            stop.reason = "converged"
    return _finish(stop, x, k, return_info)


def tikhonov(
    y: torch.Tensor,
    op: LinearOperator,
    alpha: float,
    x0: torch.Tensor | None = None,
    L: LinearOperator | None = None,
    n_iter: int = 200,
    tol: float = 1e-6,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Tikhonov regularisation x = argmin ‖A x − y‖² + α‖L x‖² by CG on (A*A + α L*L) x = A*y.

    ``L`` defaults to the identity; a :class:`~learnrecon.operators.FiniteDifference2D` gives a smoothness
    penalty. CG stops when the normal-equation residual falls below ``tol``·‖A*y‖ (per sample, all
    samples) or after ``n_iter`` iterations; ``callback(k, x_k)`` is called after each iteration and the
    residuals recorded are those of the normal equations.
    """
    y = check_data(y, op)
    alpha = check_parameter("alpha", alpha)
    tol = check_parameter("tol", tol)
    if L is not None and L.domain_shape != op.domain_shape:
        raise ParameterError(f"L acts on {L.domain_shape} but the operator's images are {op.domain_shape}")
    nd = len(op.domain_shape)

    def normal(v: torch.Tensor) -> torch.Tensor:
        penalty = L.H(L(v)) if L is not None else v
        return op.H(op(v)) + alpha * penalty

    x = _start(y, op, x0)
    stop = Stopping(n_iter, None, None, 1.02, callback, nd)
    k = 0
    with torch.no_grad():
        rhs = op.H(y)
        target = tol * sample_norms(rhs, nd)
        r = rhs - normal(x)
        p = r.clone()
        rr = _dot(r, r, nd)
        while k < stop.n_iter and not bool((rr.sqrt() <= target).all()):
            k += 1
            q = normal(p)
            pq = _dot(p, q, nd)
            a = torch.where(pq > 0, rr / pq.clamp_min(torch.finfo(pq.dtype).tiny), torch.zeros_like(pq))
            x = x + _per_sample(a, p, nd) * p
            r = r - _per_sample(a, q, nd) * q
            rr_new = _dot(r, r, nd)
            p = r + _per_sample(rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny), p, nd) * p
            rr = rr_new
            stop.update(k, x, None, rr.sqrt())
        stop.reason = "tol" if bool((rr.sqrt() <= target).all()) else "n_iter"
    return _finish(stop, x, k, return_info)


def projected_gradient(
    y: torch.Tensor,
    op: LinearOperator,
    n_iter: int = 100,
    step: float | None = None,
    lower: float | None = 0.0,
    upper: float | None = None,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Projected gradient descent x ← P_C(x − ω A*(A x − y)) on the box C = [lower, upper] (None: unbounded).

    The default C is the non-negative orthant; ω ∈ (0, 2/‖A‖²), default 1/‖A‖².
    """
    y = check_data(y, op)
    if op.domain_complex:
        raise ParameterError("projected_gradient needs a real image domain (a box constraint has no complex meaning)")
    if lower is not None and upper is not None and lower > upper:
        raise ParameterError(f"lower bound {lower} exceeds upper bound {upper}")
    omega = _step(op, step, y)

    def project(v: torch.Tensor) -> torch.Tensor:
        return v if lower is None and upper is None else v.clamp(min=lower, max=upper)

    x = project(_start(y, op, x0))
    stop = Stopping(n_iter, rtol, delta, tau, callback, len(op.domain_shape))
    k = 0
    with torch.no_grad():
        residual = op(x) - y
        while k < stop.n_iter:
            k += 1
            x_old = x
            x = project(x - omega * op.H(residual))
            residual = op(x) - y
            if stop.update(k, x, x_old, sample_norms(residual, len(op.range_shape))):
                break
    return _finish(stop, x, k, return_info)
