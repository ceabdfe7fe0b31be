"""The variational reconstruction with a learned regulariser: x̂ = argmin_x ½‖Ax − y‖² + λ R_θ(x).

:func:`descend` minimises it by gradient descent with backtracking, per sample: from a step ``t``, a trial
``x − t∇f(x)`` is kept when it lowers the objective, else ``t`` is halved (at most ``max_halvings`` times, after
which the sample stops). The objective therefore never increases. The gradient of ``R_θ`` comes from autograd (the
solve runs with gradients on, also inside ``torch.no_grad()``); the networks' weights get no gradient.

It works on the normalised problem (``A/‖A‖``, ``y/‖A‖``: see :func:`learnrecon.models.base.normalised`), on which
``∇`` of the data term has Lipschitz constant 1, so the initial step 1 suits any operator and λ has the same meaning
on every geometry.

With ``strong_convexity`` μ > 0 (a convex regulariser plus ``μ/2‖x‖²``, see :mod:`.convex`), the objective is
μ-strongly convex and ``f(x) − f* ≤ ‖∇f(x)‖²/(2μ)`` bounds the optimality gap: the solve stops once that bound is
below ``gap_tol`` for every sample (the certificate of :class:`Descent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator

__all__ = ["Descent", "check_weight", "descend"]

#: A regulariser: images ``(N, 1, H, W)`` -> values ``(N,)``.
Regulariser = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Descent:
    """What :func:`descend` did: the objective per iteration ``(n_iter + 1, N)`` (the first row at ``x0``),
    the iterations run, the final steps ``(N,)``, and with strong convexity the bound on the optimality gap
    ``‖∇f‖²/(2μ)`` per sample at the end (``None`` otherwise)."""

    objective: list[torch.Tensor] = field(default_factory=list)
    iterations: int = 0
    steps: torch.Tensor | None = None
    gap_bound: torch.Tensor | None = None


def check_weight(lam: float, name: str = "lam") -> float:
    """``lam`` as a float, refusing negative or non-finite weights."""
    lam = float(lam)
    if not lam >= 0 or lam == float("inf"):
        raise ParameterError(f"the regularisation weight {name} must be finite and ≥ 0, got {lam}")
    return lam


def _objective_and_gradient(
    x: torch.Tensor, y: torch.Tensor, op: LinearOperator, regulariser: Regulariser, lam: float, mu: float
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        residual = op(x) - y
        data = 0.5 * residual.flatten(1).pow(2).sum(dim=1)
        value = data + lam * regulariser(x) + 0.5 * mu * x.flatten(1).pow(2).sum(dim=1)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad.detach()


def descend(
    y: torch.Tensor,
    op: LinearOperator,
    regulariser: Regulariser,
    lam: float,
    x0: torch.Tensor,
    *,
    n_iter: int = 100,
    step: float = 1.0,
    strong_convexity: float = 0.0,
    gap_tol: float = 0.0,
    max_halvings: int = 30,
) -> tuple[torch.Tensor, Descent]:
    """Minimise ``½‖Ax − y‖² + λ R(x) + μ/2 ‖x‖²`` over ``x`` ``(N, 1, H, W)`` from ``x0`` by monotone gradient
    descent with backtracking (see the module docstring); ``op`` and ``y`` as given (normalise them first).

    Returns the minimiser and a :class:`Descent` record.
    """
    lam = check_weight(lam)
    if n_iter < 0 or not step > 0:
        raise ParameterError(f"descent needs n_iter ≥ 0 and step > 0, got {n_iter} and {step}")
    x = x0.detach()
    t = torch.full((x.shape[0],), float(step), dtype=x.dtype, device=x.device)
    value, grad = _objective_and_gradient(x, y, op, regulariser, lam, strong_convexity)
    record = Descent(objective=[value])
    active = torch.ones_like(t, dtype=torch.bool)
    for _ in range(n_iter):
        if strong_convexity > 0 and gap_tol > 0:
            active &= grad.flatten(1).pow(2).sum(dim=1) / (2 * strong_convexity) > gap_tol
        if not active.any():
            break
        x, value, grad, t, active = _backtracking_step(x, value, grad, t, active, y, op, regulariser, lam,
                                                       strong_convexity, max_halvings)  # fmt: skip
        record.objective.append(value)
        record.iterations += 1
    record.steps = t
    if strong_convexity > 0:
        record.gap_bound = grad.flatten(1).pow(2).sum(dim=1) / (2 * strong_convexity)
    return x, record


def _backtracking_step(x, value, grad, t, active, y, op, regulariser, lam, mu, max_halvings):
    """One descent step for the ``active`` samples, halving each one's step until its objective decreases."""
    pending = active.clone()
    new_x, new_value, new_grad = x.clone(), value.clone(), grad.clone()
    for _ in range(max_halvings + 1):
        shape = (-1,) + (1,) * (x.ndim - 1)
        trial = x - t.reshape(shape) * grad
        trial_value, trial_grad = _objective_and_gradient(trial, y, op, regulariser, lam, mu)
        accepted = pending & (trial_value <= value)
        new_x[accepted], new_value[accepted], new_grad[accepted] = (
            trial[accepted],
            trial_value[accepted],
            trial_grad[accepted],
        )
        pending &= ~accepted
        if not pending.any():
            break
        t = torch.where(pending, t / 2, t)
    return new_x, new_value, new_grad, t, active & ~pending
