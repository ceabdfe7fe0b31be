"""Classical reconstruction from pre-log CT data (photon counts, :class:`~learnrecon.operators.nonlinear.BeerLambert`).

- :func:`prelog_fbp`: filtered backprojection of the log data ``−log(N/I₀)/μ`` (the post-log baseline).
- :func:`poisson_tv` and :func:`gauss_newton_tv` minimise the penalised (shifted) Poisson likelihood

      min_{x ≥ 0}  Σ (F(x) + s) − (N + s) log(F(x) + s) + λ Σ_pixels sqrt(|D x|² + ε²),

  with ``F(x) = I₀ exp(−μ A x)`` and ``s = σ_e²`` for data with electronic read-out noise of σ_e photons (the
  shifted-Poisson model of Yavuz & Fessler 1998; ``s = 0`` is the plain Poisson likelihood). Both terms are
  divided by I₀ (the minimiser is unchanged, λ is then per unit of I₀). The data term's gradient is
  ``F'(x)*(1 − (N + s)/(F + s)) = μ A*(F ⊙ (N + s)/(F + s) − F)`` (for s = 0: ``μ A*(N − F)``), the smoothed
  TV's ``Dᵀ(D x / sqrt(|D x|² + ε²))``.

  :func:`poisson_tv` is accelerated projected gradient (FISTA, Beck & Teboulle 2009). Along a ray with line
  integral t the data term's second derivative is ``μ² F (1 − (N + s) s/(F + s)²)``, at most ``μ² (I₀ + (N + s)/4)``
  in magnitude (``s F/(F + s)² ≤ 1/4``), so the gradient is Lipschitz on ``A x ≥ 0`` with
  ``L ≤ μ² ‖A‖² (I₀ + max(N + s)/4) + 8 λ/ε`` and the step ``1/L`` is safe; for s = 0 the objective is convex and
  ``L ≤ μ² I₀ ‖A‖² + 8 λ/ε``.

  :func:`gauss_newton_tv` is the Gauss–Newton method with lagged diffusivity (Vogel & Oman 1996): at ``x_k`` it
  solves the quadratic model ``(H_D + λ H_TV + δ I) p = −g`` by conjugate gradients, where
  ``H_D = F'(x)* diag(1/(F + s)) F'(x) = μ² A* diag(F²/(F + s)) A`` is the likelihood's Fisher information (its
  Gauss–Newton Hessian, positive semi-definite) and ``H_TV = Dᵀ diag(1/sqrt(|D x_k|² + ε²)) D`` the lagged-
  diffusivity TV Hessian; then it backtracks along ``p`` (projected onto x ≥ 0) until the objective decreases,
  per sample. With x ≥ 0 it is projected Newton (Bertsekas 1982): the pixels at 0 whose gradient points out of
  the constraint are held fixed, and the model is solved on the others. Each outer iteration costs ``cg_iter``
  products with A and A*; a few tens of outer iterations reach the objective FISTA reaches in thousands.
"""

from __future__ import annotations

import math

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.nonlinear import BeerLambert, poisson_nll

__all__ = ["gauss_newton_tv", "poisson_objective", "poisson_tv", "prelog_fbp"]


def _check_op(op) -> BeerLambert:
    if not isinstance(op, BeerLambert):
        raise ParameterError(f"pre-log reconstruction needs a BeerLambert operator (photon counts), got {op!r}")
    return op


def prelog_fbp(counts: torch.Tensor, op: BeerLambert, filter: str = "hann") -> torch.Tensor:  # noqa: A002
    """Filtered backprojection of the log data of ``counts`` (*batch, *op.range_shape)."""
    return _check_op(op).pseudo_inverse(counts, filter=filter)


