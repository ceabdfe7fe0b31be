"""Elementary operators: the identity (denoising) and an explicit matrix (small test problems)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnrecon._checks import check_tensor
from learnrecon.errors import ShapeError
from learnrecon.operators.base import LinearOperator

__all__ = ["Identity", "MatrixOperator"]


class Identity(LinearOperator):
    """I x = x on tensors of trailing shape ``shape`` (the denoising forward model)."""

    def __init__(self, shape: Sequence[int], *, complex: bool = False) -> None:  # noqa: A002
        super().__init__(shape, shape, domain_complex=complex, range_complex=complex)

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {"type": "Identity", "shape": list(self.domain_shape), "complex": self.domain_complex}

    def _forward(self, x):
        return x.clone()

    def _adjoint(self, y):
        return y.clone()

    def _exact_norm(self) -> float:
        return 1.0


class MatrixOperator(LinearOperator):
    """x ↦ M x for an explicit matrix ``M`` of shape ``(m, n)``, acting on vectors ``(*batch, n)``.

    The matrix is moved to the dtype and device of each input (cached). Complex matrices give a
    complex operator; the adjoint is the conjugate transpose ``Mᴴ``.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        matrix = check_tensor(matrix, "matrix")
        if matrix.ndim != 2:
            raise ShapeError(f"matrix has shape {tuple(matrix.shape)} but MatrixOperator needs a 2-D (m, n) matrix")
        is_complex = matrix.is_complex()
        super().__init__((matrix.shape[1],), (matrix.shape[0],), domain_complex=is_complex, range_complex=is_complex)
        self.matrix = matrix

    def _matrix_like(self, x: torch.Tensor) -> torch.Tensor:
        return self._cached(("matrix", x.dtype, x.device), lambda: self.matrix.to(dtype=x.dtype, device=x.device))

    def _forward(self, x):
        return x @ self._matrix_like(x).transpose(0, 1)

    def _adjoint(self, y):
        return y @ self._matrix_like(y).conj()
