"""Fixed-point solvers: known fixed points (affine contractions of known spectrum, a scalar map), per-sample
freezing, the non-convergence report and bad input."""

import math

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.solvers.fixed_point import (
    FIXED_POINT_SOLVERS,
    anderson,
    picard,
    register_solver,
    solve_fixed_point,
)

SOLVERS = ("picard", "anderson", "broyden")
DOTTIE = 0.7390851332151607  # the fixed point of cos


def _affine(n=12, batch=3, contraction=0.9, dtype=torch.float64, seed=0):
    """A batch of maps z ↦ M_b z + c_b with M_b = Q diag(s) Qᵀ, |s| ≤ contraction, and their fixed points."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(batch, n, n, generator=g, dtype=torch.float64))
    s = contraction * (2 * torch.rand(batch, n, generator=g, dtype=torch.float64) - 1)
    s[:, 0] = contraction
    m = q @ torch.diag_embed(s) @ q.transpose(1, 2)
    c = torch.randn(batch, n, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - m, c)
    m, c = m.to(dtype), c.to(dtype)
    return (lambda z: torch.bmm(m, z[..., None])[..., 0] + c), exact.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", SOLVERS)
def test_affine_contraction_reaches_its_closed_form_fixed_point(solver, dtype):
    f, exact = _affine(dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    result = solve_fixed_point(f, torch.zeros_like(exact), solver, tol=tol, max_iter=500)
    assert result.converged.all(), result.summary()
    assert result.z.dtype == dtype and result.z.shape == exact.shape
    assert (result.residual <= tol).all()
    # a γ-contraction: ‖z − z*‖ ≤ ‖f(z) − z‖ / (1 − γ) and ‖f(z)‖ ≈ ‖z*‖
    error = torch.linalg.vector_norm(result.z - exact, dim=1) / torch.linalg.vector_norm(exact, dim=1)
    assert (error <= 1.5 * tol / (1 - 0.9)).all(), error
    assert result.residuals.shape == (result.n_iter, 3)
    assert int(result.iterations.max()) == result.n_iter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", SOLVERS)
def test_scalar_map_cos(solver, dtype):
    z0 = torch.tensor([[0.0], [1.0], [3.0]], dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    result = solve_fixed_point(torch.cos, z0, solver, tol=tol, max_iter=300)
    assert result.converged.all(), result.summary()
    torch.testing.assert_close(result.z, torch.full_like(z0, DOTTIE), rtol=20 * tol, atol=0)


def test_picard_error_falls_like_the_contraction_and_damping_is_the_relaxed_map():
    f = lambda z: 0.5 * z + 1.0  # noqa: E731 (fixed point 2)
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    result = picard(f, z0, tol=1e-12, max_iter=100)
    # residual of z_k = |f(z_k) − z_k| / |f(z_k)| with z_k = 2 − 2·0.5ᵏ: exact history
    k = torch.arange(result.n_iter, dtype=torch.float64)
    z = 2 - 2 * 0.5**k
    expected = (0.5 * z + 1 - z).abs() / (0.5 * z + 1)
    torch.testing.assert_close(result.residuals[:, 0], expected)
    damped = picard(f, z0, tol=1e-12, max_iter=200, damping=0.5)  # z ← z + ½(f(z) − z): rate 0.75
    assert damped.converged.all() and damped.n_iter > result.n_iter
    torch.testing.assert_close(damped.z, torch.full_like(z0, 2.0))


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_converged_sample_stops_changing_and_gets_the_iterates_it_has_alone(solver):
    rates = torch.tensor([[0.1], [0.95]], dtype=torch.float64)
    shift = torch.linspace(0, 1, 4, dtype=torch.float64)
    f = lambda z: rates * torch.sin(z + shift) + 1.0  # noqa: E731
    z0 = torch.zeros(2, 4, dtype=torch.float64)
    both = solve_fixed_point(f, z0, solver, tol=1e-8, max_iter=500)
    assert both.converged.all()
    assert both.iterations[0] < both.iterations[1]
    fast = solve_fixed_point(lambda z: 0.1 * torch.sin(z + shift) + 1.0, z0[:1], solver, tol=1e-8, max_iter=500)
    assert int(fast.iterations[0]) == int(both.iterations[0])
    torch.testing.assert_close(both.z[:1], fast.z, rtol=0, atol=0)
    # the frozen sample's residual history is constant after it converged
    k = int(both.iterations[0])
    assert (both.residuals[k - 1 :, 0] == both.residuals[k - 1, 0]).all()


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_map_that_is_not_a_contraction_is_reported_per_sample(solver):
    def f(z):  # sample 0: a contraction to (2, 2); sample 1: z ↦ R z / ‖z‖ (R a quarter turn), no fixed point
        turned = torch.stack([-z[:, 1], z[:, 0]], dim=1) / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return torch.where(torch.tensor([[True], [False]]), 0.5 * z + 1.0, turned)

    z0 = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    result = solve_fixed_point(f, z0, solver, tol=1e-6, max_iter=40)
    assert result.converged.tolist() == [True, False]
    assert result.nonconverged == [1]
    assert int(result.iterations[1]) == 40 and float(result.residual[1]) > 0.1
    assert "not converged (hit max_iter): samples 1" in result.summary()
    torch.testing.assert_close(result.z[0], torch.full((2,), 2.0, dtype=torch.float64), rtol=1e-5, atol=0)


def test_anderson_needs_fewer_iterations_than_picard_on_a_slow_contraction():
    f, exact = _affine(n=40, contraction=0.98, seed=1)
    z0 = torch.zeros_like(exact)
    p = picard(f, z0, tol=1e-8, max_iter=2000)
    a = anderson(f, z0, tol=1e-8, max_iter=2000, m=6)
    b = solve_fixed_point(f, z0, "broyden", tol=1e-8, max_iter=2000)
    assert p.converged.all() and a.converged.all() and b.converged.all()
    assert a.n_iter < p.n_iter / 3 and b.n_iter < p.n_iter / 3, (p.n_iter, a.n_iter, b.n_iter)


def test_images_of_any_shape_and_the_best_iterate_when_not_converged():
    z0 = torch.zeros(2, 1, 4, 4)
    result = anderson(lambda z: 0.5 * z + 1.0, z0, tol=1e-6, max_iter=50)
    assert result.z.shape == z0.shape and result.converged.all()
    torch.testing.assert_close(result.z, torch.full_like(z0, 2.0), rtol=1e-5, atol=0)
    rotation = lambda z: torch.stack([-z[:, 1], z[:, 0]], dim=1) + 1.0  # noqa: E731 (‖J‖ = 1, never contracts)
    stuck = picard(rotation, torch.zeros(1, 2), tol=1e-8, max_iter=7)
    assert not stuck.converged.any() and stuck.n_iter == 7
    assert float(stuck.residual[0]) == float(stuck.residuals[:, 0].min())


def test_bad_input_is_named():
    f = lambda z: 0.5 * z  # noqa: E731
    z0 = torch.ones(1, 3)
    with pytest.raises(ParameterError, match="unknown fixed-point solver 'newton'"):
        solve_fixed_point(f, z0, "newton")
    with pytest.raises(ParameterError, match="tol must be"):
        picard(f, z0, tol=0.0)
    with pytest.raises(ParameterError, match="max_iter must be"):
        anderson(f, z0, max_iter=0)
    with pytest.raises(ParameterError, match="damping"):
        picard(f, z0, damping=1.5)
    with pytest.raises(ParameterError, match="beta"):
        anderson(f, z0, beta=0.0)
    with pytest.raises(ParameterError, match="memory m"):
        anderson(f, z0, m=0)
    with pytest.raises(ParameterError, match="'picard'.*unexpected keyword"):
        solve_fixed_point(f, z0, "picard", m=3)
    with pytest.raises(ParameterError, match="returned shape"):
        picard(lambda z: z[:, :2], z0)
    with pytest.raises(ParameterError, match="already registered"):
        register_solver("picard", picard)
    assert math.isfinite(float(solve_fixed_point(f, z0, "picard").residual[0]))
    assert set(SOLVERS) <= set(FIXED_POINT_SOLVERS)