def _smoothed_tv(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    d = FiniteDifference2D(tuple(x.shape[-2:]))
    g = d(x)
    magnitude = torch.sqrt((g * g).sum(dim=-3, keepdim=True) + eps**2)
    return magnitude.flatten(1).sum(dim=1), d.H(g / magnitude)


def _shift(readout: float) -> float:
    """``s = σ_e²`` of the shifted-Poisson model (a clear error for a negative or non-finite σ_e)."""
    if not (readout >= 0 and math.isfinite(readout)):
        raise ParameterError(f"readout noise σ_e must be a finite number >= 0 photons, got {readout}")
    return float(readout) ** 2


def poisson_objective(
    x: torch.Tensor, counts: torch.Tensor, op: BeerLambert, lam: float, eps: float, readout: float = 0.0
) -> torch.Tensor:
    """``(Σ (F(x) + s) − (N + s) log(F(x) + s) + λ TV_ε(x)) / I₀`` per sample, shape ``(B,)`` (``x``
    ``(B, 1, H, W)``, ``s = readout²``)."""
    s = _shift(readout)
    return (poisson_nll(op(x) + s, counts + s) + lam * _smoothed_tv(x, eps)[0]) / op.photons


def _data_gradient(
    x: torch.Tensor, counts: torch.Tensor, op: BeerLambert, s: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The expected counts ``F(x)`` and the data term's gradient ``μ A*(F (N + s)/(F + s) − F)``."""
    expected = op(x)
    return expected, op.mu_max * op.ray.H(expected * (counts + s) / (expected + s) - expected)


def _check_settings(counts: torch.Tensor, op, lam: float, eps: float, n_iter: int) -> torch.Tensor:
    counts = op.check_counts(counts)
    if counts.ndim != len(op.range_shape) + 2:
        raise ParameterError(f"counts must be (B, C, *range), got shape {tuple(counts.shape)}")
    if not (lam >= 0 and math.isfinite(lam)) or not eps > 0 or int(n_iter) < 1:
        raise ParameterError(f"need lam >= 0, eps > 0, n_iter >= 1; got lam={lam}, eps={eps}, n_iter={n_iter}")
    return counts


def _initial(counts: torch.Tensor, op: BeerLambert, x0: torch.Tensor | None, nonneg: bool) -> torch.Tensor:
    x = (prelog_fbp(counts, op) if x0 is None else x0).detach().clone()
    return x.clamp_min(0) if nonneg else x


def poisson_tv(
    counts: torch.Tensor,
    op: BeerLambert,
    lam: float = 1.0,
    n_iter: int = 300,
    eps: float = 1e-2,
    x0: torch.Tensor | None = None,
    nonneg: bool = True,
    readout: float = 0.0,
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[float]]:
    """Penalised Poisson-likelihood reconstruction of ``counts`` ``(B, 1, *op.range_shape)`` by FISTA (see the
    module docstring; ``readout`` σ_e for the shifted-Poisson model); starts from ``x0`` (default: post-log FBP,
    clipped at 0). With ``return_history`` also the mean objective after each iteration."""
    op = _check_op(op)
    counts = _check_settings(counts, op, lam, eps, n_iter)
    s = _shift(readout)
    x = _initial(counts, op, x0, nonneg)
    curvature = op.photons + float((counts + s).max()) / 4 if s > 0 else op.photons
    lipschitz = (op.mu_max**2 * op.ray.norm(torch.float64, counts.device) ** 2 * curvature + 8 * lam / eps) / op.photons
    step = 1.0 / lipschitz
    z, t = x.clone(), 1.0
    history: list[float] = []
    with torch.no_grad():
        for _ in range(int(n_iter)):
            grad = _data_gradient(z, counts, op, s)[1] + lam * _smoothed_tv(z, eps)[1]
            x_new = z - step * grad / op.photons
            if nonneg:
                x_new = x_new.clamp_min(0)
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = x_new, t_new
            if return_history:
                history.append(float(poisson_objective(x, counts, op, lam, eps, readout).mean()))
    return (x, history) if return_history else x


def _batched_cg(apply, b: torch.Tensor, n_iter: int) -> torch.Tensor:
    """``n_iter`` conjugate-gradient steps on ``apply(p) = b`` from 0, per sample (``apply`` symmetric positive
    definite on each sample of the batch ``(B, ...)``)."""
    dims = tuple(range(1, b.ndim))
    shape = (-1, *([1] * (b.ndim - 1)))
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), (r * r).sum(dims)
    tiny = torch.finfo(b.dtype).tiny
    for _ in range(n_iter):
        q = apply(p)
        pq = (p * q).sum(dims)
        alpha = torch.where(pq > tiny, rr / pq.clamp_min(tiny), torch.zeros_like(rr)).reshape(shape)
        x = x + alpha * p
        r = r - alpha * q
        rr_new = (r * r).sum(dims)
        beta = torch.where(rr > tiny, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr)).reshape(shape)
        p, rr = r + beta * p, rr_new
    return x


