"""Learned models: shapes, dtypes, gradients, a short overfit of one batch, and their maths."""

import math

import pytest
import torch

from learnrecon import phantoms
from learnrecon.data.simulate import measure
from learnrecon.errors import DeviceError, DTypeError, NonFiniteError, ParameterError, ShapeError
from learnrecon.models import (
    LISTA,
    MODELS,
    MRI_ONLY,
    SMALL_PARAMS,
    FBPConvNet,
    LearnedPrimalDual,
    VariationalNetwork,
    build_model,
    initial_reconstruction,
    normalised,
    soft_threshold,
    tv_gradient,
)
from learnrecon.models.gradient import regulariser_gradient
from learnrecon.models.nets import ConvBlock, UNet, widen_unet
from learnrecon.models.variational import VNStage
from learnrecon.operators import FiniteDifference2D, MatrixOperator, ParallelBeam2D
from learnrecon.operators.blur import Blur, gaussian_kernel
from learnrecon.operators.mri import MRI
from learnrecon.solvers import ista

OP = ParallelBeam2D(32, 10)

#: The models that map data to an image, sized for 32² CT tests (composite models, whose parts are such models and
#: whose output holds more than the image, such as the task-adapted one, have their own tests; so have the models
#: that reconstruct only MRI, in test_mri_models).
SMALL = {
    name: p
    for name, p in SMALL_PARAMS.items()
    if name not in MRI_ONLY and not getattr(MODELS[name], "submodel_params", ())
}


#: The models fitted end to end (the learned regularisers' networks are trained by their own losses: a critic's, a
#: denoiser's, in test_regularisers).
END_TO_END = {name: p for name, p in SMALL.items() if getattr(MODELS[name], "trained_end_to_end", True)}


def _batch(n=2, seed=0, op=OP):
    x = phantoms.random_ellipses(n, op.domain_shape[-1], seed=seed, scaling="minmax")
    return x, measure(op, x, "relative:0.05", seed=seed)


def test_every_model_has_a_small_config():
    assert set(SMALL_PARAMS) == set(MODELS)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(name, dtype):
    model = build_model(name, SMALL[name]).to(dtype)
    _, y = _batch(3)
    y = torch.cat([y, 2 * y], dim=1).to(dtype)  # (B=3, C=2): channels are independent problems
    x_hat = model(y, OP)
    assert x_hat.shape == (3, 2, 32, 32) and x_hat.dtype == dtype
    model.eval()
    with torch.no_grad():
        separate = model(y[:, 1:], OP)
        joint = model(y, OP)[:, 1:]
    torch.testing.assert_close(joint, separate)


