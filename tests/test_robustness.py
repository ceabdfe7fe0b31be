"""Worst-case perturbations, the detail instability, and uncertainty (ensembles, dropout, resampling, Langevin)
with its calibration."""

import math

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.basic import Identity, MatrixOperator
from learnrecon.operators.fbp import fbp
from learnrecon.robustness import add_detail, attack_summary, detail_recovery, worst_case_perturbation
from learnrecon.robustness.attack import sample_norm
from learnrecon.solvers import tv_pdhg


def _linear_reconstructor(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    return m, (lambda y, op: y @ m.T)


def _top_right_singular_vector(m: torch.Tensor, n_iter: int = 500) -> torch.Tensor:
    v = torch.ones(m.shape[1], dtype=m.dtype)
    for _ in range(n_iter):
        v = m.T @ (m @ v)
        v = v / v.norm()
    return v


def test_attack_on_a_linear_reconstructor_finds_the_top_singular_vector():
    m, method = _linear_reconstructor()
    op = MatrixOperator(torch.eye(10, dtype=torch.float64))
    y = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = worst_case_perturbation(method, y, op, eps=0.05, n_steps=200)
    v = _top_right_singular_vector(m)
    e = result.perturbation
    cosine = (e @ v).abs() / sample_norm(e)
    assert torch.allclose(cosine, torch.ones(3, dtype=torch.float64), atol=1e-6)
    # on the boundary of the ball, and the objective is σ₁² ε² ‖y‖²
    assert torch.allclose(sample_norm(e), 0.05 * sample_norm(y), rtol=1e-9)
    sigma1 = torch.linalg.svdvals(m)[0]
    assert torch.allclose(result.objective, (sigma1 * 0.05 * sample_norm(y)) ** 2, rtol=1e-6)


def test_attack_increases_its_objective_and_respects_the_bound():
    op = ParallelBeam2D(32, n_angles=12)
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 10:20, 8:24] = 1.0
    y = op(x)

    def method(y, op):
        return tv_pdhg(y, op, lam=0.5, n_iter=30, nonneg=False, differentiable=True)

    result = worst_case_perturbation(method, y, op, eps=0.02, n_steps=6)
    history = result.history
    assert (history[1:] >= history[:-1]).all()  # the best objective never falls
    assert (history[-1] > 1.5 * history[0]).all()  # and the search gains on its random start
    assert (sample_norm(result.perturbation) <= 0.02 * sample_norm(y) * (1 + 1e-5)).all()
    summary = attack_summary(method, result, y, op, x)
    assert summary["relative change (attack)"] > summary["relative change (noise)"]
    assert summary["PSNR attack"] < summary["PSNR noise"]


def test_attack_with_a_stand_in_for_the_gradients_scores_the_method_itself():
    op = ParallelBeam2D(32, n_angles=12)
    y = op(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))

    def full(y, op):
        return tv_pdhg(y, op, lam=0.5, n_iter=60, nonneg=False)

    def search(y, op):
        return tv_pdhg(y, op, lam=0.5, n_iter=20, nonneg=False, differentiable=True)

    result = worst_case_perturbation(full, y, op, eps=0.01, n_steps=2, search_method=search)
    assert torch.allclose(result.reconstruction, full(y + result.perturbation, op))
    assert torch.allclose(result.objective, sample_norm(result.reconstruction - full(y, op)) ** 2)


def test_fbp_amplification_is_one_against_its_own_pseudo_inverse():
    op = ParallelBeam2D(32, n_angles=12)
    y = op(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)))

    def method(y, op):
        return op.pseudo_inverse(y)

    result = worst_case_perturbation(method, y, op, eps=0.01, n_steps=3)
    summary = attack_summary(method, result, y, op)
    assert summary["amplification (attack)"] == pytest.approx(1.0, rel=1e-4)


def test_attack_bad_input_is_named():
    op = ParallelBeam2D(16, n_angles=8)
    y = torch.zeros(1, 1, *op.range_shape)
    for eps in (-0.01, math.nan, "0.1"):
        with pytest.raises(ParameterError, match="ε must be a finite number ≥ 0"):
            worst_case_perturbation(lambda y, op: fbp(y, op), y, op, eps=eps)
    with pytest.raises(ParameterError, match="not differentiable"):
        worst_case_perturbation(lambda y, op: tv_pdhg(y, op, lam=0.1, n_iter=3), y + 1, op, eps=0.01, n_steps=1)


def test_attack_with_eps_zero_leaves_the_data():
    op = ParallelBeam2D(16, n_angles=8)
    y = op(torch.rand(1, 1, 16, 16))
    result = worst_case_perturbation(lambda y, op: fbp(y, op), y, op, eps=0.0)
    assert float(result.perturbation.abs().max()) == 0.0


def test_detail_recovery_of_an_exact_inverse_is_one_and_of_a_smoother_less():
    op = Identity((8, 8))
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    _, detail = add_detail(x, (2, 1), size=2, contrast=0.5)
    assert float(detail.sum()) == pytest.approx(0.5 * 8)
    noise = torch.zeros_like(x)
    assert detail_recovery(lambda y, op: y, x, detail, op, noise)["detail recovered"] == pytest.approx(1.0)
    blurred = detail_recovery(lambda y, op: torch.nn.functional.avg_pool2d(y, 3, 1, 1), x, detail, op, noise)
    assert 0 < blurred["detail recovered"] < 0.6
    with pytest.raises(ParameterError, match="does not fit"):
        add_detail(x, (7, 7), size=2)
