"""Operators with a differentiable physical parameter, and calibration from data alone."""

import pytest
import torch

from learnrecon import phantoms
from learnrecon.calibration import edge_width, estimate_blur_width, estimate_detector_shift
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.noise import gaussian
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.base import adjoint_mismatch
from learnrecon.operators.blur import Blur, gaussian_kernel
from learnrecon.operators.calibrated import GaussianBlur, ShiftedDetector, fourier_shift

RAY = ParallelBeam2D(32, 16)


def _x(n, size=32, seed=0):
    return phantoms.draw_ellipses("ellipses", n=n, size=size, seed=seed).double()


@pytest.mark.parametrize("op", [ShiftedDetector(RAY, 0.7), ShiftedDetector(RAY, -2.25), GaussianBlur(32, 1.3)])
def test_adjoint(op):
    x = torch.randn(2, *op.domain_shape, dtype=torch.float64)
    y = torch.randn(2, *op.range_shape, dtype=torch.float64)
    assert adjoint_mismatch(op, x, y) < 1e-13


def test_fourier_shift_integer_and_composition():
    v = torch.zeros(1, 15, dtype=torch.float64)
    v[0, 5] = 1
    torch.testing.assert_close(fourier_shift(v, torch.tensor(3.0)), torch.roll(v, 3))
    g = torch.exp(-((torch.arange(31.0, dtype=torch.float64) - 15) ** 2) / 8)[None]
    twice = fourier_shift(fourier_shift(g, torch.tensor(0.4)), torch.tensor(0.9))
    torch.testing.assert_close(twice, fourier_shift(g, torch.tensor(1.3)), atol=1e-6, rtol=0)


def test_gaussian_blur_matches_blur_and_is_differentiable_in_sigma():
    x = _x(1)
    reference = Blur(gaussian_kernel(1.3, 2 * 6 + 1), 32)
    torch.testing.assert_close(GaussianBlur(32, 1.3, radius=6)(x), reference(x))
    sigma = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: GaussianBlur(8, s, radius=5)(x[..., :8, :8]), (sigma,))
    shift = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: ShiftedDetector(RAY, d)(x), (shift,))


def test_detector_shift_recovered_to_a_twentieth_of_a_cell():
    ray = ParallelBeam2D(64, 30)
    x = _x(32, size=64, seed=1)
    assert abs(estimate_detector_shift(ray(x), ray)) < 1e-3  # noise-free ideal data: no shift
    for true in (0.6, -1.7):
        y = gaussian(ShiftedDetector(ray, true)(x), relative=0.02, generator=torch.Generator().manual_seed(0))
        assert abs(estimate_detector_shift(y, ray) - true) < 0.05


def test_blur_width_recovered_within_five_percent():
    x, prior = _x(8, size=64, seed=2), _x(16, size=64, seed=9)
    for true in (1.2, 2.0):
        y = GaussianBlur(64, true)(x)
        estimate = estimate_blur_width(y, prior, widths=[0.6 + 0.2 * i for i in range(12)])
        assert abs(estimate / true - 1) < 0.05, (true, estimate)
    # without the prior's response curve the edge estimate is biased upwards
    assert edge_width(GaussianBlur(64, 1.2)(x)) > 1.2 * 1.05


def test_bad_input():
    with pytest.raises(ParameterError, match="sigma"):
        GaussianBlur(32, -1.0)
    with pytest.raises(ParameterError, match="shift"):
        ShiftedDetector(RAY, float("nan"))
    with pytest.raises(ShapeError):
        estimate_detector_shift(torch.zeros(1, 1, 5, 5), RAY)
    with pytest.raises(ParameterError, match="no edges"):
        edge_width(torch.zeros(1, 1, 16, 16))