@pytest.mark.parametrize("name", SMALL)
def test_data_of_another_precision_give_the_models_precision(name):
    """Float64 data through a float32 model (and the reverse) run in the model's type, as float32 data would."""
    _, y = _batch()
    for model_dtype, data_dtype in ((torch.float32, torch.float64), (torch.float64, torch.float32)):
        torch.manual_seed(0)
        model = build_model(name, SMALL[name]).to(model_dtype).eval()
        with torch.no_grad():
            x_hat = model(y.to(data_dtype), OP)
            same = model(y.to(model_dtype), OP)
        assert x_hat.dtype == model_dtype
        torch.testing.assert_close(x_hat, same, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_data_on_another_device_than_the_model_is_named(name):
    model = build_model(name, SMALL[name]).to("meta")
    _, y = _batch(1)
    with pytest.raises(DeviceError, match="measurements are on cpu but the model's weights are on meta"):
        model(y, OP)


def test_operators_a_network_cannot_convolve_are_named():
    mri = MRI(torch.ones(32, 32))
    y_mri = mri(torch.ones(1, 1, 32, 32, dtype=torch.complex128))
    for name in ("fbpconvnet", "lgd", "glgd", "proximal", "lpd", "vn"):
        # Built without the operator, a model's networks take real images: it names the fix.
        with pytest.raises(DTypeError, match=r"built for images of 1 real channel.*MRI has complex images .*op=op"):
            build_model(name, SMALL[name] | {"init": "adjoint"})(y_mri, mri)
    matrix = MatrixOperator(torch.randn(20, 40))
    with pytest.raises(ShapeError, match=r"convolves 2-D images; .* has images of shape \(40,\)"):
        build_model("lgd", SMALL["lgd"])(torch.zeros(1, 1, 20), matrix)
    grad = FiniteDifference2D(32)
    with pytest.raises(ShapeError, match=r"LearnedPrimalDual was built for data of 1 real .* \(2, 32, 32\), 2 ch"):
        build_model("lpd", SMALL["lpd"])(torch.zeros(1, 1, 2, 32, 32), grad)
    with pytest.raises(ParameterError, match="learns real matrices"):
        LISTA(operator=mri)


def test_operator_lista_starts_as_ista_on_the_normalised_problem_and_takes_complex_data():
    """Untrained LISTA without matrices is ISTA for ½‖Ax − y‖² + λ‖A‖²‖x‖₁ (it works on A/‖A‖), also for MRI."""
    gen = torch.Generator().manual_seed(2)
    op = MatrixOperator(torch.randn(20, 40, generator=gen, dtype=torch.float64))
    truth = torch.zeros(2, 1, 40, dtype=torch.float64)
    truth[:, :, :4] = torch.randn(2, 1, 4, generator=gen, dtype=torch.float64)
    model = LISTA(n_iter=6, lam=0.02, matrices=False).double()
    with torch.no_grad():
        x_hat = model(op(truth), op)
    expected = ista(op(truth), op, lam=0.02 * op.norm() ** 2, n_iter=6)
    torch.testing.assert_close(x_hat, expected, rtol=1e-3, atol=1e-6)
    mri = MRI((torch.rand(16, 16, generator=gen) < 0.5).float())
    image = torch.zeros(1, 1, 16, 16, dtype=torch.complex128)
    image[..., 4:8, 4:8] = 1 + 1j
    model = LISTA(n_iter=4, lam=1e-3, matrices=False)
    x_hat = model(mri(image), mri)
    assert x_hat.is_complex() and x_hat.shape == image.shape
    x_hat.abs().sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


@pytest.mark.parametrize("name", ["lgd", "lpd", "vn"])
def test_checkpointed_activations_give_the_same_gradients_and_keep_less_for_the_backward_pass(name):
    x, y = _batch()
    grads, kept = [], []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = build_model(name, SMALL[name])
        model.checkpoint_activations = recompute
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = (model(y, OP) - x).pow(2).mean()
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
        kept.append(sum(saved))
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(recomputed, plain)
    assert kept[1] < kept[0] / 3


@pytest.mark.parametrize("name", END_TO_END)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL[name])
    x, y = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Output layers start at zero, so gradients reach deeper layers step by step (LPD: the dual block
    # matters only once the primal block's output layer has moved).
    for _ in range(4):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(y, OP), x).backward()
        optimizer.step()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    steps_before_the_last = model.steps[:-1] if hasattr(model, "steps") else []  # the last one's memory is unread
    for block in (m for step in steps_before_the_last for m in step.modules() if isinstance(m, ConvBlock)):
        per_output = block[-1].weight.grad.flatten(1).abs().sum(dim=1)  # the update and every memory channel
        assert (per_output > 0).all(), f"{name}: outputs {(per_output == 0).nonzero().flatten().tolist()} unused"


def _fit(model, op, x, y, steps=100, lr=1e-2):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(y, op), x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


#: The loss after 100 steps (OVERFIT_STEPS) on one batch must fall below this fraction of the first loss. The
#: operator-aware LISTA has two parameters per layer and ellipses are not sparse: it can only improve a little.
OVERFIT_RATIO = {"lista": 0.9}
#: LGD learns slowest (no regulariser gradient to start from, unlike GLGD): on one 2-core AMD EPYC its loss was at
#: 0.49-0.51 of the first after 100 steps, too close to 0.5 for another CPU's rounding, and 0.29 after 200.
OVERFIT_STEPS = {"lgd": 200}


