"""Choosing a regularisation parameter: against ground truth (grid search), or from the data alone
(Morozov's discrepancy principle, the L-curve).

Each helper takes a solver ``solve(y, op, **{name: value})`` and a grid of values for the parameter ``name``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.solvers.stopping import check_parameter, sample_norms

__all__ = ["ParameterChoice", "discrepancy_choice", "grid_search", "l_curve"]

Solver = Callable[..., torch.Tensor]


class ParameterChoice(NamedTuple):
    """The chosen value, and per grid value the score the rule used (PSNR, residual or curvature)."""

    value: float
    values: list[float]
    scores: list[float]


def _grid(values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ParameterError("the parameter grid is empty")
    return values


def grid_search(
    solve: Solver,
    y: torch.Tensor,
    op: LinearOperator,
    x_true: torch.Tensor,
    name: str,
    values: Sequence[float],
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = metrics.psnr,
    **fixed,
) -> ParameterChoice:
    """The grid value maximising the mean of ``metric(x̂, x_true)`` over a validation set (y, x_true)."""
    values = _grid(values)
    scores = [float(metric(solve(y, op, **{name: v}, **fixed), x_true).mean()) for v in values]
    best = max(range(len(values)), key=scores.__getitem__)
    return ParameterChoice(values[best], values, scores)


def discrepancy_choice(
    solve: Solver,
    y: torch.Tensor,
    op: LinearOperator,
    delta: float,
    name: str,
    values: Sequence[float],
    tau: float = 1.02,
    **fixed,
) -> ParameterChoice:
    """Morozov: the largest value whose residual ‖A x̂ − y‖ (mean over the batch) is at most τ·δ.

    Suits parameters that regularise more as they grow (α, λ). Raises :class:`ParameterError` when no
    grid value fits the data that well.
    """
    delta = check_parameter("delta", delta)
    values = _grid(values)
    residuals = [
        float(sample_norms(op(solve(y, op, **{name: v}, **fixed)) - y, len(op.range_shape)).mean()) for v in values
    ]
    fitting = [v for v, r in zip(values, residuals, strict=True) if r <= tau * delta]
    if not fitting:
        raise ParameterError(
            f"no {name} in the grid reaches the discrepancy τδ = {tau * delta:.4g} (smallest residual "
            f"{min(residuals):.4g}); extend the grid towards weaker regularisation"
        )
    return ParameterChoice(max(fitting), values, residuals)


def l_curve(
    solve: Solver,
    y: torch.Tensor,
    op: LinearOperator,
    name: str,
    values: Sequence[float],
    **fixed,
) -> ParameterChoice:
    """The corner of the L-curve (log ‖A x̂ − y‖, log ‖x̂‖): the grid value of largest curvature.

    Needs at least 3 grid values, ordered monotonically; the curvature uses finite differences in the
    index of the grid (Hansen's discrete L-curve criterion).
    """
    values = _grid(values)
    if len(values) < 3:
        raise ParameterError("the L-curve needs at least 3 grid values")
    rho, eta = [], []
    for v in values:
        x = solve(y, op, **{name: v}, **fixed)
        rho.append(float(torch.log(sample_norms(op(x) - y, len(op.range_shape)).mean())))
        eta.append(float(torch.log(sample_norms(x, len(op.domain_shape)).mean())))
    r, e = torch.tensor(rho, dtype=torch.float64), torch.tensor(eta, dtype=torch.float64)
    dr, de = torch.gradient(r)[0], torch.gradient(e)[0]
    ddr, dde = torch.gradient(dr)[0], torch.gradient(de)[0]
    curvature = (dr * dde - ddr * de) / (dr**2 + de**2).clamp_min(1e-300) ** 1.5
    score = curvature.abs()
    score[0] = score[-1] = -1.0  # one-sided differences at the ends are unreliable
    best = int(torch.argmax(score))
    return ParameterChoice(values[best], values, curvature.tolist())
