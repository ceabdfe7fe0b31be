"""Parameter choice: grid search against truth, the discrepancy principle and the L-curve."""

import math

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.metrics import psnr
from learnrecon.operators import Identity, MatrixOperator, ParallelBeam2D
from learnrecon.operators.wavelet import Wavelet2D
from learnrecon.solvers import discrepancy_choice, grid_search, l_curve, tikhonov_svd

ALPHAS = [10.0**k for k in range(-4, 4)]


@pytest.fixture(scope="module")
def problem():
    op = ParallelBeam2D(16, 12)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    noise = 1.0 * torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    return op, x, op(x) + noise, noise


def test_grid_search_picks_the_best_psnr(problem):
    op, x, y, _ = problem
    choice = grid_search(tikhonov_svd, y, op, x, "alpha", ALPHAS)
    manual = [psnr(tikhonov_svd(y, op, alpha=a), x).mean().item() for a in ALPHAS]
    assert choice.scores == pytest.approx(manual)
    assert choice.value == ALPHAS[max(range(len(ALPHAS)), key=manual.__getitem__)]
    assert ALPHAS[0] < choice.value < ALPHAS[-1]


def test_discrepancy_choice_is_largest_fitting_alpha(problem):
    op, _, y, noise = problem
    delta = noise.reshape(2, -1).norm(dim=1).mean().item()
    choice = discrepancy_choice(tikhonov_svd, y, op, delta, "alpha", ALPHAS)
    residuals = dict(zip(choice.values, choice.scores, strict=True))
    assert residuals[choice.value] <= 1.02 * delta
    larger = [a for a in ALPHAS if a > choice.value]
    assert all(residuals[a] > 1.02 * delta for a in larger)
    with pytest.raises(ParameterError, match="extend the grid"):
        discrepancy_choice(tikhonov_svd, y, op, 1e-9, "alpha", ALPHAS[-2:])


def test_l_curve_finds_an_interior_corner(problem):
    op, x, y, _ = problem
    choice = l_curve(tikhonov_svd, y, op, "alpha", [10.0**k for k in torch.arange(-4, 4.01, 0.5).tolist()])
    assert 1e-4 < choice.value < 1e4
    # The corner regularises sensibly: far better than the nearly unregularised end of the grid.
    assert psnr(tikhonov_svd(y, op, alpha=choice.value), x).mean() > psnr(tikhonov_svd(y, op, alpha=1e-4), x).mean()
    with pytest.raises(ParameterError, match="at least 3"):
        l_curve(tikhonov_svd, y, op, "alpha", [1.0, 2.0])


def test_wavelet_is_orthonormal_and_checks_sizes():
    W = Wavelet2D(32, "db4", levels=2)
    dense = W.to_dense()
    torch.testing.assert_close(dense.T @ dense, torch.eye(1024, dtype=torch.float64))
    assert W.approximation_mask().sum() == 64
    with pytest.raises(ParameterError, match="divisible"):
        Wavelet2D(30, "db2", levels=2)
    with pytest.raises(ParameterError, match="not orthogonal"):
        Wavelet2D(32, "bior2.2")
    with pytest.raises(ParameterError, match="unknown wavelet"):
        Wavelet2D(32, "nope")


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


def test_discrepancy_choice_uses_tau_times_delta():
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)

    def solve(y, op, alpha):  # residual ‖x − y‖ = alpha exactly
        return y + alpha * u

    y = torch.zeros(1, 2, dtype=torch.float64)
    choice = discrepancy_choice(solve, y, Identity((2,)), 1.0, "alpha", [0.5, 1.01, 2.0], tau=1.02)
    assert choice.value == 1.01


def test_l_curve_is_blind_to_the_units_of_the_image():
    op = MatrixOperator(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # residual |x_0| when y = 0
    y = torch.zeros(1, 1, dtype=torch.float64)
    values = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]

    def solve(scale):
        return lambda y, op, alpha: scale * torch.tensor([[alpha, 1 / alpha + alpha**2]], dtype=torch.float64)

    one, ten = l_curve(solve(1.0), y, op, "alpha", values), l_curve(solve(10.0), y, op, "alpha", values)
    assert ten.scores == pytest.approx(one.scores, rel=1e-9, abs=1e-12) and ten.value == one.value


def test_l_curve_never_picks_an_end_of_the_grid():
    # log residual and log norm per grid value: the one-sided curvature at the first point is the largest.
    r = [0.0, 0.4, 0.99, 1.34, 1.46]
    e = [10.0, 9.53, 7.62, 6.13, 4.59]
    op = MatrixOperator(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # residual |x_0| when y = 0
    y = torch.zeros(1, 1, dtype=torch.float64)

    def solve(y, op, alpha):
        i = int(alpha) - 1
        return torch.tensor([[math.exp(r[i]), math.sqrt(math.exp(2 * e[i]) - math.exp(2 * r[i]))]], dtype=torch.float64)

    choice = l_curve(solve, y, op, "alpha", [1.0, 2.0, 3.0, 4.0, 5.0])
    assert abs(choice.scores[0]) > max(abs(s) for s in choice.scores[1:])  # the end is the sharpest point...
    assert choice.value == 2.0  # ...but ends are unreliable; the corner is the sharpest interior point
