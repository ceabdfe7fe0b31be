"""Nonlinear forward operators (pre-log CT): derivative tests, autograd, bad input, the learned schemes on
them and the classical pre-log baselines."""

import math

import pytest
import torch

from learnrecon import phantoms
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.evaluation import score
from learnrecon.models import LearnedGradientDescent, LearnedPrimalDual, build_model
from learnrecon.noise import poisson_counts, poisson_prelog
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.base import adjoint_mismatch
from learnrecon.operators.nonlinear import BeerLambert, poisson_nll, taylor_remainders
from learnrecon.solvers.poisson import gauss_newton_tv, poisson_objective, poisson_tv, prelog_fbp

RAY = ParallelBeam2D(32, 12)


def _truth(n=2, size=32, seed=0):
    return phantoms.draw_ellipses("dival-ellipses", n=n, size=size, seed=seed).double()


def _counts(op, x, seed=0):
    return torch.stack(
        [
            poisson_counts(op.ray(x[i]), op.photons, op.mu_max, torch.Generator().manual_seed(seed + i))
            for i in range(len(x))
        ]
    )


def _op(photons=1e4):
    return BeerLambert(RAY, photons, 2.0 / 25)


def test_taylor_remainder_is_second_order():
    op, x = _op(), _truth(1)
    h = torch.randn_like(x, generator=None)
    remainders = taylor_remainders(op, x, h, steps=(0.2, 0.1, 0.05, 0.025))
    ratios = [a / b for a, b in zip(remainders, remainders[1:], strict=False)]
    assert all(3.6 < r < 4.4 for r in ratios), ratios  # O(t²): halving t quarters the remainder
    # a wrong derivative (sign flipped) is caught: the remainder is then first order
    wrong = [float((op(x + t * h) - op(x) + t * op.derivative(x)(h)).norm()) for t in (0.1, 0.05)]
    assert 1.8 < wrong[0] / wrong[1] < 2.2


def test_derivative_adjoint_and_autograd():
    op, x = _op(), _truth(2)
    d = op.derivative(x)
    h, r = torch.randn_like(x), torch.randn(2, 1, *RAY.range_shape, dtype=torch.float64)
    assert adjoint_mismatch(d, h, r) < 1e-13
    # autograd through op(x) is the derivative's adjoint
    leaf = x.clone().requires_grad_()
    (op(leaf) * r).sum().backward()
    torch.testing.assert_close(leaf.grad, d.H(r))
    # gradcheck of the full pipeline including the dependence of F'(x)* on x
    small = BeerLambert(ParallelBeam2D(6, 3), 50.0, 0.3)
    x6 = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    r6 = torch.randn(1, 1, *small.range_shape, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: small(v), (x6,))
    assert torch.autograd.gradcheck(lambda v: small.derivative(v).H(r6), (x6,))


def test_closed_forms_and_scaling():
    op = _op()
    zero = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(op(zero), torch.full((1, 1, *RAY.range_shape), 1e4, dtype=torch.float64))
    assert math.isclose(op.norm(), op.mu_max * op.photons * RAY.norm(), rel_tol=1e-12)
    scaled = op * 0.5
    x = _truth(1)
    torch.testing.assert_close(scaled(x), 0.5 * op(x))
    torch.testing.assert_close(scaled.derivative(x).H(op(x)), 0.5 * op.derivative(x).H(op(x)))
    assert math.isclose(scaled.norm(), 0.5 * op.norm())
    torch.testing.assert_close(scaled.pseudo_inverse(scaled(x)), op.pseudo_inverse(op(x)))
    # a linear operator is its own derivative
    assert RAY.derivative(x) is RAY and RAY.is_linear and not op.is_linear
    with pytest.raises(TypeError, match="derivative"):
        _ = op.H


def test_log_data_match_poisson_prelog():
    op, x = _op(1e3), _truth(1)
    counts = poisson_counts(op.ray(x), 1e3, op.mu_max, torch.Generator().manual_seed(3))
    post = poisson_prelog(op.ray(x), 1e3, op.mu_max, torch.Generator().manual_seed(3))
    torch.testing.assert_close(op.log_data(counts), post)
    assert bool((counts == counts.round()).all()) and bool((counts >= 0).all())


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: BeerLambert(RAY, 0, 1.0), "photons"),
        (lambda: BeerLambert(RAY, -5.0, 1.0), "photons"),
        (lambda: BeerLambert(RAY, 1e4, 0.0), "mu_max"),
        (lambda: BeerLambert(RAY, float("inf"), 1.0), "photons"),
    ],
)
def test_bad_parameters(build, match):
    with pytest.raises(ParameterError, match=match):
        build()


