"""Learned models on complex MRI data: the two-channel convention (models/complex.py), every convolving model on
single- and multi-coil MRI (forward, backward, dtypes), and the MRI models' maths."""

import pytest
import torch

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models import SMALL_PARAMS, build_model, normalised
from learnrecon.models.complex import (
    RealChannels,
    from_channels,
    from_network,
    network_channels,
    network_operator,
    to_channels,
    to_network,
)
from learnrecon.models.varnet import E2EVarNet, MRIVariationalNetwork, VarNetCascade, coil_expand, coil_reduce
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.base import adjoint_mismatch
from learnrecon.operators.mri import MRI, cartesian_mask, gaussian_coil_maps

N = 16
MASK = cartesian_mask((N, N), 4, 0.08, seed=0)
OPS = {"single-coil": MRI(MASK), "multi-coil": MRI(MASK, gaussian_coil_maps(4, (N, N)))}
CONVOLVING = ("fbpconvnet", "lgd", "glgd", "proximal", "lpd", "vn", "vn-mri", "e2e-varnet")


def _complex_images(op, n=2, seed=0, dtype=torch.complex64):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 1, *op.domain_shape)
    real = torch.rand(shape, generator=gen, dtype=torch.float64)
    return (real * torch.exp(1j * torch.rand(shape, generator=gen, dtype=torch.float64))).to(dtype)


def test_channels_are_real_then_imaginary_and_round_trip():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 6, dtype=torch.complex128, generator=gen)
    t = to_channels(z, (5, 6), True)
    assert t.shape == (3, 2, 5, 6) and t.dtype == torch.float64
    assert torch.equal(t[:, 0], z.real) and torch.equal(t[:, 1], z.imag)
    assert torch.equal(from_channels(t, (5, 6), True), z)
    coils = torch.randn(2, 4, 5, 6, dtype=torch.complex64, generator=gen)  # (batch, coils, h, w)
    t = to_channels(coils, (4, 5, 6), True)
    assert t.shape == (2, 8, 5, 6) and torch.equal(t[:, 2 * 3 + 1], coils[:, 3].imag)
    assert torch.equal(from_channels(t, (4, 5, 6), True), coils)
    real = torch.randn(2, 5, 6, generator=gen)
    assert torch.equal(from_channels(to_channels(real, (5, 6), False), (5, 6), False), real)
    with pytest.raises(ShapeError, match=r"needs \(\.\.\., 8, \*\(5, 6\)\)"):
        from_channels(t[:, :7], (4, 5, 6), True)


def test_network_channels_of_the_operators():
    assert network_channels(OPS["single-coil"]) == (2, 2)
    assert network_channels(OPS["multi-coil"]) == (2, 8)
    assert network_channels(ParallelBeam2D(N, 5)) == (1, 1)
    assert network_channels(None) == (1, 1)
    tomo = ParallelBeam2D(N, 5)
    assert network_operator(tomo) is tomo  # a real 2-D operator is its own view


