"""Classical reconstruction from pre-log CT data (photon counts, :class:`~learnrecon.operators.nonlinear.BeerLambert`).

- :func:`prelog_fbp`: filtered backprojection of the log data ``−log(N/I₀)/μ`` (the post-log baseline).
- :func:`poisson_tv`: accelerated projected gradient (FISTA, Beck & Teboulle 2009) on the penalised Poisson
  likelihood

      min_{x ≥ 0}  Σ F(x) − N log F(x) + λ Σ_pixels sqrt(|D x|² + ε²),

  with ``F(x) = I₀ exp(−μ A x)``. Its gradient is ``F'(x)*(1 − N/F(x))`` (for Beer–Lambert ``μ A*(N − F(x))``)
  plus the smoothed TV's ``Dᵀ(D x / sqrt(|D x|² + ε²))``; for Beer–Lambert the objective is convex and its
  gradient is Lipschitz on ``A x ≥ 0`` with ``L ≤ μ² I₀ ‖A‖² + 8 λ / ε``, so the step ``1/L`` converges.
  Both terms are divided by I₀ (the minimiser is unchanged, λ is then per unit of I₀).
"""

from __future__ import annotations

import math

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.nonlinear import BeerLambert, poisson_nll

__all__ = ["poisson_objective", "poisson_tv", "prelog_fbp"]


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


def poisson_objective(x: torch.Tensor, counts: torch.Tensor, op: BeerLambert, lam: float, eps: float) -> torch.Tensor:
    """``(Σ F(x) − N log F(x) + λ TV_ε(x)) / I₀`` per sample, shape ``(B,)`` (``x`` ``(B, 1, H, W)``)."""
    return (poisson_nll(op(x), counts) + lam * _smoothed_tv(x, eps)[0]) / op.photons


def poisson_tv(
    counts: torch.Tensor,
    op: BeerLambert,
    lam: float = 1.0,
    n_iter: int = 300,
    eps: float = 1e-2,
    x0: torch.Tensor | None = None,
    nonneg: bool = True,
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[float]]:
    """Penalised Poisson-likelihood reconstruction of ``counts`` ``(B, 1, *op.range_shape)`` by FISTA (see the
    module docstring); starts from ``x0`` (default: post-log FBP, clipped at 0). With ``return_history`` also
    the mean objective after each iteration."""
    op = _check_op(op)
    counts = op.check_counts(counts)
    if counts.ndim != len(op.range_shape) + 2:
        raise ParameterError(f"counts must be (B, C, *range), got shape {tuple(counts.shape)}")
    if not (lam >= 0 and math.isfinite(lam)) or not eps > 0 or int(n_iter) < 1:
        raise ParameterError(f"need lam >= 0, eps > 0, n_iter >= 1; got lam={lam}, eps={eps}, n_iter={n_iter}")
    x = (prelog_fbp(counts, op) if x0 is None else x0).detach().clone()
    if nonneg:
        x = x.clamp_min(0)
    lipschitz = op.mu_max**2 * op.ray.norm(torch.float64, counts.device) ** 2 + 8 * lam / (eps * op.photons)
    step = 1.0 / lipschitz
    z, t = x.clone(), 1.0
    history: list[float] = []
    with torch.no_grad():
        for _ in range(int(n_iter)):
            expected = op(z)
            grad = op.mu_max * op.ray.H(counts - expected) + lam * _smoothed_tv(z, eps)[1]
            x_new = z - step * grad / op.photons
            if nonneg:
                x_new = x_new.clamp_min(0)
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = x_new, t_new
            if return_history:
                history.append(float(poisson_objective(x, counts, op, lam, eps).mean()))
    return (x, history) if return_history else x
