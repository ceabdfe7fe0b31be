"""Classical reconstruction methods, each a plain function ``solver(y, op, **params) -> x``.

Fixed-point solvers for ``z = f(z)`` (:mod:`.fixed_point`: Picard, Anderson, Broyden) are for equilibrium
models. Iterative solvers also return a :class:`SolverResult` (iterate, iterations, residual history, reason
for stopping) with ``return_info=True`` and share the stopping rules of :mod:`.stopping`.
"""

from learnrecon.operators.fbp import FILTERS, fbp
from learnrecon.solvers.fixed_point import (
    FIXED_POINT_SOLVERS,
    FixedPointResult,
    anderson,
    broyden,
    picard,
    register_solver,
    solve_fixed_point,
)
from learnrecon.solvers.linear import cgls, landweber, projected_gradient, tikhonov
from learnrecon.solvers.parameter_choice import ParameterChoice, discrepancy_choice, grid_search, l_curve
from learnrecon.solvers.poisson import gauss_newton_tv, poisson_tv, prelog_fbp
from learnrecon.solvers.registry import METHODS, reconstruct_batch
from learnrecon.solvers.row_action import kaczmarz, sart, sgd
from learnrecon.solvers.sparsity import fista, ista, soft_threshold
from learnrecon.solvers.spectral import tikhonov_svd, tsvd
from learnrecon.solvers.stopping import SolverResult, Stopping
from learnrecon.solvers.tv import tv_pdhg

__all__ = [
    "FIXED_POINT_SOLVERS",
    "FixedPointResult",
    "anderson",
    "broyden",
    "picard",
    "register_solver",
    "solve_fixed_point",
    "FILTERS",
    "METHODS",
    "ParameterChoice",
    "SolverResult",
    "Stopping",
    "cgls",
    "discrepancy_choice",
    "fbp",
    "fista",
    "gauss_newton_tv",
    "grid_search",
    "ista",
    "kaczmarz",
    "l_curve",
    "landweber",
    "poisson_tv",
    "prelog_fbp",
    "projected_gradient",
    "reconstruct_batch",
    "sart",
    "sgd",
    "soft_threshold",
    "tikhonov",
    "tikhonov_svd",
    "tsvd",
    "tv_pdhg",
]