def gauss_newton_tv(
    counts: torch.Tensor,
    op: BeerLambert,
    lam: float = 1.0,
    n_iter: int = 20,
    cg_iter: int = 15,
    eps: float = 1e-2,
    damping: float = 1e-6,
    x0: torch.Tensor | None = None,
    nonneg: bool = True,
    readout: float = 0.0,
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[float]]:
    """Penalised Poisson-likelihood reconstruction of ``counts`` ``(B, 1, *op.range_shape)`` by Gauss–Newton with
    lagged diffusivity and a backtracking line search (see the module docstring): ``n_iter`` outer iterations of
    ``cg_iter`` CG steps each, ``damping`` δ (relative to the data term's curvature ``μ² I₀ ‖A‖²``) keeping the
    model positive definite. The objective never increases (a sample whose step finds no decrease in 20 halvings
    keeps its iterate). Starts from ``x0`` (default: post-log FBP clipped at 0); with ``return_history`` also the
    mean objective after each outer iteration."""
    op = _check_op(op)
    counts = _check_settings(counts, op, lam, eps, n_iter)
    if int(cg_iter) < 1 or not (damping >= 0 and math.isfinite(damping)):
        raise ParameterError(f"need cg_iter >= 1 and damping >= 0, got cg_iter={cg_iter}, damping={damping}")
    s = _shift(readout)
    x = _initial(counts, op, x0, nonneg)
    d = FiniteDifference2D(tuple(x.shape[-2:]))
    delta = damping * op.mu_max**2 * op.ray.norm(torch.float64, counts.device) ** 2
    history: list[float] = []
    with torch.no_grad():
        objective = poisson_objective(x, counts, op, lam, eps, readout)
        for _ in range(int(n_iter)):
            expected, grad_data = _data_gradient(x, counts, op, s)
            g = d(x)
            diffusivity = 1.0 / torch.sqrt((g * g).sum(dim=-3, keepdim=True) + eps**2)
            grad = (grad_data + lam * d.H(g * diffusivity)) / op.photons
            fisher = op.mu_max**2 * expected * expected / (expected + s)

            # projected Newton (Bertsekas 1982): pixels held at 0 by a gradient pointing outwards stay fixed
            free = ((x > 0) | (grad < 0)).to(x.dtype) if nonneg else torch.ones_like(x)

            def model_hessian(p, fisher=fisher, diffusivity=diffusivity, free=free):
                p = free * p
                data_part = op.ray.H(fisher * op.ray(p))
                return free * ((data_part + lam * d.H(diffusivity * d(p))) / op.photons + delta * p)

            x, objective = _backtrack(
                x,
                _batched_cg(model_hessian, -free * grad, int(cg_iter)),
                objective,
                nonneg,
                lambda z: poisson_objective(z, counts, op, lam, eps, readout),
            )
            if return_history:
                history.append(float(objective.mean()))
    return (x, history) if return_history else x


def _backtrack(x, direction, objective, nonneg: bool, evaluate, halvings: int = 20):
    """Per sample, the first of ``x + t p`` (projected onto x ≥ 0), t = 1, 1/2, …, whose objective is below
    ``objective``; a sample without one keeps ``x``. Returns the new iterates and their objectives."""
    shape = (-1, *([1] * (x.ndim - 1)))
    step = torch.ones_like(objective)
    pending = torch.ones_like(objective, dtype=torch.bool)
    x_new, value_new = x.clone(), objective.clone()
    for _ in range(halvings):
        trial = x + step.reshape(shape) * direction
        if nonneg:
            trial = trial.clamp_min(0)
        value = evaluate(trial)
        accept = pending & (value < objective)
        x_new = torch.where(accept.reshape(shape), trial, x_new)
        value_new = torch.where(accept, value, value_new)
        pending = pending & ~accept
        if not bool(pending.any()):
            break
        step = torch.where(pending, step / 2, step)
    return x_new, value_new