@pytest.mark.parametrize("kind", OPS)
def test_two_channel_view_passes_the_adjoint_test_in_float64(kind):
    view = RealChannels(OPS[kind])
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, *view.domain_shape, dtype=torch.float64, generator=gen)
    y = torch.randn(3, *view.range_shape, dtype=torch.float64, generator=gen)
    assert not (view.domain_complex or view.range_complex)
    assert adjoint_mismatch(view, x, y) <= 1e-10
    assert view.norm() == pytest.approx(OPS[kind].norm())
    # The view is the operator: A x in channels equals the channels of A x.
    z = _complex_images(OPS[kind], 3, dtype=torch.complex128)
    op = OPS[kind]
    torch.testing.assert_close(view(to_network(z, op, "images")), to_network(op(z), op, "data"))
    assert torch.equal(from_network(to_network(z, op, "images"), op, "images"), z)
    assert torch.equal(from_network(to_network(op(z), op), op, "data"), op(z))


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("name", CONVOLVING)
def test_every_convolving_model_reconstructs_and_trains_on_mri(name, kind):
    op = OPS[kind]
    params = SMALL_PARAMS[name] | ({"init": "auto"} if name == "fbpconvnet" else {})
    model = build_model(name, params, op=op)
    x = _complex_images(op)
    y = op(x)
    x_hat = model(y, op)
    assert x_hat.shape == x.shape and x_hat.dtype == torch.complex64
    loss = (x_hat - x).abs().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # Batch and channel dimensions are independent problems, as for real operators.
    model.eval()
    with torch.no_grad():
        joint = model(torch.stack([y[:, 0], 2 * y[:, 0]], dim=1), op)
        torch.testing.assert_close(joint[:, 1:], model(2 * y, op), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", OPS)
def test_untrained_residual_models_start_at_the_zero_filled_image(kind):
    """An untrained LGD's update blocks end in a zero layer, so it returns its initial image, the zero-filled
    inverse FFT: the complex values go through the two channels and back unchanged."""
    op = OPS[kind]
    y = op(_complex_images(op))
    lgd = build_model("lgd", SMALL_PARAMS["lgd"], op=op)
    with torch.no_grad():
        torch.testing.assert_close(lgd(y, op), op.pseudo_inverse(y))


@pytest.mark.parametrize("kind", OPS)
def test_vn_stage_without_potentials_is_a_gradient_step_through_the_coils(kind):
    """With the potentials' weights at zero a VN stage is x − λ A*(A x − y) on the normalised problem, the
    multi-coil data term's gradient; its filters have a real and an imaginary part."""
    op = OPS[kind]
    vn = build_model("vn-mri", {"n_stages": 1, "n_filters": 3, "filter_size": 5, "n_rbf": 5, "init": "zero"}, op=op)
    assert isinstance(vn, MRIVariationalNetwork) and vn.steps[0].filters.shape == (3, 2, 5, 5)
    assert MRIVariationalNetwork().steps[0].filters.shape[:1] == (48,)  # Hammernik et al.'s 48 filters of 11x11
    with torch.no_grad():
        vn.steps[0].weights.zero_()
        vn.steps[0].log_lam.fill_(-0.5)
    y = op(_complex_images(op, dtype=torch.complex128)).to(torch.complex64)
    y_n, op_n = normalised(y, op)
    lam = float(torch.tensor(-0.5).exp())
    expected = -lam * op_n.H(-y_n)  # from x = 0: x − λ A*(A x − y) = λ A* y
    with torch.no_grad():
        torch.testing.assert_close(vn(y, op), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", OPS)
def test_soft_data_consistency_scales_the_kspace_residual_by_one_minus_eta(kind):
    """Without its U-Net a cascade is k − η M(k − ỹ): the residual on the sampled lines becomes (1 − η) times
    what it was and the unsampled k-space is kept."""
    op = OPS[kind]
    gen = torch.Generator().manual_seed(2)
    k = torch.randn(2, *op.range_shape, dtype=torch.complex128, generator=gen)
    y = op(_complex_images(op, dtype=torch.complex128))[:, 0]
    cascade = VarNetCascade(4, 1, regulariser=False).double()
    with torch.no_grad():
        cascade.dc_weight.fill_(0.3)
        k_next = cascade(k, y, op)
    mask = op.mask
    torch.testing.assert_close(torch.where(mask, k_next - y, 0), 0.7 * torch.where(mask, k - y, 0))
    torch.testing.assert_close(torch.where(mask, 0, k_next), torch.where(mask, 0, k))
    # R is the adjoint of E, and R E = I when the sensitivities sum to one in square.
    x = _complex_images(op, dtype=torch.complex128)[:, 0]
    torch.testing.assert_close(coil_reduce(op, coil_expand(op, x)), x)
    lhs = torch.vdot(coil_expand(op, x).flatten(), k.flatten())
    torch.testing.assert_close(lhs, torch.vdot(x.flatten(), coil_reduce(op, k).flatten()))


def test_e2e_varnet_reconstructs_complex_images_and_refuses_other_operators():
    op = OPS["multi-coil"]
    model = E2EVarNet(n_cascades=2, width=4, depth=1)
    y = op(_complex_images(op))
    with torch.no_grad():
        x_hat = model(y, op)
    assert x_hat.shape == (2, 1, *op.domain_shape) and x_hat.is_complex()
    with pytest.raises(ParameterError, match="works in the k-space of a Cartesian MRI operator"):
        model(torch.zeros(1, 1, 5, N), ParallelBeam2D(N, 5))


def test_shipped_mri_models_load_with_their_operator_and_beat_the_zero_filled_image():
    from learnrecon.data.simulate import measure
    from learnrecon.evaluation import score
    from learnrecon.models import pretrained
    from learnrecon.operators.registry import build_operator
    from learnrecon.phantoms import mri_phantoms

    for name, margin in (("vn-mri", 3.0), ("e2e-varnet-mri", 0.0)):
        model = pretrained(name)
        assert model.provenance["step"] > 0 and model.provenance["config"]["data"]["phantom"]["type"] == "mri-ellipses"
        op = build_operator(model.provenance["operator"])
        x = mri_phantoms("mri-ellipses", n=4, size=64, seed=4321, max_phase=1.5)[:, :, None]
        y = measure(op, x, "gaussian:0.01", seed=4321)
        with torch.no_grad():
            learned = float(score(model(y, op), x).psnr.mean())
        assert learned > float(score(op.pseudo_inverse(y), x).psnr.mean()) + margin, name
