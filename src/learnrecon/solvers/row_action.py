"""Row-action methods over angle subsets of a ray transform: block Kaczmarz, SART and stochastic gradient.

The angles are split into ``n_subsets`` interleaved blocks (block b holds angles b, b + n, b + 2n, …),
visited in order or in a random order per sweep (``order="random"``, from ``seed``).

* Kaczmarz (block, Landweber-type): x ← x + ω A_bᵀ(y_b − A_b x)/‖A_b‖², ω ∈ (0, 2).
* SART (Andersen & Kak 1984): x ← x + ω V_b⁻¹ A_bᵀ W_b⁻¹ (y_b − A_b x), W_b = diag(A_b 1), V_b = diag(A_bᵀ 1).
* SGD: x ← x − η_k · n_subsets · A_bᵀ(A_b x − y_b) with η_k = η₀/(1 + k/decay), b drawn at random:
  an unbiased estimate of the gradient of ½‖A x − y‖².
One iteration is one sweep over all blocks.
"""

from __future__ import annotations

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.tomography import RayTransform2D
from learnrecon.solvers.linear import _finish, _start
from learnrecon.solvers.stopping import Callback, SolverResult, Stopping, check_data, check_parameter, sample_norms

__all__ = ["angle_blocks", "kaczmarz", "sart", "sgd"]


def angle_blocks(op: RayTransform2D, n_subsets: int) -> list[torch.Tensor]:
    """Interleaved angle index blocks: block b = (b, b + n, b + 2n, …)."""
    if not isinstance(op, RayTransform2D):
        raise ParameterError(f"row-action methods need a ray transform with angle subsets, got {op.name}")
    n_angles = op.range_shape[0]
    if int(n_subsets) != n_subsets or not 1 <= n_subsets <= n_angles:
        raise ParameterError(f"n_subsets must be an integer in [1, {n_angles}] (the number of angles), got {n_subsets}")
    return [torch.arange(b, n_angles, n_subsets) for b in range(int(n_subsets))]


def _relaxation(value: float) -> float:
    """Check a relaxation parameter ω ∈ (0, 2), the range in which Kaczmarz and SART converge."""
    omega = check_parameter("relaxation", value, positive=True)
    if omega >= 2:
        raise ParameterError(f"relaxation {omega} does not converge: it must be in (0, 2)")
    return omega


def _sweep_order(n_blocks: int, order: str, generator: torch.Generator) -> list[int]:
    if order == "ordered":
        return list(range(n_blocks))
    if order == "random":
        return torch.randperm(n_blocks, generator=generator).tolist()
    raise ParameterError(f"order must be 'ordered' or 'random', got {order!r}")


def _row_action(y, op, n_iter, n_subsets, order, seed, x0, rtol, delta, tau, callback, return_info, update):
    y = check_data(y, op)
    blocks = angle_blocks(op, n_subsets)
    generator = torch.Generator().manual_seed(int(seed))
    x = _start(y, op, x0)
    stop = Stopping(n_iter, rtol, delta, tau, callback, 2)
    k = 0
    with torch.no_grad():
        while k < stop.n_iter:
            k += 1
            x_old = x
            for b in _sweep_order(len(blocks), order, generator):
                x = update(x, op[blocks[b]], y[..., blocks[b], :], k)
            residual = sample_norms(op(x) - y, 2)
            if stop.update(k, x, x_old, residual):
                break
    return _finish(stop, x, k, return_info)


def kaczmarz(
    y: torch.Tensor,
    op: RayTransform2D,
    n_iter: int = 10,
    n_subsets: int = 10,
    relaxation: float = 1.0,
    order: str = "ordered",
    seed: int = 0,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Block Kaczmarz over angle subsets, relaxation ω ∈ (0, 2); ``n_iter`` sweeps."""
    omega = _relaxation(relaxation)

    def update(x, sub, y_b, k):
        return x + (omega / sub.norm(torch.float64, y.device) ** 2) * sub.H(y_b - sub(x))

    return _row_action(y, op, n_iter, n_subsets, order, seed, x0, rtol, delta, tau, callback, return_info, update)


def sart(
    y: torch.Tensor,
    op: RayTransform2D,
    n_iter: int = 10,
    n_subsets: int = 10,
    relaxation: float = 1.0,
    order: str = "ordered",
    seed: int = 0,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """SART / OS-SART over angle subsets, relaxation ω ∈ (0, 2); ``n_iter`` sweeps."""
    omega = _relaxation(relaxation)

    def update(x, sub, y_b, k):
        def build():
            ones_image = torch.ones(sub.domain_shape, dtype=y.dtype, device=y.device)
            ones_data = torch.ones(sub.range_shape, dtype=y.dtype, device=y.device)
            row_sums, col_sums = sub(ones_image), sub.H(ones_data)
            return torch.where(row_sums > 0, 1 / row_sums, 0 * row_sums), torch.where(
                col_sums > 0, 1 / col_sums, 0 * col_sums
            )

        inv_rows, inv_cols = sub._cached(("sart-weights", y.dtype, y.device), build)
        return x + omega * inv_cols * sub.H(inv_rows * (y_b - sub(x)))

    return _row_action(y, op, n_iter, n_subsets, order, seed, x0, rtol, delta, tau, callback, return_info, update)


def sgd(
    y: torch.Tensor,
    op: RayTransform2D,
    n_iter: int = 20,
    n_subsets: int = 10,
    step: float | None = None,
    decay: float = 10.0,
    seed: int = 0,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """Stochastic gradient descent on ½‖A x − y‖² over random angle subsets; ``n_iter`` epochs.

    Step η_k = η₀/(1 + k/decay) in epoch k, η₀ = ``step`` (default 1/(n_subsets·max_b ‖A_b‖²),
    the largest safe step for one block's scaled gradient).
    """
    blocks = angle_blocks(op, n_subsets)
    decay = check_parameter("decay", decay, positive=True)
    y_dev = y.device if isinstance(y, torch.Tensor) else "cpu"
    lipschitz = len(blocks) * max(op[b].norm(torch.float64, y_dev) ** 2 for b in blocks)
    if step is None:
        eta0 = 1.0 / lipschitz
    else:
        eta0 = check_parameter("step", step, positive=True)
        if eta0 >= 2.0 / lipschitz:
            raise ParameterError(
                f"step {eta0:.4g} does not converge: it must be below 2/(n_subsets·max‖A_b‖²) = {2 / lipschitz:.4g}"
            )

    def update(x, sub, y_b, k):
        eta = eta0 / (1 + (k - 1) / decay)
        return x - eta * len(blocks) * sub.H(sub(x) - y_b)

    return _row_action(y, op, n_iter, n_subsets, "random", seed, x0, rtol, delta, tau, callback, return_info, update)
