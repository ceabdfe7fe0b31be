"""Deep equilibrium models: implicit gradients against an exact fixed point and finite differences, the backward
modes, training memory flat in the iterations, the contraction certificate, the non-convergence report, the
Lipschitz convolutions, training and resuming with the Trainer, bad input."""

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learnrecon import phantoms
from learnrecon.config import from_dict
from learnrecon.data.simulate import measure
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.io.checkpoint import load_checkpoint
from learnrecon.models import DeepEquilibrium, DEGrad, build_model, load_model, normalised
from learnrecon.models.lipschitz import LipschitzConv, conv_operator_norm
from learnrecon.operators import ParallelBeam2D
from learnrecon.training import Trainer

OP = ParallelBeam2D(6, 4)  # 36 unknowns, small enough for dense matrices
L = float(OP.norm(torch.float64)) ** 2  # λ_max(A*A)


class LinearStep(nn.Module):
    """``u ↦ u − η (A*(Au − y) + λ u + k ∗ u)``, linear in ``u``, with learnable λ and 3×3 kernel ``k``."""

    def __init__(self, eta=0.8 / (L + 1), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.eta = eta
        self.lam = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.kernel = nn.Parameter(0.05 * torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64))

    def forward(self, state, y, op):
        (u,) = state
        return (u - self.eta * (op.H(op(u) - y) + self.lam * u + F.conv2d(u, self.kernel, padding=1)),)

    def exact_fixed_point(self, y, op):
        """``u* = (A*A + λI + K)⁻¹ A*y`` by ``torch.linalg.solve`` (differentiable in λ and k)."""
        n = math.prod(op.domain_shape)
        a = op.to_dense(torch.float64)  # (m, n)
        basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *op.domain_shape)
        k = F.conv2d(basis, self.kernel, padding=1).reshape(n, n).T
        m = a.T @ a + self.lam * torch.eye(n, dtype=torch.float64) + k
        rhs = op.H(y).reshape(y.shape[0], n)
        return torch.linalg.solve(m, rhs.T).T.reshape(y.shape[0], 1, *op.domain_shape)


def _data(n=2, op=OP, seed=0, dtype=torch.float64):
    x = phantoms.random_ellipses(n, op.domain_shape[-1], seed=seed, scaling="minmax").to(dtype)
    return x, measure(op, x, "relative:0.05", seed=seed).to(dtype)


def _linear_deq(**options):
    return DeepEquilibrium(LinearStep(), init="zero", normalise=False, **options)


def _loss_and_grads(model, y, x):
    model.zero_grad()
    loss = ((model(y, OP) - x) ** 2).sum()
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("solver", ["picard", "anderson", "broyden"])
def test_implicit_gradient_is_the_gradient_of_the_exact_fixed_point(solver):
    x, y = _data()
    model = _linear_deq(
        solver=solver, tol=1e-11, max_iter=2000, solver_options={"m": 5} if solver == "anderson" else {}
    )
    model.train()
    _, grads = _loss_and_grads(model, y, x)
    assert model.last_forward.converged.all() and model.last_backward.converged.all()
    step = model.step_module
    exact = step.exact_fixed_point(y, OP)
    exact_grads = torch.autograd.grad(((exact - x) ** 2).sum(), list(step.parameters()))
    for g, e in zip(grads, exact_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9)
    # and a central finite difference in λ
    h = 1e-4
    model.eval()
    model.tol, model.max_iter = 1e-14, 5000  # the difference quotient amplifies the solver's error by 1/h
    with torch.no_grad():
        step.lam += h
        up = float(((model(y, OP) - x) ** 2).sum())
        step.lam -= 2 * h
        down = float(((model(y, OP) - x) ** 2).sum())
        step.lam += h
    assert model.last_forward.converged.all()
    assert (up - down) / (2 * h) == pytest.approx(float(grads[0]), rel=2e-5)


