"""Stopping rules shared by the iterative solvers, their result type, and input validation.

An iteration stops at the first of: ``n_iter`` iterations; relative change
‖x_k − x_{k−1}‖ ≤ ``rtol``·‖x_k‖; Morozov's discrepancy principle ‖A x_k − y‖ ≤ τ·δ (noise level
``delta`` = ‖e‖, τ = ``tau``, default 1.02). On a batch the change and the residual are measured per
sample and the iteration stops when every sample meets the rule (samples are not frozen one by one, so
a batch gives the same iterates as its samples run alone up to the common stopping index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from learnrecon._checks import check_complexity, check_finite, check_tensor, check_trailing_shape
from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator

__all__ = ["SolverResult", "Stopping", "check_data", "check_parameter", "sample_norms"]

#: Called as ``callback(k, x_k)`` after iteration ``k`` (1-based); its return values are collected.
Callback = Callable[[int, torch.Tensor], object]


class SolverResult(NamedTuple):
    """What an iterative solver returns with ``return_info=True``.

    Attributes:
        x: the final iterate (*batch, *domain_shape).
        n_iter: iterations performed.
        residuals: per iteration, the residual norms ‖A x_k − y‖ per sample, shape (n_iter, n_samples).
        reason: why it stopped: "n_iter", "rtol" or "discrepancy".
        history: the callback's return values, one per iteration (empty without a callback).
    """

    x: torch.Tensor
    n_iter: int
    residuals: torch.Tensor
    reason: str
    history: list


def check_parameter(name: str, value: float, *, positive: bool = False, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float after checking it is finite and ≥ 0 (> 0 if ``positive``)."""
    if value is None and allow_none:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{name} must be a number, got {value!r}") from err
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ParameterError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_data(y: object, op: LinearOperator, name: str = "measurements") -> torch.Tensor:
    """Validate measurements for ``op``: a finite tensor of shape (*batch, *op.range_shape)."""
    check_tensor(y, name)
    check_complexity(y, op.range_complex, name)
    check_trailing_shape(y, op.range_shape, name, what=op.name)
    return check_finite(y, name)


def sample_norms(t: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Euclidean norm over the last ``n_trailing`` dimensions, flattened over the batch: (n_samples,)."""
    return t.abs().reshape(-1, math.prod(t.shape[t.ndim - n_trailing :])).norm(dim=1)


def _check_delta(delta: float | torch.Tensor | None) -> float | torch.Tensor | None:
    if isinstance(delta, torch.Tensor):
        if delta.ndim > 1 or not bool(torch.isfinite(delta).all()) or bool((delta < 0).any()):
            raise ParameterError("delta must be a finite non-negative number or a 1-D tensor of them (one per sample)")
        return delta.detach().to("cpu", torch.float64)
    return check_parameter("delta", delta, allow_none=True)


class Stopping:
    """The stopping rules of one solver run; call :meth:`update` once per iteration.

    Args:
        n_iter: maximal number of iterations (≥ 0).
        rtol: stop when every sample's relative change is at most ``rtol`` (None: off).
        delta: noise level ‖e‖ for the discrepancy principle: one number, or a tensor with one per
            sample (None: off).
        tau: the discrepancy principle's safety factor τ ≥ 1.
        callback: ``callback(k, x_k)`` after each iteration; return values go to ``history``.
        domain_ndim: number of trailing dimensions of one iterate (``len(op.domain_shape)``).
    """

    def __init__(
        self,
        n_iter: int,
        rtol: float | None = None,
        delta: float | None = None,
        tau: float = 1.02,
        callback: Callback | None = None,
        domain_ndim: int = 2,
    ) -> None:
        if int(n_iter) != n_iter or n_iter < 0:
            raise ParameterError(f"n_iter must be a non-negative integer, got {n_iter}")
        self.n_iter = int(n_iter)
        self.rtol = check_parameter("rtol", rtol, allow_none=True)
        self.delta = _check_delta(delta)
        self.tau = check_parameter("tau", tau, positive=True)
        if self.delta is not None and self.tau < 1:
            raise ParameterError(f"tau must be >= 1 for the discrepancy principle, got {tau}")
        self.callback = callback
        self.domain_ndim = domain_ndim
        self.residuals: list[torch.Tensor] = []
        self.history: list = []
        self.reason = "n_iter"

    def update(self, k: int, x: torch.Tensor, x_old: torch.Tensor | None, residual: torch.Tensor | None) -> bool:
        """Record iteration ``k`` (1-based); return True when the iteration should stop.

        ``residual`` is the per-sample residual norm ‖A x_k − y‖ (needed for the discrepancy rule and
        recorded when given); ``x_old`` the previous iterate (needed for ``rtol``).
        """
        if residual is not None:
            self.residuals.append(residual.detach().to("cpu", torch.float64))
        if self.callback is not None:
            self.history.append(self.callback(k, x))
        if (
            self.delta is not None
            and residual is not None
            and bool((self.residuals[-1] <= self.tau * self.delta).all())
        ):
            self.reason = "discrepancy"
            return True
        if self.rtol is not None and x_old is not None:
            change = sample_norms(x - x_old, self.domain_ndim)
            if bool((change <= self.rtol * sample_norms(x, self.domain_ndim)).all()):
                self.reason = "rtol"
                return True
        return k >= self.n_iter

    def result(self, x: torch.Tensor, n_iter: int) -> SolverResult:
        """The :class:`SolverResult` of a finished run."""
        residuals = torch.stack(self.residuals) if self.residuals else torch.empty(0, 0, dtype=torch.float64)
        return SolverResult(x, n_iter, residuals, self.reason, self.history)
