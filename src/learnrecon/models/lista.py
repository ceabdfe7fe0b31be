"""LISTA (Gregor & LeCun 2010): unrolled ISTA with learned matrices and thresholds.

ISTA for ``min ½‖A x − y‖² + λ‖x‖₁`` with step ``1/L`` (L = ‖A‖²) is
``x_{k+1} = S_{λ/L}(x_k − (1/L) Aᵀ(A x_k − y)) = S_{λ/L}(W_e y + S x_k)`` with ``W_e = Aᵀ/L`` and
``S = I − AᵀA/L``; ``S_θ(z) = sign(z) max(|z| − θ, 0)``. LISTA learns ``W_e``, ``S`` and ``θ`` per layer
(or shared), starting from these values. The explicit matrices suit small problems (sparse coding,
small linear systems: ``n`` unknowns, ``m`` measurements). ``θ`` is one scalar per layer (Gregor & LeCun
learn one per component), and neither ``θ`` nor the operator variant's step ``γ`` is kept positive: training
that drives ``θ`` below zero makes ``S_θ`` widen instead of shrink.

The operator-aware variant (``matrices=False``) keeps the operator and learns a step and a threshold
per layer, ``x_{k+1} = S_θk(x_k − γ_k A*(A x_k − y))`` (as in LISTA-CP/ALISTA); it works at any size
and on any operator, real or complex. It runs on the normalised ``A/‖A‖``, ``y/‖A‖`` and starts at
``γ = 1``, ``θ = λ``: ISTA for ``½‖A x − y‖²/‖A‖² + λ‖x‖₁``, whose minimiser is that of
``½‖A x − y‖² + λ‖A‖²‖x‖₁``.
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.base import State, Unrolled
from learnrecon.operators.base import LinearOperator

__all__ = ["LISTA", "soft_threshold"]


def soft_threshold(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``S_θ(z) = sign(z)·max(|z| − θ, 0)`` (elementwise; ``sign(z) = z/|z|`` for complex ``z``)."""
    return torch.sgn(z) * torch.relu(z.abs() - theta)


class MatrixStep(nn.Module):
    """``x ← S_θ(W_e y + S x)`` on flattened vectors: state ``(x (N, 1, *domain),)``."""

    def __init__(self, w_e: torch.Tensor, s: torch.Tensor, theta: float) -> None:
        super().__init__()
        self.w_e = nn.Parameter(w_e.clone())
        self.s = nn.Parameter(s.clone())
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=w_e.dtype))

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (x,) = state
        z = y.flatten(1).to(self.w_e.dtype) @ self.w_e.T + x.flatten(1) @ self.s.T
        return (soft_threshold(z, self.theta).reshape(x.shape),)


class OperatorStep(nn.Module):
    """``x ← S_θ(x − γ A*(A x − y))``: state ``(x,)``."""

    def __init__(self, step: float, theta: float) -> None:
        super().__init__()
        self.step = nn.Parameter(torch.tensor(float(step)))
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (x,) = state
        return (soft_threshold(x - self.step * op.H(op(x.to(y.dtype)) - y).to(x.dtype), self.theta),)


class LISTA(Unrolled):
    """Learned ISTA with ``n_iter`` layers.

    Args:
        n_iter: layers.
        lam: the ℓ1 weight λ of the ISTA the layers start from (with ``matrices=False``, of the
            normalised problem: see the module docstring).
        operator: with ``matrices=True``, the operator whose dense matrix initialises ``W_e`` and ``S``
            (it fixes the problem size: ``n = prod(domain)``, ``m = prod(range)``); the model then only
            accepts operators of that shape.
        matrices: learn ``W_e`` and ``S`` (True) or only a step and threshold per layer (False).
        share_weights: one layer's parameters for all layers (LISTA's original tied form).
    """

    convolved_spaces = ()

    def __init__(
        self,
        n_iter: int = 16,
        lam: float = 0.01,
        operator: LinearOperator | None = None,
        matrices: bool = True,
        share_weights: bool = False,
    ) -> None:
        if lam < 0:
            raise ParameterError(f"lam must be non-negative, got {lam}")
        n_steps = 1 if share_weights else n_iter
        if matrices:
            if operator is None:
                raise ParameterError("LISTA with matrices=True needs the operator that fixes its size")
            if operator.domain_complex or operator.range_complex:
                raise ParameterError(
                    f"LISTA with matrices=True learns real matrices; {operator.name} is complex: use matrices=False"
                )
            a = operator.to_dense(dtype=torch.float32).real
            lip = float(torch.linalg.matrix_norm(a, ord=2)) ** 2
            w_e, s = a.T / lip, torch.eye(a.shape[1], dtype=a.dtype) - a.T @ a / lip
            steps: list[nn.Module] = [MatrixStep(w_e, s, lam / lip) for _ in range(n_steps)]
            shape = (tuple(operator.domain_shape), tuple(operator.range_shape))
        else:
            steps = [OperatorStep(1.0, lam) for _ in range(n_steps)]
            shape = None
        super().__init__(steps, n_iter, "zero", normalise=not matrices)
        self.shape = shape

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        if self.shape is not None and (tuple(op.domain_shape), tuple(op.range_shape)) != self.shape:
            raise ShapeError(
                f"this LISTA was built for an operator {self.shape[0]} -> {self.shape[1]}, "
                f"got {tuple(op.domain_shape)} -> {tuple(op.range_shape)}"
            )
        return super().forward(y, op)
