"""Worst-case perturbations, the detail instability, and uncertainty (ensembles, dropout, resampling, Langevin)
with its calibration."""

import math

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.basic import Identity, MatrixOperator
from learnrecon.operators.fbp import fbp
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.robustness import (
    add_detail,
    attack_summary,
    detail_recovery,
    penalised_perturbation,
    worst_case_perturbation,
)
from learnrecon.robustness.attack import sample_norm
from learnrecon.robustness.calibration import (
    calibration_report,
    coverage,
    gaussian_interval,
    recalibration_factor,
    sample_interval,
)
from learnrecon.robustness.uncertainty import (
    Ensemble,
    denoiser_prior,
    dropout_layers,
    gaussian_prior,
    langevin_sample,
    mc_dropout,
    resample_data,
    tv_prior,
)
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


def test_penalised_attack_on_a_linear_reconstructor_grows_along_the_top_singular_vector_or_vanishes():
    m, method = _linear_reconstructor()
    op = MatrixOperator(torch.eye(10, dtype=torch.float64))
    y = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma = torch.linalg.svdvals(m)
    # λ below σ₁²: J is unbounded above; the ascent climbs to the norm cap along the top singular vector
    result = penalised_perturbation(method, y, op, float(0.5 * sigma[0] ** 2), n_steps=150, max_norm=0.1)
    assert bool((result.history[1:] >= result.history[:-1]).all())  # never falls
    e = result.perturbation
    cosine = (e @ _top_right_singular_vector(m)).abs() / sample_norm(e)
    assert torch.allclose(cosine, torch.ones(3, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(sample_norm(e), 0.1 * sample_norm(y), rtol=1e-6)
    assert result.penalty == pytest.approx(float(0.5 * sigma[0] ** 2)) and result.eps == pytest.approx(0.1)
    # λ above σ₁²: J ≤ 0 with its maximum at e = 0; the search shrinks its random start towards 0
    small = penalised_perturbation(method, y, op, float(2 * sigma[0] ** 2), n_steps=60)
    assert float(sample_norm(small.perturbation).max()) < 1e-3 * 0.005 * float(sample_norm(y).min())
    assert float(small.objective.min()) <= 0 and float(small.history[-1].min()) > float(small.history[0].max())
    with pytest.raises(ParameterError, match="penalty"):
        penalised_perturbation(method, y, op, -1.0)


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


def test_attack_leaves_a_model_as_it_found_it():
    op = MatrixOperator(torch.randn(4, 6, dtype=torch.float64))
    model = _Scaled(0.5).train()
    y = torch.randn(2, 4, dtype=torch.float64)
    worst_case_perturbation(model, y, op, eps=0.1, n_steps=2)
    assert model.training and model.w.requires_grad


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


# ---------------------------------------------------------------- uncertainty


class _Scaled(torch.nn.Module):
    """f(y) = w · adjoint(y): a one-weight reconstructor."""

    def __init__(self, w: float = 1.0, name: str = "scaled", dropout: float = 0.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.drop = torch.nn.Dropout(dropout) if dropout else torch.nn.Identity()
        self.spec = {"name": name, "params": {}}

    def forward(self, y, op):
        return self.drop(self.w * op.H(y))


def test_ensemble_of_identical_members_is_the_member_with_zero_std():
    op = MatrixOperator(torch.randn(4, 6, dtype=torch.float64))
    y = torch.randn(3, 4, dtype=torch.float64)
    member = _Scaled(0.7)
    with torch.no_grad():
        out = Ensemble([member, _Scaled(0.7), _Scaled(0.7)]).sample(y, op)
    assert torch.allclose(out.mean, member(y, op))
    assert float(out.std.abs().max()) == 0.0
    with torch.no_grad():
        spread = Ensemble([_Scaled(1.0), _Scaled(3.0)]).sample(y, op)
    assert torch.allclose(spread.mean, 2 * op.H(y))
    assert torch.allclose(spread.std, math.sqrt(2) * op.H(y).abs())


def test_ensemble_refuses_members_of_other_models_or_geometries():
    with pytest.raises(ParameterError, match="different models"):
        Ensemble([_Scaled(name="lpd"), _Scaled(name="lgd")])
    a, b = _Scaled(), _Scaled()
    a.provenance = {"operator": {"type": "ParallelBeam2D", "n_angles": 30}}
    b.provenance = {"operator": {"type": "ParallelBeam2D", "n_angles": 60}}
    with pytest.raises(ParameterError, match="different operators"):
        Ensemble([a, b])
    with pytest.raises(ParameterError, match="number of members"):
        Ensemble([a])


def test_mc_dropout_needs_dropout_layers_and_samples_with_them():
    op = MatrixOperator(torch.eye(50, dtype=torch.float64))
    y = torch.ones(2, 50, dtype=torch.float64)
    with pytest.raises(ParameterError, match="no dropout layers"):
        mc_dropout(_Scaled(), y, op)
    model = _Scaled(dropout=0.5).eval()
    out = mc_dropout(model, y, op, n_samples=400)
    # Dropout(0.5) gives 0 or 2 with equal odds: mean 1, std 1
    assert float(out.mean.mean()) == pytest.approx(1.0, abs=0.02)
    assert float(out.std.mean()) == pytest.approx(1.0, abs=0.02)
    assert not model.training and not model.drop.training  # left in the mode it was in


def test_an_lpd_with_dropout_samples_and_one_without_keeps_the_shipped_layout():
    from learnrecon.models import LearnedPrimalDual, build_model

    op = ParallelBeam2D(16, 8)
    plain, dropped = LearnedPrimalDual(n_iter=2, width=4), LearnedPrimalDual(n_iter=2, width=4, dropout=0.3)
    assert list(plain.state_dict()) == list(build_model("lpd", {"n_iter": 2, "width": 4}).state_dict())
    assert not dropout_layers(plain) and len(dropout_layers(dropped)) == 2 * 2 * 2  # 2 steps × 2 blocks × 2 layers
    for p in dropped.parameters():  # non-zero last layers, so that dropped channels change the output
        torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(0))
    y = op(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    out = mc_dropout(dropped, y, op, n_samples=8)
    assert out.mean.shape == (2, 1, 16, 16) and float(out.std.min()) > 0
    with pytest.raises(ParameterError, match="dropout rate"):
        LearnedPrimalDual(n_iter=1, width=4, dropout=1.0)


def test_resampling_a_linear_method_gives_its_noise_propagation():
    m = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = MatrixOperator(m)
    y = torch.zeros(1, 5, dtype=torch.float64)
    out = resample_data(lambda y, op: op.H(y), y, op, sigma=0.3, n_samples=4000)
    expected = 0.3 * m.norm(dim=0)  # std of (Mᵀ ξ)_j is σ ‖column j of M‖
    assert torch.allclose(out.std[0], expected, rtol=0.05)
    with pytest.raises(ParameterError, match="σ must be finite"):
        resample_data(lambda y, op: op.H(y), y, op, sigma=-1.0)


def test_langevin_with_a_gaussian_prior_samples_the_known_posterior():
    gen = torch.Generator().manual_seed(0)
    a = torch.eye(5, dtype=torch.float64) + 0.3 * torch.randn(5, 5, dtype=torch.float64, generator=gen)
    op = MatrixOperator(a)
    y = torch.randn(1, 5, dtype=torch.float64, generator=gen)
    sigma, tau = 0.8, 1.0
    precision = a.T @ a / sigma**2 + torch.eye(5, dtype=torch.float64) / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (a.T @ y[0]) / sigma**2
    chains = y.repeat(64, 1)  # 64 independent chains on the same data
    out = langevin_sample(
        chains, op, sigma, gaussian_prior(tau), n_samples=1000, thin=10, burn_in=1000, step_fraction=0.05, seed=1
    )
    assert torch.allclose(out.mean.mean(dim=0), mean, atol=0.02)
    assert torch.allclose(out.std.pow(2).mean(dim=0).sqrt(), cov.diagonal().sqrt(), rtol=0.04)


def test_priors_gradients():
    # Tweedie: the exact denoiser of N(0, τ²) at noise s is the prior N(0, τ² + s²)
    tau, s = 1.5, 0.5
    x = torch.randn(3, 7, dtype=torch.float64)
    tweedie = denoiser_prior(lambda x: tau**2 / (tau**2 + s**2) * x, s)
    assert torch.allclose(tweedie.gradient(x), gaussian_prior(math.sqrt(tau**2 + s**2)).gradient(x))
    # smoothed TV: the gradient of λ Σ √(|∇x|² + ε²)
    image = torch.randn(2, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    prior = tv_prior(0.7, 0.1, (9, 9))
    g = FiniteDifference2D((9, 9))(image)
    energy = 0.7 * torch.sqrt(g[..., 0, :, :] ** 2 + g[..., 1, :, :] ** 2 + 0.01).sum()
    (expected,) = torch.autograd.grad(energy, image)
    assert torch.allclose(prior.gradient(image.detach()), expected)
    with pytest.raises(ParameterError, match="smoothing > 0"):
        tv_prior(1.0, 0.0, (9, 9))


# ---------------------------------------------------------------- calibration


def test_coverage_and_calibration_on_a_known_gaussian_case():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(20, 1, 32, 32, generator=gen, dtype=torch.float64)
    std = 0.1 + torch.rand(20, 1, 32, 32, generator=gen, dtype=torch.float64)
    truth = mean + std * torch.randn(mean.shape, generator=gen, dtype=torch.float64)
    report = calibration_report(mean, std, truth, level=0.9)
    assert report["coverage"] == pytest.approx(0.9, abs=0.01)
    assert report["spearman(std, |error|)"] > 0.2  # wider where the error is larger
    assert recalibration_factor(mean, std, truth) == pytest.approx(1.0, abs=0.03)
    for row in report["curve"]:
        assert row["rmse"] == pytest.approx(row["mean std"], rel=0.1)
    # twice the std: over-covers (P(|Z| < 3.29) ≈ 0.999), and the factor that fixes it is 1/2
    assert calibration_report(mean, 2 * std, truth)["coverage"] == pytest.approx(0.999, abs=0.002)
    assert recalibration_factor(mean, 2 * std, truth) == pytest.approx(0.5, abs=0.02)
    samples = mean[:1] + std[:1] * torch.randn(400, 1, 1, 32, 32, generator=gen, dtype=torch.float64)
    lower, upper = sample_interval(samples, 0.9)
    assert lower.shape == truth[:1].shape
    assert coverage(truth[:1], lower, upper) == pytest.approx(0.9, abs=0.04)
    with pytest.raises(ParameterError, match="level"):
        gaussian_interval(mean, std, level=1.5)
