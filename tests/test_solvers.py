"""Classical solvers, each checked against an independently known answer.

Problems: an explicit well-conditioned matrix, an 8×8 parallel-beam ray transform with 40 angles
(full column rank, condition number ≈ 52) and a periodic Gaussian blur. Answers: torch.linalg.lstsq,
closed-form Tikhonov, the KKT conditions of the ℓ1 problem, and Chambolle's dual algorithm for TV.
"""

import math

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.operators import Identity, MatrixOperator, ParallelBeam2D
from learnrecon.operators.blur import Blur, gaussian_kernel
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.wavelet import Wavelet2D, default_levels
from learnrecon.solvers import (
    cgls,
    fista,
    ista,
    kaczmarz,
    landweber,
    projected_gradient,
    reconstruct_batch,
    sart,
    sgd,
    tikhonov,
    tikhonov_svd,
    tsvd,
    tv_pdhg,
)
from learnrecon.solvers.row_action import angle_blocks
from learnrecon.solvers.sparsity import soft_threshold

TOL = {torch.float64: 1e-6, torch.float32: 2e-3}


def matrix_problem():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 12, generator=g, dtype=torch.float64))
    return MatrixOperator(q * torch.linspace(1, 4, 12, dtype=torch.float64))  # singular values 1..4


PROBLEMS = {
    "matrix": matrix_problem,
    "ray": lambda: ParallelBeam2D(8, 40),
    "blur": lambda: Blur(gaussian_kernel(0.6, size=5), 8, boundary="periodic"),
}


