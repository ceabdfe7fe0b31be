"""Learned regularisers: the adversarial and convex critics, plug-and-play and RED, their training and loading."""

import json

import pytest
import torch

from learnrecon import phantoms
from learnrecon.data.simulate import measure
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.io.checkpoint import save_checkpoint
from learnrecon.models import build_model
from learnrecon.models.base import normalised
from learnrecon.operators import MatrixOperator, ParallelBeam2D
from learnrecon.operators.fbp import fbp
from learnrecon.regularisers import (
    ICNN,
    AdversarialRegulariser,
    ConvexRegulariser,
    DRUNet,
    PlugAndPlay,
    critic_loss,
    descend,
    gradient_penalty,
    run_scheme,
)
from learnrecon.regularisers.methods import load_regulariser, reconstruct_with
from learnrecon.solvers import landweber, tikhonov

OP = ParallelBeam2D(32, 10)


def _batch(n=4, seed=0):
    x = phantoms.random_ellipses(n, 32, seed=seed, scaling="minmax")
    return x, measure(OP, x, "relative:0.05", seed=seed)


def _matrix_problem(seed=0, m=30, n=20):
    """A normalised random matrix problem (‖A‖ = 1) with images of shape (1, n)."""
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(m, n, generator=gen, dtype=torch.float64)
    op = MatrixOperator(matrix / torch.linalg.matrix_norm(matrix, ord=2))
    y = torch.randn(3, 1, m, generator=gen, dtype=torch.float64)
    return y, op


# -- the input-convex network ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_icnn_is_convex_on_random_pairs_also_after_training_steps(seed):
    torch.manual_seed(seed)
    icnn = ICNN(width=6, depth=3).double()
    optimizer = torch.optim.Adam(icnn.parameters(), lr=0.05)
    for _ in range(5):  # steps that push weights negative, each followed by the projection
        optimizer.zero_grad()
        (-icnn(torch.randn(4, 1, 16, 16, dtype=torch.float64)).sum()).backward()
        optimizer.step()
        icnn.project()
    a, b = torch.randn(64, 1, 16, 16, dtype=torch.float64), torch.randn(64, 1, 16, 16, dtype=torch.float64)
    t = torch.rand(64, 1, 1, 1, dtype=torch.float64)
    gap = t.flatten() * icnn(a) + (1 - t.flatten()) * icnn(b) - icnn(t * a + (1 - t) * b)
    assert (gap >= -1e-12).all()
    midpoint = 0.5 * (icnn(a) + icnn(b)) - icnn(0.5 * (a + b))
    assert (midpoint >= -1e-12).all()


def test_icnn_with_negative_hidden_weights_is_not_convex():
    """The check above can fail: the same network (one hidden layer, so one sign flip) with negative hidden
    weights violates the midpoint inequality."""
    torch.manual_seed(0)
    icnn = ICNN(width=6, depth=2).double()
    with torch.no_grad():
        for conv in icnn.from_hidden:
            conv.weight.copy_(-conv.weight.abs() * 50)
    a, b = torch.randn(256, 1, 16, 16, dtype=torch.float64), torch.randn(256, 1, 16, 16, dtype=torch.float64)
    assert (0.5 * (icnn(a) + icnn(b)) - icnn(0.5 * (a + b)) < -1e-9).any()


def test_icnn_gradient_matches_finite_differences():
    torch.manual_seed(0)
    icnn = ICNN(width=4, depth=3).double()
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(icnn(x).sum(), x)
    direction = torch.randn_like(x)
    h = 1e-6
    numeric = (icnn(x + h * direction) - icnn(x - h * direction)) / (2 * h)
    torch.testing.assert_close((grad * direction).sum(), numeric.sum(), rtol=1e-5, atol=1e-9)


# -- the critic's loss -------------------------------------------------------------------------------------


class _Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(dim=1)


def test_gradient_penalty_of_a_linear_critic_is_its_gradient_norm_minus_one_squared():
    w = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    critic = _Linear(w)
    real, fake = torch.randn(5, 1, 8, 8, dtype=torch.float64), torch.randn(5, 1, 8, 8, dtype=torch.float64)
    expected = (w.norm() - 1) ** 2
    torch.testing.assert_close(gradient_penalty(critic, real, fake), expected)
    loss = critic_loss(critic, real, fake, mu=3.0)
    torch.testing.assert_close(loss, critic(real).mean() - critic(fake).mean() + 3.0 * expected)
    loss.backward()  # the penalty is differentiable in the critic's weights: d/dw of 3(‖w‖ − 1)² is in the gradient
    data_part = (real - fake).mean(dim=0, keepdim=True)
    torch.testing.assert_close(critic.w.grad, data_part + 3.0 * 2 * (w.norm() - 1) * w / w.norm())


