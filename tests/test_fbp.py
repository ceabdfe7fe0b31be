"""Filtered backprojection: scaling, accuracy on Shepp–Logan, filters, fan beam, bad input."""

import math

import pytest
import torch

from learnrecon.errors import DTypeError, NonFiniteError, ParameterError, ShapeError
from learnrecon.metrics import psnr
from learnrecon.operators import FanBeam2D, Identity, ParallelBeam2D
from learnrecon.operators.fbp import filter_sinogram, ramp_filter
from learnrecon.phantoms import shepp_logan
from learnrecon.solvers import FILTERS, fbp


def blob(n, extent, centre=(0.2, 0.1), width=0.08):
    h = extent / n
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * h - extent / 2
    x, y = c[None, :] / extent, -c[:, None] / extent
    return torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * width**2))


@pytest.mark.parametrize("extent", [64.0, 0.26, 1000.0])
@pytest.mark.parametrize("geometry", ["parallel", "parallel-coarse-detector", "fan"])
def test_fbp_inverts_smooth_images_in_physical_units(geometry, extent):
    n = 64
    if geometry == "parallel":  # backprojection by the adjoint matrix
        op = ParallelBeam2D(n, 90, image_extent=extent)
    elif geometry == "parallel-coarse-detector":  # pixel-driven backprojection
        op = ParallelBeam2D(n, 90, n_detectors=61, image_extent=extent, detector_spacing=1.5 * extent / n)
    else:
        op = FanBeam2D(n, 180, 121, source_distance=1.5 * extent, detector_distance=extent, image_extent=extent)
    x = blob(n, extent)
    x_hat = fbp(op(x), op)
    assert (x_hat - x).abs().max() < 0.04  # peak 1; the residual is the interpolation blur of a 5-pixel blob
    assert x_hat.mean() / x.mean() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("size", "n_angles", "filter_name", "min_psnr"),
    [(128, 30, "ram-lak", 18.6), (128, 30, "hann", 19.9), (256, 180, "ram-lak", 27.8)],
)
def test_fbp_shepp_logan_psnr(size, n_angles, filter_name, min_psnr):
    """Noiseless modified Shepp–Logan; measured 18.65 / 19.95 / 27.88 dB (ASTRA's FBP: ~21 and ~30.5 dB)."""
    op = ParallelBeam2D(size, n_angles)
    x = shepp_logan(size)
    assert psnr(fbp(op(x), op, filter=filter_name), x, data_range=1.0) > min_psnr


def test_fan_fbp_shepp_logan_psnr():
    """Full-turn fan beam, 360 angles: measured 30.33 dB."""
    op = FanBeam2D(128, 360, 300, source_distance=256.0, detector_distance=128.0)
    x = shepp_logan(128)
    assert psnr(fbp(op(x), op), x, data_range=1.0) > 30.0


def test_filters_trade_noise_for_resolution():
    op = ParallelBeam2D(64, 60)
    noise = torch.randn(op.range_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    energies = [fbp(noise, op, filter=f).norm().item() for f in FILTERS]
    assert energies[0] == max(energies)  # Ram-Lak passes the most high-frequency noise
    cut = fbp(noise, op, frequency_scaling=0.5).norm().item()
    assert cut < energies[0]


def test_fbp_batched_and_dtype():
    op = ParallelBeam2D(32, 20)
    x = torch.rand(3, 2, 32, 32)
    y = op(x)
    out = fbp(y, op)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out[1, 1], fbp(y[1, 1], op))


def test_fbp_on_subset_uses_its_angles():
    op = ParallelBeam2D(64, 120)
    x = blob(64, 64.0)
    half = op[::2]
    assert half.angle_weights().sum().item() == pytest.approx(torch.pi)
    assert (fbp(half(x), half) - x).abs().max() < 0.05


def test_bad_input():
    op = ParallelBeam2D(16, 6)
    y = op(torch.rand(16, 16))
    with pytest.raises(ParameterError, match="unknown FBP filter 'hanning'.*hann"):
        fbp(y, op, filter="hanning")
    with pytest.raises(ParameterError, match="frequency_scaling"):
        fbp(y, op, frequency_scaling=0.0)
    bad = y.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        fbp(bad, op)
    with pytest.raises(ShapeError, match="expects"):
        fbp(y[:, :-1], op)
    with pytest.raises(DTypeError, match="real"):
        fbp(y.to(torch.complex64), op)
    with pytest.raises(ParameterError, match="ParallelBeam2D or FanBeam2D"):
        fbp(torch.rand(16, 16), Identity((16, 16)))


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


@pytest.mark.parametrize("filter_name", FILTERS)
@pytest.mark.parametrize("scaling", [1.0, 0.5])
def test_filter_windows_are_the_textbook_ones(filter_name, scaling):
    ramp = ramp_filter(20, 0.5)
    response = ramp_filter(20, 0.5, filter_name, scaling)
    omega = torch.arange(ramp.numel(), dtype=torch.float64) / (ramp.numel() - 1) / scaling  # 1 = cut-off
    window = {
        "ram-lak": torch.ones_like(omega),
        "shepp-logan": torch.where(omega > 0, torch.sin(math.pi * omega / 2) / (math.pi * omega / 2), 1.0),
        "cosine": torch.cos(math.pi * omega / 2),
        "hann": 0.5 + 0.5 * torch.cos(math.pi * omega),
        "hamming": 0.54 + 0.46 * torch.cos(math.pi * omega),
    }[filter_name]
    torch.testing.assert_close(response, ramp * torch.where(omega <= 1, window, 0.0))


def test_filtering_is_a_linear_not_circular_convolution_with_the_discrete_ramp():
    n, ds = 12, 0.5
    y = torch.randn(3, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lag = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).double()
    g = torch.where(lag % 2 == 1, -1 / (math.pi * lag * ds) ** 2, torch.zeros((), dtype=torch.float64))
    g = torch.where(lag == 0, 1 / (4 * ds**2), g)
    expected = ds * y @ g.T  # q[i] = Δs Σ_j g(i − j) y[j]
    torch.testing.assert_close(filter_sinogram(y, ramp_filter(n, ds)), expected, rtol=0, atol=1e-12)