@pytest.mark.parametrize("name", END_TO_END)
def test_overfits_one_batch(name):
    torch.manual_seed(0)
    x, y = _batch()
    losses = _fit(build_model(name, SMALL[name]), OP, x, y, steps=OVERFIT_STEPS.get(name, 100))
    assert losses[-1] < OVERFIT_RATIO.get(name, 0.5) * losses[0], f"{name}: loss {losses[0]:.3g} -> {losses[-1]:.3g}"


def test_lista_with_matrices_overfits_a_sparse_coding_batch():
    gen = torch.Generator().manual_seed(2)
    op = MatrixOperator(torch.randn(20, 40, generator=gen))
    x = torch.zeros(4, 1, 40)
    x[torch.arange(4), 0, torch.randint(0, 40, (4,), generator=gen)] = 1.0
    torch.manual_seed(0)
    losses = _fit(LISTA(n_iter=5, lam=0.05, operator=op), op, x, op(x), steps=100, lr=1e-2)
    assert losses[-1] < 0.1 * losses[0]


def test_lpd_has_the_papers_size():
    n = sum(p.numel() for p in LearnedPrimalDual().parameters())
    assert 240_000 < n < 260_000  # Adler & Öktem: ~0.25 M parameters


@pytest.mark.parametrize("name", ["lgd", "glgd", "proximal", "vn", "lpd"])
def test_shared_weights_use_one_step_module(name):
    shared = build_model(name, {**SMALL[name], "share_weights": True})
    assert len(shared.steps) == 1 and shared.step(0) is shared.step(2)
    assert len(build_model(name, SMALL[name]).steps) == 3


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``module`` with every parameter drawn from N(0, 0.1²) (untrained blocks return zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _random_state(*shapes, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in shapes]


def test_lpd_step_follows_the_papers_update():
    """Adler & Öktem 2018: h ← h + Γ(h, A f⁽²⁾, y), then f ← f + Λ(f, A* h⁽¹⁾)."""
    from learnrecon.models.primal_dual import PrimalDualStep

    op = ParallelBeam2D(12, 6)
    step = _randomised(PrimalDualStep(2, 2, 4, 2).double())
    f, h, y = _random_state((1, 2, 12, 12), (1, 2, *op.range_shape), (1, 1, *op.range_shape))
    h1 = h + step.dual(torch.cat([h, op(f[:, 1:2]), y], dim=1))
    f1 = f + step.primal(torch.cat([f, op.H(h1[:, :1])], dim=1))
    out = step((f, h), y, op)
    torch.testing.assert_close(out[0], f1)
    torch.testing.assert_close(out[1], h1)


@pytest.mark.parametrize("regulariser", [None, "quadratic", "tv"])
def test_lgd_step_follows_its_update(regulariser):
    """(Δx, s') = Λ(x, A*(Ax − y), [∇R(x)], s): x ← x + Δx, the memory ← s'."""
    from learnrecon.models.gradient import LGDStep

    op = ParallelBeam2D(12, 6)
    step = _randomised(LGDStep(2, 4, 2, regulariser).double())
    x, s, y = _random_state((1, 1, 12, 12), (1, 2, 12, 12), (1, 1, *op.range_shape))
    inputs = [x, op.H(op(x) - y), *([regulariser_gradient(x, regulariser)] if regulariser else []), s]
    update = step.block(torch.cat(inputs, dim=1))
    out = step((x, s), y, op)
    torch.testing.assert_close(out[0], x + update[:, :1])
    torch.testing.assert_close(out[1], update[:, 1:])


def test_untrained_proximal_model_and_vn_without_a_prior_are_landweber():
    """With zero CNN updates (and α = 0) both are x ← x − A*(Ax − y)/‖A‖² from x₀ = 0."""
    from learnrecon.models import LearnedProximal

    op = ParallelBeam2D(16, 8)
    y = op(phantoms.random_ellipses(1, 16, seed=0)).double()
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    for _ in range(3):
        x = x - op.H(op(x) - y) / op.norm() ** 2
    proximal = LearnedProximal(n_iter=3, width=4, depth=2, init="zero").double()
    vn = VariationalNetwork(n_stages=3, n_filters=2, filter_size=3, n_rbf=5, alpha=0.0, init="zero").double()
    with torch.no_grad():
        torch.testing.assert_close(proximal(y, op), x, rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(vn(y, op), x, rtol=1e-3, atol=1e-6)


def test_the_adjoint_start_on_an_operator_that_is_not_a_ray_transform():
    """ "auto" falls back to the adjoint A*y/‖A‖² where there is no FBP, and an untrained LGD returns it."""
    blur = Blur(gaussian_kernel(1.0), 16)
    y = blur(phantoms.random_ellipses(1, 16, seed=0))
    expected = blur.H(y) / blur.norm() ** 2
    torch.testing.assert_close(initial_reconstruction(y, blur, "adjoint"), expected)
    torch.testing.assert_close(initial_reconstruction(y, blur, "auto"), expected)
    with torch.no_grad():
        torch.testing.assert_close(build_model("lgd", {**SMALL["lgd"], "init": "adjoint"})(y, blur), expected)


@pytest.mark.parametrize(("init", "fbp_filter"), [("adjoint", "hann"), ("fbp", "ram-lak"), ("zero", "hann")])
def test_fbpconvnet_adds_its_unet_to_the_initial_image_it_is_given(init, fbp_filter):
    from learnrecon.solvers import fbp

    op = ParallelBeam2D(16, 8)
    y = op(phantoms.random_ellipses(1, 16, seed=0))
    model = FBPConvNet(depth=1, width=2, init=init, fbp_filter=fbp_filter).eval()
    torch.nn.init.zeros_(model.unet.head.weight)
    torch.nn.init.zeros_(model.unet.head.bias)
    expected = {
        "adjoint": op.H(y) / op.norm() ** 2,
        "fbp": fbp(y, op, filter=fbp_filter),
        "zero": torch.zeros(1, 1, 16, 16),
    }[init]
    with torch.no_grad():
        torch.testing.assert_close(model(y, op), expected)


def test_untrained_unrolled_models_start_at_their_initial_reconstruction():
    from learnrecon.solvers import fbp

    _, y = _batch()
    with torch.no_grad():
        torch.testing.assert_close(build_model("lgd", SMALL["lgd"])(y, OP), fbp(y, OP, filter="hann"))
        assert build_model("lpd", SMALL["lpd"])(y, OP).abs().max() == 0  # init zero, zero updates


def test_lista_starts_as_ista():
    """Untrained LISTA with the matrices W_e = Aᵀ/L, S = I − AᵀA/L is ISTA with step 1/L."""
    gen = torch.Generator().manual_seed(1)
    op = MatrixOperator(torch.randn(20, 40, generator=gen))
    truth = torch.zeros(3, 1, 40)
    truth[:, :, :4] = torch.randn(3, 1, 4, generator=gen)
    y = op(truth)
    model = LISTA(n_iter=7, lam=0.05, operator=op)
    with torch.no_grad():
        torch.testing.assert_close(model(y, op), ista(y, op, lam=0.05, n_iter=7), rtol=1e-4, atol=1e-5)
    with pytest.raises(ShapeError, match="built for an operator"):
        model(torch.zeros(1, 1, 10), MatrixOperator(torch.randn(10, 40)))


def test_soft_threshold():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    torch.testing.assert_close(soft_threshold(z, torch.tensor(0.5)), torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))


def test_tv_gradient_matches_autograd():
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64, requires_grad=True)
    eps = 0.1
    dx = torch.diff(x, dim=-1, append=x[..., -1:])  # forward differences, zero at the last column
    dy = torch.diff(x, dim=-2, append=x[..., -1:, :])
    torch.sqrt(dx**2 + dy**2 + eps**2).sum().backward()
    torch.testing.assert_close(tv_gradient(x.detach(), eps), x.grad)