def test_the_unrolled_backward_is_backpropagation_through_picard_and_approaches_the_implicit_gradient():
    x, y = _data()
    model = _linear_deq(backward="unrolled", max_iter=5)
    _, five = _loss_and_grads(model, y, x)
    by_hand = LinearStep()
    u = torch.zeros_like(x)
    for _ in range(5):
        (u,) = by_hand((u,), y, OP)
    expected = torch.autograd.grad(((u - x) ** 2).sum(), list(by_hand.parameters()))
    for g, e in zip(five, expected, strict=True):
        torch.testing.assert_close(g, e)
    _, long = _loss_and_grads(_linear_deq(backward="unrolled", max_iter=1500), y, x)
    _, implicit = _loss_and_grads(_linear_deq(tol=1e-11, max_iter=2000), y, x)
    for g, e in zip(long, implicit, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9)
    # the last k steps after a solve; one-step: the gradient of Γ at u* with u* held fixed
    _, last = _loss_and_grads(_linear_deq(backward="unrolled", unrolled_steps=1, tol=1e-11, max_iter=2000), y, x)
    _, one = _loss_and_grads(_linear_deq(backward="one-step", tol=1e-11, max_iter=2000), y, x)
    for a, b in zip(last, one, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(one[0], implicit[0], rtol=1e-2)


def _saved_bytes(model, y, x, op) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one training step."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ((model(y, op) - x) ** 2).sum()
    loss.backward()
    return total


def test_training_memory_does_not_grow_with_the_iterations():
    op = ParallelBeam2D(32, 8)
    x, y = _data(2, op, dtype=torch.float32)
    sizes = {}
    for backward in ("implicit", "unrolled"):
        for n in (10, 100):
            torch.manual_seed(0)
            model = build_model("deq-grad", {"width": 8, "depth": 2, "tol": 1e-30, "max_iter": n, "backward": backward})
            sizes[backward, n] = _saved_bytes(model, y, x, op)
            if backward == "implicit":
                assert model.last_forward.n_iter == n  # the tolerance is never met: all n iterations ran
    assert sizes["implicit", 100] == sizes["implicit", 10]
    assert sizes["unrolled", 100] > 5 * sizes["unrolled", 10], sizes
    assert sizes["implicit", 10] < sizes["unrolled", 10]


def test_the_certificate_measures_a_known_lipschitz_constant():
    class Scaled(nn.Module):  # u ↦ c (I − η A*A) u + A*y: Lipschitz c ‖I − η A*A‖
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

        def forward(self, state, y, op):
            (u,) = state
            return (self.c * (u - op.H(op(u)) / L) + op.H(y),)

    _, y = _data()
    model = DeepEquilibrium(Scaled(), init="zero", normalise=False, tol=1e-10, max_iter=500)
    a = OP.to_dense(torch.float64)
    exact = 0.7 * torch.linalg.matrix_norm(torch.eye(a.shape[1], dtype=torch.float64) - a.T @ a / L, ord=2)
    certificate = model.certify(y, OP, power_iterations=200)
    torch.testing.assert_close(certificate.lipschitz, exact.expand(2), rtol=1e-4, atol=0)
    assert certificate.contraction.all() and certificate.bound is None
    assert certificate.as_dict()["contraction_fraction"] == 1.0


@pytest.mark.parametrize("name", ["deq-grad", "deq-prox", "deq-pd"])
def test_a_contractive_model_measures_below_its_bound(name):
    op = ParallelBeam2D(16, 6)
    x, y = _data(2, op, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model(name, {"width": 8, "depth": 2} | ({"n_primal": 2, "n_dual": 2} if name == "deq-pd" else {}))
    with torch.no_grad():  # weights far from the zero start, so the Lipschitz nets are rescaled
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    certificate = model.certify(y, op, power_iterations=30)
    assert certificate.bound is not None and certificate.bound < 1
    assert float(certificate.lipschitz.max()) <= certificate.bound * 1.01, (certificate, certificate.bound)
    model.eval()
    model(y, op)
    assert model.last_forward.converged.all(), model.last_forward.summary()


def test_the_untrained_de_grad_is_tikhonov_of_the_normalised_problem():
    """With the denoiser's net at zero, D(u) = a·u and the fixed point solves (A*A + (1 − εa) I) u = A*y."""
    x, y = _data()
    model = build_model("deq-grad", {"width": 4, "depth": 2, "tol": 1e-10, "max_iter": 500}).double()
    with torch.no_grad():
        x_hat = model(y, OP)
    step = model.step_module
    alpha = 1 - step.lipschitz * float(torch.sigmoid(step.denoiser.skip_logit.detach()))
    y_n, op_n = normalised(y, OP)
    a = op_n.to_dense(torch.float64)
    m = a.T @ a + alpha * torch.eye(a.shape[1], dtype=torch.float64)
    exact = torch.linalg.solve(m, op_n.H(y_n).reshape(2, -1).T).T.reshape(x_hat.shape)
    torch.testing.assert_close(x_hat, exact, rtol=1e-7, atol=1e-8)


def test_non_convergence_is_reported_per_sample_and_warned():
    class Expanding(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(1.5, dtype=torch.float64))

        def forward(self, state, y, op):
            return (self.w * state[0] + 0.0 * op.H(y),)

    _, y = _data()
    model = DeepEquilibrium(Expanding(), init="adjoint", normalise=False, max_iter=12).eval()
    with pytest.warns(UserWarning, match=r"0/2 samples converged.*not converged \(hit max_iter\): samples 0"):
        model(y, OP)
    report = model.diagnostics()
    assert report["nonconverged_fraction"] == 1.0 and report["iterations_max"] == 12
    assert report["residual_max"] == pytest.approx(1 / 3)


def test_conv_operator_norm_is_the_periodic_convolutions_norm_and_bounds_zero_padding():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    n = 8
    basis = torch.eye(2 * n * n, dtype=torch.float64).reshape(-1, 2, n, n)
    periodic = F.conv2d(F.pad(basis, (1, 1, 1, 1), mode="circular"), w).reshape(2 * n * n, -1)
    zero_padded = F.conv2d(basis, w, padding=1).reshape(2 * n * n, -1)
    norm = conv_operator_norm(w, grid=n)
    torch.testing.assert_close(norm, torch.linalg.matrix_norm(periodic, ord=2))
    assert float(torch.linalg.matrix_norm(zero_padded, ord=2)) <= float(conv_operator_norm(w, grid=n + 2)) + 1e-12
    conv = LipschitzConv(2, 3)
    with torch.no_grad():
        conv.weight.copy_(w.float())
    assert float(conv_operator_norm(conv.normalised_weight().detach(), 32)) == pytest.approx(1.0, rel=1e-5)


def _config(name="deq-grad", **params):
    return from_dict(
        {
            "model": {"name": name, "params": {"width": 4, "depth": 2, "max_iter": 30, **params}},
            "data": {
                "operator": {"type": "ParallelBeam2D", "image_size": 16, "n_angles": 6, "n_detectors": 25},
                "n_validation": 2,
            },
            "training": {
                "steps": 4,
                "batch_size": 2,
                "validate_every": 2,
                "checkpoint_every": 2,
                "figure_every": 100,
                "log_every": 1,
                "threads": 1,
            },
        }
    )


def test_trains_with_the_trainer_logs_its_solves_and_resumes_bit_for_bit(tmp_path):
    config = _config(solver="anderson", backward="implicit")
    Trainer.from_config(config, tmp_path / "full", progress=False).train()
    Trainer.from_config(config, tmp_path / "split", progress=False).train(until=2)
    Trainer.from_config(config, tmp_path / "split", resume=True, progress=False).train()
    a, _ = load_checkpoint(tmp_path / "full" / "last")
    b, meta = load_checkpoint(tmp_path / "split" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k.startswith("model/"))
    assert meta["model"] == {"name": "deq-grad", "params": config.model.params}
    rows = list(csv.DictReader((tmp_path / "full" / "diagnostics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert {"iterations", "nonconverged_fraction", "backward_iterations", "backward_nonconverged_fraction"} <= set(
        rows[0]
    )
    model = load_model(tmp_path / "full" / "last")
    assert isinstance(model, DEGrad) and model.solver == "anderson"
    assert json.dumps(
        model.certify(*_data(1, ParallelBeam2D(16, 6), dtype=torch.float32)[1:], ParallelBeam2D(16, 6)).as_dict()
    )


def test_a_training_step_lowers_the_loss_for_every_backward_mode():
    x, y = _data(4, ParallelBeam2D(16, 6), dtype=torch.float32)
    op = ParallelBeam2D(16, 6)
    for backward in ("implicit", "one-step", "unrolled"):
        torch.manual_seed(0)
        model = build_model("deq-grad", {"width": 8, "depth": 2, "backward": backward, "max_iter": 40})
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(8):
            opt.zero_grad()
            loss = F.mse_loss(model(y, op), x)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert losses[-1] < 0.9 * losses[0], (backward, losses)


def test_bad_input_is_named():
    step = LinearStep()
    with pytest.raises(ParameterError, match="unknown solver 'newton'"):
        DeepEquilibrium(step, solver="newton")
    with pytest.raises(ParameterError, match="unknown backward 'adjoint'"):
        DeepEquilibrium(step, backward="adjoint")
    with pytest.raises(ParameterError, match="tol must be"):
        DeepEquilibrium(step, tol=0.0)
    with pytest.raises(ParameterError, match="max_iter must be"):
        DeepEquilibrium(step, max_iter=0)
    with pytest.raises(ParameterError, match="backward max_iter must be"):
        DeepEquilibrium(step, backward_max_iter=0)
    with pytest.raises(ParameterError, match="backward tol must be"):
        DeepEquilibrium(step, backward_tol=0.0)
    with pytest.raises(ParameterError, match="eta = 0.6 is outside"):
        build_model("deq-grad", {"eta": 0.6})
    with pytest.raises(ParameterError, match="eta = 2.5 is outside"):
        build_model("deq-prox", {"eta": 2.5})
    with pytest.raises(ParameterError, match="lipschitz"):
        build_model("deq-grad", {"lipschitz": 1.2})
    with pytest.raises(ParameterError, match="lipschitz ε = 0.7 gives DE-PD"):
        build_model("deq-pd", {"lipschitz": 0.7})
    with pytest.raises(ParameterError, match="contractive=True needs normalise=True"):
        build_model("deq-grad", {"normalise": False})
    with pytest.raises(ParameterError, match="fixed-point solver 'anderson'.*unexpected keyword"):
        model = build_model("deq-grad", {"solver_options": {"memory": 3}})
        model(_data(1)[1], OP)

    class Shrinking(nn.Module):
        def forward(self, state, y, op):
            return (state[0][:, :, :-1],)

    with pytest.raises(ShapeError, match="step module Shrinking returned"):
        DeepEquilibrium(Shrinking(), init="zero")(_data(1)[1], OP)


def test_evaluation_reports_the_solves():
    from learnrecon.evaluation import evaluate_batches

    op = ParallelBeam2D(16, 6)
    x, y = _data(2, op, dtype=torch.float32)
    model = build_model("deq-grad", {"width": 4, "depth": 2, "max_iter": 2, "tol": 1e-8})
    with pytest.warns(UserWarning, match="not converged"):
        result = evaluate_batches(model, [(x, y)], op)
    assert result["diagnostics"]["nonconverged_fraction"] == 1.0
    assert result["diagnostics"]["iterations_max"] == 2.0