def test_negative_counts_and_wrong_shapes_refused():
    op = _op()
    counts = torch.full((1, 1, *RAY.range_shape), 10.0)
    counts[0, 0, 0, 0] = -1
    with pytest.raises(ParameterError, match="negative"):
        op.log_data(counts)
    with pytest.raises(ParameterError, match="negative"):
        poisson_tv(counts, op, n_iter=1)
    with pytest.raises(ShapeError):
        op(torch.zeros(1, 1, 16, 16))


def test_poisson_nll_minimised_by_the_mean():
    lam = torch.tensor([[3.0, 10.0]], dtype=torch.float64)
    counts = torch.tensor([[4.0, 7.0]], dtype=torch.float64)
    grid = torch.linspace(0.5, 20, 2000, dtype=torch.float64)
    values = torch.stack([poisson_nll(torch.full_like(counts, float(g)), counts) for g in grid])
    assert abs(float(grid[values[:, 0].argmin()]) - 5.5) < 0.02  # Σ(λ − N log λ) is minimal at λ = mean N
    assert poisson_nll(lam, counts).shape == (1,)


def test_poisson_tv_decreases_the_objective_and_beats_fbp():
    op, x = BeerLambert(ParallelBeam2D(32, 30), 1e4, 2.5 / 25), _truth(2)
    counts = _counts(op, x)
    fbp = prelog_fbp(counts, op)
    rec, history = poisson_tv(counts, op, lam=3.0, n_iter=150, return_history=True)
    assert all(b <= a + 1e-9 * abs(a) for a, b in zip(history[10:], history[11:], strict=False))  # FISTA: ~monotone
    assert float(poisson_objective(rec, counts, op, 3.0, 1e-2).mean()) < history[0]
    assert float(score(rec.float(), x.float()).psnr.mean()) > float(score(fbp.float(), x.float()).psnr.mean()) + 2


def test_gauss_newton_reaches_the_fista_minimiser_in_few_iterations():
    op, x = BeerLambert(ParallelBeam2D(32, 30), 1e4, 2.5 / 25), _truth(2)
    counts = _counts(op, x)
    reference = poisson_tv(counts, op, lam=3.0, n_iter=3000)
    rec, history = gauss_newton_tv(counts, op, lam=3.0, n_iter=25, cg_iter=20, return_history=True)
    assert all(b <= a for a, b in zip(history, history[1:], strict=False))  # the line search never goes up
    optimum = poisson_objective(reference, counts, op, 3.0, 1e-2)
    start = poisson_objective(prelog_fbp(counts, op).clamp_min(0), counts, op, 3.0, 1e-2)
    gap = (poisson_objective(rec, counts, op, 3.0, 1e-2) - optimum) / (start - optimum)
    assert float(gap.max()) < 1e-3, gap  # 25 outer iterations close 99.9 % of the gap FISTA closes in 3000
    assert float((rec - reference).norm() / reference.norm()) < 0.02
    assert float(rec.min()) >= 0


def test_gauss_newton_without_penalty_recovers_noiseless_data():
    op, x = BeerLambert(ParallelBeam2D(16, 40), 1e4, 0.1), _truth(1, size=16)
    rec = gauss_newton_tv(op(x), op, lam=0.0, n_iter=30, cg_iter=30, damping=0.0, nonneg=False)
    assert float((rec - x).norm() / x.norm()) < 1e-3  # F(x) = N has the unique solution x (A injective here)


def test_readout_noise_counts_and_the_shifted_likelihood():
    op, x = BeerLambert(ParallelBeam2D(32, 30), 1e3, 2.0 / 25), _truth(4)
    generator = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain = poisson_counts(op.ray(x), 1e3, op.mu_max, generator())
    noisy = poisson_counts(op.ray(x), 1e3, op.mu_max, generator(), readout=10.0)
    torch.testing.assert_close(poisson_counts(op.ray(x), 1e3, op.mu_max, generator(), readout=0.0), plain)
    assert bool((noisy >= 0).all()) and bool((noisy == noisy.round()).all())
    spread = float((noisy - plain).std())
    assert 8.5 < spread < 11.5  # σ_e = 10 photons on top of the Poisson counts
    # with s = σ_e², the shifted likelihood's gradient (used by both solvers) is the autograd gradient
    leaf = x.clone().requires_grad_()
    poisson_objective(leaf, noisy, op, lam=0.0, eps=1e-2, readout=10.0).sum().backward()
    from learnrecon.solvers.poisson import _data_gradient

    torch.testing.assert_close(_data_gradient(x, noisy, op, 100.0)[1] / op.photons, leaf.grad)
    rec = gauss_newton_tv(noisy, op, lam=3.0, n_iter=10, readout=10.0)
    fbp = prelog_fbp(noisy, op)
    assert float(score(rec.float(), x.float()).psnr.mean()) > float(score(fbp.float(), x.float()).psnr.mean()) + 1
    with pytest.raises(ParameterError, match="readout"):
        poisson_tv(noisy, op, n_iter=1, readout=-1.0)
    with pytest.raises(ParameterError, match="readout"):
        poisson_counts(op.ray(x), 1e3, op.mu_max, generator(), readout=float("nan"))