def sample(op, dtype, seed=1, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, *op.domain_shape, generator=g, dtype=torch.float64)
    y = op(x) + noise * torch.randn(2, *op.range_shape, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def lstsq(op, y):
    dense = op.to_dense()
    flat = y.reshape(y.shape[0], -1).double().T
    return torch.linalg.lstsq(dense, flat).solution.T.reshape(y.shape[0], *op.domain_shape)


def close(a, b, dtype):
    return (a.double() - b.double()).abs().max().item() <= TOL[dtype] * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_cgls_reaches_lstsq(problem, dtype):
    op = PROBLEMS[problem]()
    _, y = sample(op, dtype)
    result = cgls(y, op, n_iter=200, return_info=True)
    assert close(result.x, lstsq(op, y), dtype)
    assert result.n_iter <= 200


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize(
    ("solver", "kwargs"), [(landweber, {}), (projected_gradient, {"lower": None})], ids=["landweber", "pgd-unbounded"]
)
def test_landweber_iterates_match_spectral_filter(solver, kwargs, problem, dtype):
    """x_k = V diag(φ_k(σ)/σ) Uᵀ y with φ_k(σ) = 1 − (1 − ωσ²)^k, ω = 1/‖A‖² (Landweber's filter factors)."""
    op = PROBLEMS[problem]()
    _, y = sample(op, dtype)
    k = 60
    u, sigma, vh = torch.linalg.svd(op.to_dense(), full_matrices=False)
    omega = 1 / op.norm() ** 2
    phi = 1 - (1 - omega * sigma**2) ** k
    expected = ((y.reshape(2, -1).double() @ u) * (phi / sigma)) @ vh
    assert close(solver(y, op, n_iter=k, **kwargs), expected.reshape(2, *op.domain_shape), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_tikhonov_closed_form(problem, dtype):
    op = PROBLEMS[problem]()
    _, y = sample(op, dtype)
    alpha = 0.3
    dense = op.to_dense()
    normal = dense.T @ dense + alpha * torch.eye(dense.shape[1], dtype=torch.float64)
    expected = torch.linalg.solve(normal, dense.T @ y.reshape(2, -1).double().T).T.reshape(2, *op.domain_shape)
    result = tikhonov(y, op, alpha, tol=1e-10, callback=lambda k, xk: k, return_info=True)
    assert close(result.x, expected, dtype)
    assert result.reason == "tol" and result.history == list(range(1, result.n_iter + 1))
    assert close(tikhonov_svd(y, op, alpha), expected, dtype)


def test_tikhonov_with_smoothness_penalty():
    op = ParallelBeam2D(8, 40)
    _, y = sample(op, torch.float64)
    L = FiniteDifference2D(8)
    A, D = op.to_dense(), L.to_dense()
    expected = torch.linalg.solve(A.T @ A + 0.5 * D.T @ D, A.T @ y.reshape(2, -1).T).T.reshape(2, 8, 8)
    assert close(tikhonov(y, op, 0.5, L=L, tol=1e-12), expected, torch.float64)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_tsvd_full_rank_is_lstsq_and_truncation_projects(problem):
    op = PROBLEMS[problem]()
    _, y = sample(op, torch.float64)
    n = op.to_dense().shape[1]
    assert close(tsvd(y, op, n), lstsq(op, y), torch.float64)
    u, s, vh = torch.linalg.svd(op.to_dense(), full_matrices=False)
    x3 = tsvd(y, op, 3).reshape(2, -1)
    coefficients = x3 @ vh.T  # coordinates in the right singular basis: only the first 3 are non-zero
    assert coefficients[:, 3:].abs().max() < 1e-10
    torch.testing.assert_close(coefficients[:, :3], (y.reshape(2, -1) @ u[:, :3]) / s[:3])


@pytest.mark.parametrize("order", ["ordered", "random"])
@pytest.mark.parametrize(
    ("solver", "kwargs"), [(kaczmarz, {}), (sart, {}), (sgd, {"decay": 1e9})], ids=["kaczmarz", "sart", "sgd"]
)
def test_row_action_methods_solve_consistent_systems(solver, kwargs, order):
    op = ParallelBeam2D(8, 40)
    x, _ = sample(op, torch.float64)
    if solver is not sgd:
        kwargs = {**kwargs, "order": order}
    result = solver(op(x), op, n_iter=1500, n_subsets=8, **kwargs, return_info=True)
    assert (result.x - x).abs().max() < 5e-3
    assert result.residuals[-1].max() < result.residuals[0].min()


def test_row_action_needs_a_ray_transform():
    with pytest.raises(ParameterError, match="ray transform"):
        sart(torch.zeros(4), MatrixOperator(torch.eye(4)))
    with pytest.raises(ParameterError, match="n_subsets"):
        kaczmarz(torch.zeros(4, 13), ParallelBeam2D(8, 4), n_subsets=5)


def test_soft_thresholding_closed_form_for_denoising():
    y = torch.randn(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.sign(y) * (y.abs() - 0.5).clamp_min(0)
    for solver in (ista, fista):
        torch.testing.assert_close(solver(y, Identity((8, 8)), 0.5, n_iter=3), expected)


@pytest.mark.parametrize("solver", [ista, fista])
@pytest.mark.parametrize("problem", ["matrix", "ray"])
def test_l1_solution_satisfies_kkt(solver, problem):
    op = PROBLEMS[problem]()
    _, y = sample(op, torch.float64)
    lam = 0.3 * op.H(y).abs().max().item()  # large enough that some coefficients are exactly zero
    x = solver(y, op, lam, n_iter=30000 if solver is ista else 5000)
    gradient = op.H(op(x) - y)
    nonzero = x.abs() > 1e-12
    violation = torch.where(nonzero, (gradient + lam * torch.sign(x)).abs(), (gradient.abs() - lam).clamp_min(0))
    assert violation.max() < 1e-6 * lam and nonzero.any() and (~nonzero).any()


def test_wavelet_l1_satisfies_kkt_in_coefficients():
    from learnrecon.operators.wavelet import Wavelet2D

    op = ParallelBeam2D(16, 30)
    W = Wavelet2D(16, "db2", levels=2)
    _, y = sample(op, torch.float64)
    lam = 0.5
    x = fista(y, op, lam, wavelet=W, n_iter=6000, threshold_approximation=True)
    c, gradient = W(x), W(op.H(op(x) - y))
    nonzero = c.abs() > 1e-12
    violation = torch.where(nonzero, (gradient + lam * torch.sign(c)).abs(), (gradient.abs() - lam).clamp_min(0))
    assert violation.max() < 1e-5


def chambolle_rof(y, lam, n_iter=20000):
    """Chambolle (2004) dual projection algorithm for min_x ½‖x − y‖² + λ TV(x): x = y − λ div p."""
    grad = FiniteDifference2D(y.shape[-2:])
    p = torch.zeros(*y.shape[:-2], 2, *y.shape[-2:], dtype=y.dtype)
    step = 1 / 8
    for _ in range(n_iter):
        g = grad(-grad.H(p) - y / lam)
        p = (p + step * g) / (1 + step * g.norm(dim=-3, keepdim=True))
    return y + lam * grad.H(p)


def test_tv_matches_chambolle_dual_algorithm():
    g = torch.Generator().manual_seed(3)
    y = torch.zeros(2, 16, 16, dtype=torch.float64)
    y[:, 4:12, 5:11] = 1.0
    y = y + 0.2 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    expected = chambolle_rof(y, 0.15)
    result = tv_pdhg(y, Identity((16, 16)), lam=0.15, n_iter=5000, nonneg=False)
    assert (result - expected).abs().max() < 1e-3


@pytest.mark.parametrize("isotropic", [True, False])
def test_tv_step_denoising_closed_form(isotropic):
    """An image varying along x only is a stack of 1-D ROF problems; for one step a → b at column s the
    plateaus move towards each other: a + λ/s and b − λ/(W − s) (while a jump remains)."""
    H, W, s, lam = 6, 20, 8, 0.6
    y = torch.zeros(1, H, W, dtype=torch.float64)
    y[..., s:] = 1.0
    expected = torch.full_like(y, lam / s)
    expected[..., s:] = 1.0 - lam / (W - s)
    x = tv_pdhg(y, Identity((H, W)), lam=lam, n_iter=5000, nonneg=False, isotropic=isotropic)
    assert (x - expected).abs().max() < 1e-4


def test_anisotropic_tv_differs_on_diagonal_edges():
    y = torch.triu(torch.ones(16, 16, dtype=torch.float64))[None]
    iso = tv_pdhg(y, Identity((16, 16)), lam=0.5, n_iter=2000, nonneg=False)
    aniso = tv_pdhg(y, Identity((16, 16)), lam=0.5, n_iter=2000, nonneg=False, isotropic=False)
    assert (iso - aniso).abs().max() > 0.01


def test_tv_non_negativity_and_zero_weight():
    op = ParallelBeam2D(8, 40)
    x, y = sample(op, torch.float64)
    assert tv_pdhg(y, op, lam=0.5, n_iter=200).min() >= 0
    assert close(tv_pdhg(op(x), op, lam=0.0, n_iter=20000, nonneg=False), x, torch.float64)


def test_projected_gradient_box_closed_form():
    y = torch.linspace(-2, 2, 64, dtype=torch.float64).reshape(1, 8, 8)
    x = projected_gradient(y, Identity((8, 8)), n_iter=50, lower=-0.5, upper=1.0)
    torch.testing.assert_close(x, y.clamp(-0.5, 1.0))


def test_discrepancy_principle_stops_at_the_first_fitting_iterate():
    op = ParallelBeam2D(16, 20)
    x, _ = sample(op, torch.float64, noise=0.0)
    noise = 0.5 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = op(x) + noise
    delta = noise.reshape(2, -1).norm(dim=1).max().item()
    result = landweber(y, op, n_iter=5000, delta=delta, return_info=True)
    # Independent Landweber loop: the first k with every residual <= τδ.
    omega, xk = 1 / op.norm() ** 2, torch.zeros_like(x)
    for k in range(1, 5001):  # noqa: B007 - k is the answer, read after the loop
        xk = xk + omega * op.H(y - op(xk))
        if bool(((op(xk) - y).reshape(2, -1).norm(dim=1) <= 1.02 * delta).all()):
            break
    assert result.reason == "discrepancy" and result.n_iter == k < 5000
    torch.testing.assert_close(result.x, xk)


def test_landweber_semi_convergence():
    op = ParallelBeam2D(16, 12)  # underdetermined and ill-conditioned: noise is fitted eventually
    x, _ = sample(op, torch.float64, noise=0.0)
    y = op(x) + 0.5 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    result = landweber(y, op, n_iter=3000, callback=lambda k, xk: (xk - x).norm().item(), return_info=True)
    errors = result.history
    best = min(range(len(errors)), key=errors.__getitem__)
    assert 0 < best < len(errors) - 1, "the error falls, then rises"
    assert errors[-1] > 1.1 * errors[best] and errors[best] < 0.9 * errors[0]


def test_rtol_and_callback():
    op = matrix_problem()
    _, y = sample(op, torch.float64)
    result = landweber(y, op, n_iter=10000, rtol=1e-8, callback=lambda k, xk: k, return_info=True)
    assert result.reason == "rtol" and result.n_iter < 10000 and result.history == list(range(1, result.n_iter + 1))
    assert result.residuals.shape == (result.n_iter, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda y, op: tikhonov(y, op, alpha=-1.0), "alpha must be a finite number >= 0"),
        (lambda y, op: tv_pdhg(y, op, lam=float("nan")), "lam must be a finite number"),
        (lambda y, op: landweber(y, op, step=1.0), r"must be below 2/‖A‖²"),
        (lambda y, op: landweber(y, op, n_iter=-3), "n_iter"),
        (lambda y, op: sart(y, op, relaxation=2.5), r"\(0, 2\)"),
        (lambda y, op: tsvd(y, op, rank=0), "rank"),
        (lambda y, op: landweber(y, op, delta=1.0, tau=0.5), "tau must be >= 1"),
        (lambda y, op: cgls(y[..., :-1], op), "expects"),
    ],
)
def test_bad_parameters(call, message):
    op = ParallelBeam2D(8, 10)
    y = op(torch.rand(8, 8, dtype=torch.float64))
    with pytest.raises(Exception, match=message) as info:
        call(y, op)
    assert info.type.__module__ == "learnrecon.errors"


def test_x0_on_another_device_refused():
    from learnrecon.errors import DeviceError

    op = ParallelBeam2D(8, 10)
    y = op(torch.rand(8, 8, dtype=torch.float64))
    with pytest.raises(DeviceError, match="different devices"):
        landweber(y, op, x0=torch.zeros(8, 8, device="meta"))
    with pytest.raises(ParameterError, match="x0 has shape"):
        landweber(y, op, x0=torch.zeros(9, 8))


def test_per_sample_noise_levels_for_the_discrepancy_principle():
    op = ParallelBeam2D(16, 20)
    x, _ = sample(op, torch.float64, noise=0.0)
    noise = torch.randn(op(x).shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    noise[1] *= 3  # the second sample is three times noisier
    y = op(x) + noise
    delta = noise.reshape(2, -1).norm(dim=1)
    both = landweber(y, op, n_iter=5000, delta=delta, return_info=True)
    assert both.reason == "discrepancy"
    assert bool((both.residuals[-1] <= 1.02 * delta).all())
    with pytest.raises(ParameterError, match="one per sample"):
        landweber(y, op, delta=torch.tensor([1.0, float("nan")]))


def test_nan_data_refused():
    op = ParallelBeam2D(8, 10)
    y = torch.full(op.range_shape, float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        cgls(y, op)


def test_tsvd_refuses_large_operators():
    with pytest.raises(ParameterError, match="to_dense"):
        tsvd(torch.zeros(1000, 1000), Identity((1000, 1000)), rank=3)


def test_registry_converts_and_checks_parameters():
    op = ParallelBeam2D(8, 40)
    _, y = sample(op, torch.float64)
    torch.testing.assert_close(reconstruct_batch("cgls", y, op, {"n_iter": "200"}), cgls(y, op, n_iter=200))
    with pytest.raises(ParameterError, match="unknown parameter.*lambda.*valid: lam"):
        reconstruct_batch("tv", y, op, {"lambda": "1"})
    with pytest.raises(ParameterError, match="must be of type float"):
        reconstruct_batch("tv", y, op, {"lam": "abc"})
    with pytest.raises(ParameterError, match="unknown method"):
        reconstruct_batch("magic", y, op, {})


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


def _complex_matrix(m=8, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(
        torch.randn(m, n, generator=g, dtype=torch.float64), torch.randn(m, n, generator=g, dtype=torch.float64)
    )


def test_cgls_and_spectral_solvers_on_a_complex_operator():
    M = _complex_matrix()
    op = MatrixOperator(M)
    y = _complex_matrix(2, 8, seed=1)
    expected = torch.linalg.lstsq(M, y.T).solution.T
    torch.testing.assert_close(cgls(y, op, n_iter=50), expected)
    torch.testing.assert_close(tsvd(y, op, 5), expected)
    alpha = 0.3
    closed = torch.linalg.solve(M.conj().T @ M + alpha * torch.eye(5, dtype=M.dtype), M.conj().T @ y.T).T
    torch.testing.assert_close(tikhonov_svd(y, op, alpha), closed)


def test_tikhonov_from_a_starting_image_reaches_the_closed_form():
    M = torch.randn(9, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randn(2, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = torch.randn(2, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    closed = torch.linalg.solve(M.T @ M + 0.3 * torch.eye(6, dtype=torch.float64), M.T @ y.T).T
    torch.testing.assert_close(tikhonov(y, MatrixOperator(M), 0.3, x0=x0, tol=1e-12), closed)


def test_cgls_reports_convergence():
    y = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = cgls(y, Identity((4, 4)), n_iter=20, return_info=True)
    assert result.reason == "converged" and result.n_iter == 1
    torch.testing.assert_close(result.x, y)


@pytest.mark.parametrize("n_iter", [7, 8])
def test_projected_gradient_iterates_stay_in_the_box(n_iter):
    y = torch.linspace(-2, 2, 64, dtype=torch.float64).reshape(1, 8, 8)
    x = projected_gradient(y, Identity((8, 8)), n_iter=n_iter, lower=-0.5, upper=1.0)
    torch.testing.assert_close(x, y.clamp(-0.5, 1.0))


def test_angle_blocks_partition_the_angles():
    op = ParallelBeam2D(8, 10)
    for n in (1, 3, 4, 10):
        blocks = angle_blocks(op, n)
        assert len(blocks) == n
        assert sorted(torch.cat(blocks).tolist()) == list(range(10))


def _sweep_reference(op, y, n_subsets, rule):
    """One ordered sweep of a row-action method from x = 0, with the dense matrix of each block."""
    x = torch.zeros(op.domain_shape[0] * op.domain_shape[1], dtype=torch.float64)
    for b in range(n_subsets):
        idx = list(range(b, op.range_shape[0], n_subsets))
        A = op[idx].to_dense()
        x = rule(x, A, y[idx].reshape(-1))
    return x.reshape(op.domain_shape)


def test_one_kaczmarz_and_one_sart_sweep_match_the_dense_formulas():
    op = ParallelBeam2D(8, 12)
    y = op(torch.rand(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))

    def kaczmarz_rule(x, A, yb):
        return x + 0.7 / torch.linalg.matrix_norm(A, 2) ** 2 * A.T @ (yb - A @ x)

    def sart_rule(x, A, yb):
        rows, cols = A.sum(1), A.sum(0)
        inv_r = torch.where(rows > 0, 1 / rows, 0.0)
        inv_c = torch.where(cols > 0, 1 / cols, 0.0)
        return x + 0.7 * inv_c * (A.T @ (inv_r * (yb - A @ x)))

    torch.testing.assert_close(
        kaczmarz(y, op, n_iter=1, n_subsets=3, relaxation=0.7), _sweep_reference(op, y, 3, kaczmarz_rule)
    )
    torch.testing.assert_close(
        sart(y, op, n_iter=1, n_subsets=3, relaxation=0.7), _sweep_reference(op, y, 3, sart_rule)
    )


def test_random_order_is_reproducible_from_the_seed():
    op = ParallelBeam2D(8, 12)
    y = op(torch.rand(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    torch.manual_seed(1)
    a = sart(y, op, n_iter=2, n_subsets=6, order="random", seed=5)
    torch.manual_seed(2)
    b = sart(y, op, n_iter=2, n_subsets=6, order="random", seed=5)
    assert torch.equal(a, b)


def test_fista_iterates_follow_beck_and_teboulle():
    M = torch.randn(10, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam, step = 0.5, 1 / torch.linalg.matrix_norm(M, 2).item() ** 2
    c = z = torch.zeros(6, dtype=torch.float64)
    t = 1.0
    for _ in range(4):
        c_new = soft_threshold(z - step * M.T @ (M @ z - y), step * lam)
        t_new = (1 + math.sqrt(1 + 4 * t**2)) / 2
        z = c_new + (t - 1) / t_new * (c_new - c)
        c, t = c_new, t_new
    torch.testing.assert_close(fista(y, MatrixOperator(M), lam, n_iter=4), c)


def test_ista_leaves_the_wavelet_approximation_unthresholded():
    W = Wavelet2D(16, "haar", levels=2)
    y = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = W(y)
    mask = W.approximation_mask()
    expected = W.H(torch.where(mask, c, soft_threshold(c, 0.4)))
    torch.testing.assert_close(ista(y, Identity((16, 16)), 0.4, n_iter=1, wavelet=W), expected)
    torch.testing.assert_close(
        ista(y, Identity((16, 16)), 0.4, n_iter=1, wavelet=W, threshold_approximation=True), W.H(soft_threshold(c, 0.4))
    )


def test_tv_pdhg_iterates_follow_chambolle_pock():
    from learnrecon.operators.gradient import FiniteDifference2D

    y = torch.rand(1, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam, grad = 0.3, FiniteDifference2D((6, 7))
    c = 1.0 / math.sqrt(8.0)  # ‖A‖/‖∇‖ bound with A = I
    sigma = 0.99 / math.sqrt(2.0)  # 0.99/‖K‖, ‖K‖ = √2‖A‖
    x = x_bar = torch.zeros_like(y)
    p, q = torch.zeros_like(y), torch.zeros(1, 2, 6, 7, dtype=torch.float64)
    for _ in range(4):
        p = (p + sigma * (x_bar - y)) / (1 + sigma)
        q = q + sigma * c * grad(x_bar)
        q = q / (q.norm(dim=-3, keepdim=True) / (lam / c)).clamp_min(1)
        x_new = x - sigma * (p + c * grad.H(q))
        x_bar, x = 2 * x_new - x, x_new
    torch.testing.assert_close(tv_pdhg(y, Identity((6, 7)), lam, n_iter=4, nonneg=False), x)


def test_wavelet_levels_by_name_fit_a_non_square_image_and_a_long_filter():
    # 64 x 68 allows 2 levels of db2 (68 is not divisible by 8); 32 x 32 allows 1 of db10 (20 taps). The levels
    # were chosen from the shorter side alone, and each call was refused.
    for shape, wavelet in (((64, 68), "db2"), ((32, 32), "db10")):
        y = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        x = ista(y, Identity(shape), 0.01, n_iter=3, wavelet=wavelet)
        assert x.shape == y.shape and torch.isfinite(x).all()
    assert [default_levels(s, w) for s, w in (((64, 68), "db2"), ((32, 32), "db10"), ((128, 128), "db2"))] == [2, 1, 4]


def test_discrepancy_stop_with_zero_noise_level():
    y = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = landweber(y, Identity((4, 4)), n_iter=50, delta=0.0, return_info=True)
    assert result.reason == "discrepancy" and result.n_iter == 1


def test_discrepancy_principle_accepts_tau_one():
    y = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = landweber(y, 0.5 * Identity((4, 4)), n_iter=50, delta=1e-3, tau=1.0, return_info=True)
    assert result.reason == "discrepancy"


def test_rtol_waits_for_every_sample():
    op = ParallelBeam2D(8, 10)
    y = torch.stack([torch.zeros(op.range_shape, dtype=torch.float64), op(torch.rand(8, 8, dtype=torch.float64))])
    result = landweber(y, op, n_iter=30, rtol=1e-10, return_info=True)
    assert result.n_iter == 30 and result.reason == "n_iter"
