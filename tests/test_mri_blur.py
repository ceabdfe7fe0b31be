"""MRI (single and multi-coil), Cartesian masks, blur kernels and blur operators."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from learnrecon.errors import DTypeError, ParameterError, ShapeError
from learnrecon.operators.blur import Blur, gaussian_kernel, motion_kernel
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.mri import MRI, cartesian_mask, centred_fft2, gaussian_coil_maps
from learnrecon.operators.registry import build_operator, operator_config
from learnrecon.operators.wavelet import Wavelet2D


def complex_image(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(
        torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)
    )


def test_full_mask_is_unitary():
    op = MRI(torch.ones(12, 10))
    x = complex_image(3, 12, 10)
    torch.testing.assert_close(op.H(op(x)), x)
    torch.testing.assert_close(op(x).norm(), x.norm())
    torch.testing.assert_close(
        op(x), torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    )


def test_multicoil_with_normalised_maps_is_an_isometry():
    maps = gaussian_coil_maps(4, (12, 12))
    torch.testing.assert_close((maps.abs() ** 2).sum(0), torch.ones(12, 12, dtype=torch.float64))
    op = MRI(torch.ones(12, 12), coil_maps=maps)
    x = complex_image(2, 1, 12, 12)
    assert op(x).shape == (2, 4, 12, 12)
    torch.testing.assert_close(op.H(op(x)), x)


def test_mask_zeroes_unsampled_kspace():
    mask = cartesian_mask((16, 16), 4, 0.125, seed=0)
    k = MRI(mask)(complex_image(16, 16))
    assert bool((k[~mask] == 0).all()) and bool((k[mask] != 0).all())
    torch.testing.assert_close(k[mask], centred_fft2(complex_image(16, 16))[mask])


@pytest.mark.parametrize(("acceleration", "center_fraction"), [(4, 0.08), (8, 0.04), (2, 0.2), (1, 0.5)])
def test_cartesian_mask_statistics(acceleration, center_fraction):
    w = 320
    mask = cartesian_mask((64, w), acceleration, center_fraction, seed=3)
    lines = mask[0]
    assert bool((mask == lines[None]).all())  # whole phase-encode lines
    assert int(lines.sum()) == round(w / acceleration)
    n_centre = round(w * center_fraction)
    start = (w - n_centre + 1) // 2
    assert bool(lines[start : start + n_centre].all())
    assert torch.equal(mask, cartesian_mask((64, w), acceleration, center_fraction, seed=3))
    if acceleration > 1:
        assert not torch.equal(mask, cartesian_mask((64, w), acceleration, center_fraction, seed=4))


def test_mri_autograd_uses_adjoint():
    op = MRI(cartesian_mask((8, 8), 2, 0.25), coil_maps=gaussian_coil_maps(3, (8, 8)))
    x = complex_image(1, 1, 8, 8).requires_grad_(True)
    y = complex_image(1, 3, 8, 8, seed=1)
    (op(x) - y).abs().pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * op.H(op(x.detach()) - y))


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: MRI(torch.ones(4, 4, 4)), ShapeError, r"\(H, W\)"),
        (lambda: MRI(torch.full((4, 4), 0.5)), ParameterError, "only 0 and 1"),
        (lambda: MRI(torch.ones(4, 4), coil_maps=torch.ones(2, 4, 5, dtype=torch.complex64)), ShapeError, "n_coils"),
        (lambda: cartesian_mask((8, 8), 0.5), ParameterError, "acceleration"),
        (lambda: cartesian_mask((8, 8), 4, 1.5), ParameterError, "center_fraction"),
        (lambda: gaussian_coil_maps(0, (8, 8)), ParameterError, "n_coils"),
    ],
)
def test_mri_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_mri_refuses_real_images():
    with pytest.raises(DTypeError, match="complex data is expected.*complex64"):
        MRI(torch.ones(4, 4))(torch.ones(4, 4))


def test_kernels_are_normalised():
    for k in (gaussian_kernel(1.5), gaussian_kernel(0.7, size=7), motion_kernel(7, 0.3), motion_kernel(4, 2.0)):
        assert k.sum().item() == pytest.approx(1.0) and k.shape[0] % 2 == 1 and bool((k >= 0).all())
    assert gaussian_kernel(1.5).shape == (11, 11)
    horizontal = motion_kernel(5, 0.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum().item() == pytest.approx(1.0)  # all mass on the centre row


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_blur_of_a_delta_is_the_kernel(boundary):
    k = motion_kernel(5, 0.6)
    r = k.shape[0] // 2
    op = Blur(k, 15, boundary)
    delta = torch.zeros(15, 15, dtype=torch.float64)
    delta[7, 7] = 1
    out = op(delta)
    torch.testing.assert_close(out[7 - r : 8 + r, 7 - r : 8 + r], k)
    assert out.sum().item() == pytest.approx(1.0)


def test_blur_matches_scipy():
    k = gaussian_kernel(1.3)
    x = torch.rand(20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zero = scipy.ndimage.convolve(x.numpy(), k.numpy(), mode="constant")
    wrap = scipy.ndimage.convolve(x.numpy(), k.numpy(), mode="wrap")
    np.testing.assert_allclose(Blur(k, (20, 24))(x).numpy(), zero, atol=1e-12)
    np.testing.assert_allclose(Blur(k, (20, 24), "periodic")(x).numpy(), wrap, atol=1e-12)


def test_blur_autograd_and_config():
    op = Blur(gaussian_kernel(1.0), 10)
    x = torch.rand(2, 10, 10, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 10, 10, dtype=torch.float64)
    ((op(x) - y) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * op.H(op(x.detach()) - y))
    torch.testing.assert_close(build_operator(operator_config(op))(x.detach()), op(x.detach()))


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Blur(torch.ones(4, 3), 8), ShapeError, "odd side lengths"),
        (lambda: Blur(torch.ones(3, 3), 8, boundary="reflect"), ParameterError, "boundary"),
        (lambda: Blur(torch.ones(9, 9), 5, boundary="periodic"), ShapeError, "larger than the image"),
        (lambda: Blur(torch.full((3, 3), float("nan")), 8), Exception, "NaN"),
        (lambda: gaussian_kernel(-1.0), ParameterError, "sigma"),
        (lambda: motion_kernel(0, 0.0), ParameterError, "length"),
    ],
)
def test_blur_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


@pytest.mark.parametrize("n", [5, 7])
def test_centred_fft_puts_the_zero_frequency_in_the_centre_for_odd_sizes(n):
    k = MRI(torch.ones(n, n))(torch.ones(n, n, dtype=torch.complex128))
    expected = torch.zeros(n, n, dtype=torch.complex128)
    expected[n // 2, n // 2] = n  # the orthonormal DFT of a constant: sqrt(n²) at frequency zero
    torch.testing.assert_close(k, expected)


def test_mri_acceleration_counts_samples():
    mask = torch.zeros(8, 8)
    mask[:, [3, 4]] = 1
    assert MRI(mask).acceleration == 4.0


def test_motion_kernel_angle_is_counter_clockwise_with_row_zero_at_the_top():
    k = motion_kernel(5, math.pi / 4)
    n = k.shape[0]
    c = n // 2
    assert k[:c, c + 1 :].sum() > 0.3 and k[c + 1 :, :c].sum() > 0.3  # up and to the right (row 0 at the top)
    assert k[:c, :c].sum() == 0 and k[c + 1 :, c + 1 :].sum() == 0


def test_wavelet_approximation_holds_the_lowpass_band():
    W = Wavelet2D(16, "db2", levels=2)
    c = W(torch.ones(16, 16, dtype=torch.float64))
    mask = W.approximation_mask()
    assert c[~mask].abs().max() < 1e-12  # a constant image has no details
    torch.testing.assert_close(c[mask], torch.full((16,), 4.0, dtype=torch.float64))  # 2 per level in 2-D


def test_zero_boundary_blur_convolves_an_asymmetric_kernel():
    k = torch.tensor([[0.0, 0.1, 0.0], [0.0, 0.2, 0.6], [0.0, 0.0, 0.1]], dtype=torch.float64)
    x = torch.rand(9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = scipy.ndimage.convolve(x.numpy(), k.numpy(), mode="constant")
    torch.testing.assert_close(Blur(k, (9, 11))(x), torch.from_numpy(expected))


def test_periodic_blur_norm_of_an_antisymmetric_kernel():
    k = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, -0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)  # k̂ = i·sin ω
    op = Blur(k, 8, boundary="periodic")
    assert op.norm() == pytest.approx(torch.linalg.matrix_norm(op.to_dense(), 2).item(), rel=1e-9)
    assert op.norm() == pytest.approx(1.0)


def test_gradient_norm_bound_bounds_the_norm():
    op = FiniteDifference2D(16)
    exact = torch.linalg.matrix_norm(op.to_dense(), 2).item()  # 2·√2·cos(π/32) ≈ 2.815
    assert exact <= op.norm_bound() and op.norm_bound() == pytest.approx(math.sqrt(8.0))