def test_quadratic_regulariser_gradient_matches_autograd():
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64, requires_grad=True)
    dx = torch.diff(x, dim=-1, append=x[..., -1:])
    dy = torch.diff(x, dim=-2, append=x[..., -1:, :])
    (0.5 * (dx**2 + dy**2).sum()).backward()
    torch.testing.assert_close(regulariser_gradient(x.detach(), "quadratic"), x.grad)


def test_lgd_sees_the_regulariser_gradient_it_is_given():
    """Adler & Öktem's LGD: one CNN for all iterations that also sees DᵀD x; an unknown regulariser is named."""
    paper = build_model("lgd", {**SMALL["lgd"], "share_weights": True, "regulariser": "quadratic"})
    assert len(paper.steps) == 1 and paper.steps[0].block[0].in_channels == 2 + 1 + SMALL["lgd"]["n_memory"]
    assert build_model("glgd", SMALL["glgd"]).steps[0].regulariser == "tv"
    _, y = _batch()
    for kind in ("quadratic", "tv"):
        model = build_model("lgd", {**SMALL["lgd"], "regulariser": kind})
        seen = []
        model.steps[0].block[0].register_forward_hook(lambda module, args, out, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            model(y, OP)
        x0 = initial_reconstruction(y, OP, "fbp")
        torch.testing.assert_close(seen[0][:, 2:3], regulariser_gradient(x0, kind))
    with pytest.raises(ParameterError, match="unknown regulariser 'huber'"):
        build_model("lgd", {"regulariser": "huber"})
    with pytest.raises(ParameterError, match="GeneralisedLGD needs a regulariser"):
        build_model("glgd", {"regulariser": None})


def test_the_adjoint_initial_image_is_on_the_images_scale():
    """init="adjoint" starts from A*y/‖A‖², the adjoint of the normalised problem the steps solve, not from
    A*y (‖A‖² ≈ 300 times too large for this ray transform)."""
    x, y = _batch()
    y_n, op_n = normalised(y, OP)
    x0 = initial_reconstruction(y, OP, "adjoint")
    torch.testing.assert_close(x0, op_n.H(y_n))
    assert 0.5 < x0.abs().mean() / x.abs().mean() < 2
    model = build_model("lgd", {**SMALL["lgd"], "init": "adjoint"})
    with torch.no_grad():
        torch.testing.assert_close(model(y, OP), x0)  # untrained steps add zero updates


def test_vn_filters_are_zero_mean_unit_norm_and_their_transpose_is_the_adjoint():
    stage = VNStage(n_filters=3, filter_size=5, n_rbf=7, v_max=1.0, alpha=0.1).double()
    k = stage.kernels().detach()
    torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.zeros(3, 1, dtype=torch.float64))
    torch.testing.assert_close(k.flatten(1).norm(dim=1), torch.ones(3, dtype=torch.float64))
    x, z = torch.randn(1, 1, 12, 12, dtype=torch.float64), torch.randn(1, 3, 12, 12, dtype=torch.float64)
    kx = torch.nn.functional.conv2d(x, k, padding=2)
    ktz = torch.nn.functional.conv_transpose2d(z, k, padding=2)
    assert math.isclose(float((kx * z).sum()), float((x * ktz).sum()), rel_tol=1e-12)