@pytest.mark.parametrize("model_cls", [LearnedPrimalDual, LearnedGradientDescent])
def test_learned_schemes_take_a_nonlinear_operator(model_cls):
    torch.manual_seed(0)
    op, x = _op(), _truth(2).float()
    counts = _counts(op, x.double()).float()
    init = "zero" if model_cls is LearnedPrimalDual else "fbp"
    model = model_cls(n_iter=2, width=8, depth=2, init=init)
    out = model(counts, op)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    loss = ((out - x) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_primal_block_sees_the_derivative_adjoint():
    """With the networks replaced by fixed maps, one LPD step computes h = F(f) and f = F'(f)*(h) (+ the old f)."""
    op, x = _op(), _truth(1).float()
    model = LearnedPrimalDual(n_iter=1, n_primal=1, n_dual=1, width=4, depth=1, normalise=False)
    step = model.steps[0]
    seen = {}

    def dual(inputs):  # channels: h, F(f), y → return F(f) as the new h (h starts at 0)
        seen["forward"] = inputs[:, 1:2].clone()
        return inputs[:, 1:2]

    def primal(inputs):  # channels: f, [∂F(f)]* h
        seen["back"] = inputs[:, 1:2].clone()
        return torch.zeros_like(inputs[:, :1])

    step.dual.forward, step.primal.forward = dual, primal
    f0 = x.double()
    state = (f0.float(), torch.zeros(1, 1, *RAY.range_shape))
    counts = _counts(op, x.double()).float()
    step(state, counts, op)
    torch.testing.assert_close(seen["forward"].double(), op(f0.float()).double())
    expected = op.derivative(f0.float()).H(op(f0.float()))
    torch.testing.assert_close(seen["back"], expected)


def test_lpd_registry_model_on_prelog():
    model = build_model("lpd", {"n_iter": 1, "width": 4, "depth": 1, "init": "fbp"})
    op, x = _op(1e3), _truth(1).float()
    out = model(_counts(op, x.double()).float(), op)
    assert out.shape == x.shape


def test_prelog_pairs_and_the_trainer_on_a_nonlinear_operator(tmp_path):
    from learnrecon.config import TrainingConfig
    from learnrecon.data.prelog import PrelogPairs
    from learnrecon.data.sources import PhantomSource
    from learnrecon.training import Trainer

    op = _op(1e3)
    counts = PrelogPairs(op, PhantomSource("dival-ellipses"), seed=3)
    logs = PrelogPairs(op, PhantomSource("dival-ellipses"), seed=3, log=True)
    a, b = counts.batch(torch.arange(2, 4)), logs.batch(torch.arange(2, 4))
    torch.testing.assert_close(a.x, b.x)
    torch.testing.assert_close(op.log_data(a.y), b.y)
    torch.testing.assert_close(counts.batch(torch.arange(2, 4)).y, a.y)  # a function of the positions
    torch.manual_seed(0)
    model = build_model("lpd", {"n_iter": 2, "width": 8, "depth": 2, "init": "fbp"})
    settings = TrainingConfig(steps=3, batch_size=2, lr=1e-3, device="cpu", validate_every=3, checkpoint_every=3)
    trainer = Trainer(model, op, counts, run_dir=tmp_path / "run", settings=settings, validation=a, progress=False)
    summary = trainer.train()
    trainer.close()
    assert summary["steps"] == 3 and math.isfinite(summary["best_psnr"])


def test_beer_lambert_config_round_trip():
    from learnrecon.operators.registry import build_operator, operator_config

    op = _op(1e3)
    rebuilt = build_operator(operator_config(op))
    x = _truth(1)
    assert isinstance(rebuilt, BeerLambert) and rebuilt.photons == 1e3 and rebuilt.mu_max == op.mu_max
    torch.testing.assert_close(rebuilt(x), op(x))
    with pytest.raises(ParameterError, match="photons"):
        build_operator({**operator_config(op), "photons": -1})
