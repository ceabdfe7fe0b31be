"""The finite-difference image gradient ∇ : (H, W) → (2, H, W), the operator of total variation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from learnrecon.operators.base import LinearOperator

__all__ = ["FiniteDifference2D"]


class FiniteDifference2D(LinearOperator):
    """Forward differences with Neumann boundary, in pixel units:

    (∇x)[0, i, j] = x[i+1, j] − x[i, j] (zero on the last row), (∇x)[1, i, j] = x[i, j+1] − x[i, j]
    (zero on the last column). The adjoint is minus the matching backward-difference divergence, and
    ‖∇‖² < 8, the bound :meth:`norm_bound` returns.
    """

    def __init__(self, image_size: int | Sequence[int]) -> None:
        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        super().__init__(shape, (2, *shape))

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {"type": "FiniteDifference2D", "image_size": list(self.domain_shape)}

    @staticmethod
    def norm_bound() -> float:
        """An upper bound of ‖∇‖ (√8), good enough for step sizes."""
        return math.sqrt(8.0)

    def _forward(self, x):
        g = x.new_zeros(*x.shape[:-2], 2, *x.shape[-2:])
        g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        return g

    def _adjoint(self, g):
        gv, gh = g[..., 0, :, :], g[..., 1, :, :]
        x = g.new_zeros(*g.shape[:-3], *g.shape[-2:])
        x[..., :-1, :] -= gv[..., :-1, :]
        x[..., 1:, :] += gv[..., :-1, :]
        x[..., :, :-1] -= gh[..., :, :-1]
        x[..., :, 1:] += gh[..., :, :-1]
        return x