@pytest.mark.parametrize("n_rbf", [9, 31])
def test_vn_potentials_start_as_alpha_z(n_rbf):
    """φ'(z) ≈ α z inside the span of the centres (Gaussians of width σ = their spacing sum to √(2π) z)."""
    stage = VNStage(n_filters=2, filter_size=3, n_rbf=n_rbf, v_max=1.0, alpha=0.1)
    z = torch.linspace(-0.5, 0.5, 9).reshape(1, 1, 9, 1).expand(1, 2, 9, 1)
    ratio = stage.potential_derivative(z)[0, 0, :, 0] / z[0, 0, :, 0]
    ratio = ratio[ratio.isfinite()]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.1), rtol=0.02, atol=0.0)


def test_models_take_any_operator():
    blur = Blur(gaussian_kernel(1.0), 32)
    x = phantoms.random_ellipses(2, 32, seed=3)
    y = blur(x)
    for name in ("lgd", "proximal", "lpd", "vn"):
        assert build_model(name, SMALL[name])(y, blur).shape == (2, 1, 32, 32)


def test_normalised_operator_has_norm_one():
    y = torch.ones(1, 1, *OP.range_shape)
    y_n, op_n = normalised(y, OP)
    assert math.isclose(op_n.norm(), 1.0, rel_tol=1e-3)
    torch.testing.assert_close(y_n, y / OP.norm())