def test_a_trained_critic_scores_truth_below_fbp():
    torch.manual_seed(0)
    model = AdversarialRegulariser(width=4, depth=2, n_iter=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for step in range(60):
        x, y = _batch(4, seed=step)
        optimizer.zero_grad()
        model.training_loss(x, y, OP).backward()
        optimizer.step()
    x, y = _batch(8, seed=1000)
    with torch.no_grad():
        assert model.value(x).mean() < model.value(fbp(y, OP, "hann")).mean()


# -- the variational solve ---------------------------------------------------------------------------------


def test_ar_descent_never_increases_its_objective_and_lowers_it():
    torch.manual_seed(0)
    model = AdversarialRegulariser(width=4, depth=2, lam=0.5, n_iter=30)
    _, y = _batch(3)
    with torch.no_grad():
        model(y, OP)
    objective = torch.stack(model.last_descent.objective)  # (iterations + 1, N)
    assert objective.shape == (31, 3)
    assert (objective[1:] <= objective[:-1]).all()
    assert (objective[-1] < 0.9 * objective[0]).all()


def test_descent_without_regulariser_is_gradient_descent_on_the_data_term():
    """λ = 0 and step 1 on a normalised problem: the first steps are accepted, so it is Landweber's iteration."""
    y, op = _matrix_problem()
    x0 = torch.zeros(3, 1, 20, dtype=torch.float64)
    x, record = descend(y, op, lambda x: x.flatten(1).sum(dim=1), 0.0, x0, n_iter=15, step=1.0)
    torch.testing.assert_close(x, landweber(y, op, n_iter=15, step=1.0, x0=x0))
    assert record.iterations == 15


def test_convex_regulariser_certificate_bounds_the_true_optimality_gap():
    torch.manual_seed(0)
    y, op = _matrix_problem(seed=3, m=12, n=16)
    icnn = ICNN(width=4, depth=2).double()

    def value(x):
        return icnn(x.reshape(-1, 1, 4, 4))

    lam, mu = 0.5, 0.5
    x0 = torch.zeros(3, 1, 16, dtype=torch.float64)
    x, record = descend(y, op, value, lam, x0, n_iter=10, strong_convexity=lam * mu)
    x_star, _ = descend(y, op, value, lam, x, n_iter=400, strong_convexity=lam * mu)

    def f(z):
        return 0.5 * (op(z) - y).flatten(1).pow(2).sum(1) + lam * value(z) + 0.5 * lam * mu * z.flatten(1).pow(2).sum(1)

    with torch.no_grad():
        true_gap = f(x) - f(x_star)
    assert (true_gap <= record.gap_bound + 1e-10).all()
    assert (record.gap_bound > 0).all()
    _, tight = descend(y, op, value, lam, x0, n_iter=400, strong_convexity=lam * mu, gap_tol=1e-9)
    assert (tight.gap_bound <= 1e-9).all() and tight.iterations < 400  # stopped by the certificate


def test_acr_stops_on_its_certificate_and_reports_it():
    torch.manual_seed(0)
    model = ConvexRegulariser(width=4, depth=2, lam=1.0, convexity=0.5, n_iter=2000, gap_tol=1e-7).double()
    _, y = _batch(2)
    with torch.no_grad():
        model(y.double(), OP)
    assert model.last_descent.iterations < 2000
    assert model.diagnostics()["gap_bound_max"] <= 1e-7


# -- plug-and-play and RED ---------------------------------------------------------------------------------


def _identity(z, sigma):
    return z


def _shrink(c):
    return lambda z, sigma: c * z


def test_pnp_pgd_with_the_identity_denoiser_is_gradient_descent():
    y, op = _matrix_problem()
    x0 = torch.zeros(3, 1, 20, dtype=torch.float64)
    x = run_scheme("pgd", y, op, _identity, x0, sigma=0.1, n_iter=12, step=0.7)
    torch.testing.assert_close(x, landweber(y, op, n_iter=12, step=0.7, x0=x0))


def test_schemes_with_a_linear_denoiser_reach_the_tikhonov_solution():
    """With D(z) = c·z, the proximal map of k/2‖x‖² for the matching k, PnP-PGD and PnP-ADMM converge to the
    minimiser of ½‖Ax − y‖² + k/2‖x‖², and RED's fixed point solves A*(Ax − y) + λ(1 − c)x = 0."""
    y, op = _matrix_problem()
    x0 = torch.zeros(3, 1, 20, dtype=torch.float64)
    c, eta, rho = 0.8, 1.0, 0.5
    k_pgd = (1 - c) / (c * eta)
    pgd = run_scheme("pgd", y, op, _shrink(c), x0, sigma=0.1, n_iter=400, step=eta)
    torch.testing.assert_close(pgd, tikhonov(y, op, alpha=k_pgd, n_iter=200, tol=1e-12), rtol=1e-6, atol=1e-8)
    k_admm = rho * (1 - c) / c
    admm = run_scheme("admm", y, op, _shrink(c), x0, sigma=0.1, n_iter=300, rho=rho, cg_iter=40)
    torch.testing.assert_close(admm, tikhonov(y, op, alpha=k_admm, n_iter=200, tol=1e-12), rtol=1e-5, atol=1e-7)
    lam = 2.0
    red = run_scheme("red", y, op, _shrink(c), x0, sigma=0.1, n_iter=2000, lam=lam)
    residual = op.H(op(red) - y) + lam * (red - c * red)  # RED's fixed-point condition
    assert residual.abs().max() < 1e-8
    torch.testing.assert_close(red, tikhonov(y, op, alpha=lam * (1 - c), n_iter=200, tol=1e-12), rtol=1e-6, atol=1e-8)


def test_hqs_runs_its_decreasing_noise_levels():
    y, op = _matrix_problem()
    seen = []

    def record(z, sigma):
        seen.append(sigma)
        return z

    x0 = torch.zeros(3, 1, 20, dtype=torch.float64)
    run_scheme("hqs", y, op, record, x0, sigma=0.01, sigma_start=0.1, n_iter=5, lam=0.1)
    torch.testing.assert_close(torch.tensor(seen, dtype=torch.float64), torch.logspace(-1, -2, 5, dtype=torch.float64))
    with pytest.raises(ParameterError, match="sigma ≤ sigma_start"):
        run_scheme("hqs", y, op, record, x0, sigma=0.2, sigma_start=0.1, n_iter=5)


def test_denoiser_learns_to_denoise_and_every_scheme_runs_on_ct():
    torch.manual_seed(0)
    model = PlugAndPlay(width=8, levels=2, sigma_range=(0.02, 0.2), n_iter=4, sigma=0.05, sigma_start=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        x, y = _batch(4, seed=step)
        optimizer.zero_grad()
        loss = model.training_loss(x, y, OP)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    x, y = _batch(2, seed=500)
    with torch.no_grad():
        for scheme in ("pgd", "admm", "hqs", "red"):
            x_hat = model(y, OP, scheme=scheme)
            assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()


def test_lipschitz_denoiser_residual_is_a_contraction():
    torch.manual_seed(0)
    denoiser = DRUNet(width=4, levels=2, blocks=1, lipschitz=True).double()
    with torch.no_grad():
        for p in denoiser.parameters():
            p.normal_(0, 1.0)  # large weights: the constraint, not the initialisation, keeps it a contraction
        for _ in range(30):  # settle spectral normalisation's power iterations
            denoiser.train()(torch.randn(1, 1, 16, 16, dtype=torch.float64), 0.1)
        denoiser.eval()
        a, b = torch.randn(32, 1, 16, 16, dtype=torch.float64), torch.randn(32, 1, 16, 16, dtype=torch.float64)
        residual_a, residual_b = a - denoiser(a, 0.1), b - denoiser(b, 0.1)
        ratio = (residual_a - residual_b).flatten(1).norm(dim=1) / (a - b).flatten(1).norm(dim=1)
    assert (ratio < 1.0).all()


def test_denoiser_warns_outside_its_trained_noise_range():
    denoiser = DRUNet(width=4, levels=2, sigma_range=(0.0, 0.2))
    z = torch.randn(2, 1, 16, 16)
    with pytest.warns(UserWarning, match=r"σ = 0.5.*outside the range \[0, 0.2\]"):
        denoiser(z, 0.5)
    with pytest.raises(ParameterError, match="≥ 0"):
        denoiser(z, -0.1)
    assert denoiser(torch.randn(1, 1, 15, 13), 0.1).shape == (1, 1, 15, 13)  # padded and cropped back


# -- bad input, loading ------------------------------------------------------------------------------------


def test_negative_weights_are_refused():
    for name, params in (("ar", {"lam": -1.0}), ("acr", {"lam": -0.1}), ("pnp", {"lam": -2.0})):
        with pytest.raises(ParameterError, match="must be finite and ≥ 0"):
            build_model(name, params)
    model = AdversarialRegulariser(width=4, depth=2, n_iter=2)
    _, y = _batch(1)
    with pytest.raises(ParameterError, match="lam must be finite and ≥ 0, got -0.5"):
        model(y, OP, lam=-0.5)
    y_m, op_m = _matrix_problem()
    with pytest.raises(ParameterError, match="rho must be finite"):
        run_scheme("admm", y_m, op_m, _identity, torch.zeros(3, 1, 20, dtype=torch.float64), sigma=0.1, n_iter=2,
                   rho=-1.0)  # fmt: skip


def _saved(tmp_path, name, params):
    model = build_model(name, params)
    path = tmp_path / name
    save_checkpoint(path, model, {"model": model.spec}, rng=False)
    return path


def test_a_checkpoint_of_another_regulariser_kind_is_named(tmp_path):
    acr = _saved(tmp_path, "acr", {"width": 4, "depth": 2, "n_iter": 3})
    pnp = _saved(tmp_path, "pnp", {"width": 4, "levels": 2, "n_iter": 2})
    with pytest.raises(
        DataFileError, match=r"holds the adversarial convex regulariser 'acr', not the adversarial regulariser 'ar'"
    ):
        load_regulariser(acr, "ar")
    with pytest.raises(
        DataFileError, match=r"holds the plug-and-play denoiser 'pnp', not the adversarial convex regulariser 'acr'"
    ):
        reconstruct_with("acr", _batch(1)[1], OP, weights=str(pnp))
    _, y = _batch(2)
    direct = build_model("pnp", {"width": 4, "levels": 2, "n_iter": 2})
    direct.load_state_dict(load_regulariser(pnp, "pnp").state_dict())
    with torch.no_grad():
        torch.testing.assert_close(reconstruct_with("red", y, OP, weights=str(pnp)), direct(y, OP, scheme="red"))


def test_pnp_tuned_settings_apply_to_their_scheme_only():
    model = PlugAndPlay(scheme="hqs", sigma=0.03, tuned={"red": {"lam": 0.7, "sigma": 0.05}})
    assert model.settings()["sigma"] == 0.03
    assert model.settings("red")["lam"] == 0.7 and model.settings("red")["sigma"] == 0.05
    assert model.settings("pgd")["sigma"] == 0.03
    with pytest.raises(ParameterError, match="unknown schemes"):
        PlugAndPlay(tuned={"fista": {}})
    with pytest.raises(ParameterError, match="unknown plug-and-play settings"):
        model(_batch(1)[1], OP, sigmaa=0.1)


def test_regularisers_train_with_the_trainer_and_resume_from_checkpoints(tmp_path):
    from learnrecon.config import from_dict
    from learnrecon.training import Trainer

    cfg = {
        "model": {"name": "acr", "params": {"width": 4, "depth": 2, "n_iter": 3}},
        "data": {
            "operator": {"type": "ParallelBeam2D", "image_size": 32, "n_angles": 10},
            "phantom": {"type": "ellipses", "scaling": "minmax"},
            "noise": "relative:0.05",
            "n_validation": 2,
        },
        "training": {"steps": 6, "batch_size": 2, "lr": 0.05, "validate_every": 3, "checkpoint_every": 3,
                     "log_every": 1, "figure_every": 1000},
    }  # fmt: skip
    trainer = Trainer.from_config(from_dict(cfg), tmp_path / "run", progress=False)
    trainer.train()
    trainer.close()
    hidden = [conv.weight for conv in trainer.model.regulariser.from_hidden]
    assert all((w >= 0).all() for w in hidden)  # projected after every step, at lr 0.05
    meta = json.loads((tmp_path / "run" / "last.json").read_text())
    assert meta["model"]["name"] == "acr" and meta["step"] == 6
    reloaded = load_regulariser(tmp_path / "run" / "last", "acr")
    for saved, trained in zip(reloaded.parameters(), trainer.model.parameters(), strict=True):
        torch.testing.assert_close(saved, trained.cpu())
    cfg["training"]["steps"] = 9
    resumed = Trainer.from_config(from_dict(cfg), tmp_path / "run", resume=True, progress=False)
    assert resumed.step == 6
    resumed.train()
    resumed.close()
    assert resumed.step == 9


def test_normalisation_makes_the_default_step_suit_any_scale():
    """The same problem scaled by 1000 gives the same reconstruction: the solves work on A/‖A‖."""
    torch.manual_seed(0)
    model = AdversarialRegulariser(width=4, depth=2, n_iter=5, init="adjoint").double()
    _, y = _batch(1)
    with torch.no_grad():
        plain = model(y.double(), OP)
        scaled = model(1000 * y.double(), OP * 1000)
    torch.testing.assert_close(plain, scaled, rtol=1e-6, atol=1e-8)
    y_n, op_n = normalised(y.double(), OP)
    assert abs(op_n.norm(torch.float64) - 1) < 1e-6