def test_bad_input_is_named():
    model = build_model("lpd", SMALL["lpd"])
    with pytest.raises(ShapeError, match="measurements"):
        model(torch.zeros(1, 1, 10, 40), OP)
    with pytest.raises(ShapeError, match=r"\(B, C"):
        model(torch.zeros(10, 47), OP)
    y = torch.zeros(1, 1, *OP.range_shape)
    y[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        model(y, OP)
    with pytest.raises(ParameterError, match="unknown model"):
        build_model("unet3d")
    with pytest.raises(ParameterError, match="no parameter 'widht'"):
        build_model("lpd", {"widht": 3})
    with pytest.raises(ParameterError, match="'n_iter' must be int"):
        build_model("lpd", {"n_iter": "ten"})
    with pytest.raises(ParameterError, match="'n_iter' must be int, got 3.0"):
        build_model("lpd", {"n_iter": 3.0})
    with pytest.raises(ParameterError, match="'normalise' must be bool"):
        build_model("lpd", {"normalise": 1})
    with pytest.raises(DTypeError, match="measurements must be a torch.Tensor, got list"):
        model([[0.0]], OP)
    with pytest.raises(
        ParameterError, match="init='fbp' needs an operator whose pseudo-inverse is a filtered backprojection"
    ):
        FBPConvNet(depth=1, width=2)(torch.zeros(1, 1, 32, 32), Blur(gaussian_kernel(1.0), 32))
    with pytest.raises(ParameterError, match="odd filter_size"):
        VariationalNetwork(filter_size=4)


def test_vn_potential_derivative_and_its_gradients():
    from learnrecon.models.variational import _RBFMix

    stage = VNStage(n_filters=2, filter_size=3, n_rbf=5, v_max=1.0, alpha=0.1).double()
    weights = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    naive = sum(
        weights[:, j, None, None] * torch.exp(-((z - stage.centres[j]) ** 2) / (2 * stage.sigma**2)) for j in range(5)
    )
    mix = lambda z, w: _RBFMix.apply(z, w, stage.centres, stage.sigma)  # noqa: E731
    torch.testing.assert_close(mix(z, weights), naive)
    assert torch.autograd.gradcheck(mix, (z, weights))


def test_widened_unet_computes_the_same_and_its_new_channels_learn():
    torch.manual_seed(0)
    unet = UNet(1, 1, depth=2, width=3)
    optimiser = torch.optim.SGD(unet.parameters(), lr=0.1)
    x = torch.randn(3, 1, 20, 24)
    for _ in range(3):  # non-trivial batch-norm statistics
        optimiser.zero_grad()
        unet(x).square().mean().backward()
        optimiser.step()
    wide = widen_unet(unet, 5)
    assert wide.head.in_channels == 5 and wide.down[-1][0].out_channels == 20
    for mode in (False, True):
        unet.train(mode), wide.train(mode)
        torch.testing.assert_close(wide(x), unet(x), atol=1e-5, rtol=1e-5)
    wide(x).square().mean().backward()
    assert wide.head.weight.grad[0, 3:].abs().min() > 0  # the new channels' outgoing weights move
    with pytest.raises(ParameterError, match="narrower"):
        widen_unet(unet, 2)
