"""Phantoms, noise models and metrics against values known in closed form."""

import math

import pytest
import torch

from learnrecon import metrics
from learnrecon.errors import DeviceError, DTypeError, NonFiniteError, ParameterError, ShapeError
from learnrecon.noise import gaussian, poisson_prelog
from learnrecon.operators import Identity
from learnrecon.phantoms import (
    dival_ellipses,
    draw_ellipses,
    ellipses_image,
    random_ellipses,
    shepp_logan,
    shepp_logan_labels,
)


def test_shepp_logan_values_and_labels():
    x = shepp_logan(256)
    assert x.min() == 0 and x.max() == 1 and x.shape == (256, 256)
    # Row i is at y = 1 - (2i+1)/256; column j at x = -1 + (2j+1)/256.
    at = lambda px, py: x[round((1 - py) * 128 - 0.5), round((px + 1) * 128 - 0.5)].item()  # noqa: E731
    assert at(0.0, 0.0) == pytest.approx(0.2)  # brain: 1 - 0.8
    assert at(0.0, 0.35) == pytest.approx(0.3)  # + 0.1 ellipse
    assert at(0.22, 0.0) == pytest.approx(0.0)  # ventricle: 1 - 0.8 - 0.2
    assert at(0.0, 0.9) == pytest.approx(1.0)  # skull
    assert at(0.95, 0.95) == 0.0
    labels = shepp_logan_labels(256)
    assert labels.unique().tolist() == [0, 1, 2, 3, 4]
    assert bool((labels[x == 1.0] == 1).all()) and bool((x[labels == 0] == 0).all())
    assert shepp_logan(64, modified=False).max() == pytest.approx(2.0)


def test_random_ellipses_reproducible_and_independent_of_n():
    a, labels = random_ellipses(6, 32, seed=5, scaling="minmax", return_labels=True)
    b = random_ellipses(3, 32, seed=5, scaling="minmax")
    assert torch.equal(a[:3], b)
    assert not torch.equal(a, random_ellipses(6, 32, seed=6, scaling="minmax"))
    assert a.shape == (6, 1, 32, 32) and labels.shape == (6, 32, 32)
    assert torch.all(a.amin(dim=(1, 2, 3)) == 0) and torch.all(a.amax(dim=(1, 2, 3)) == 1)
    assert set(labels.unique().tolist()) <= {0, 1, 2}


def test_random_ellipses_count_is_poisson_mean():
    import numpy as np

    from learnrecon.phantoms import _random_ellipse_params

    counts = [_random_ellipse_params(np.random.default_rng([0, i]), 50).shape[0] for i in range(400)]
    assert sum(counts) / len(counts) == pytest.approx(50, abs=1.5)  # sd of the mean: sqrt(50/400) = 0.35


def test_supersampling_averages_fine_pixels():
    coarse = random_ellipses(2, 16, seed=1, supersample=4)
    assert coarse.shape == (2, 1, 16, 16)
    # A supersampled image takes values between its fine-grid extremes: more distinct grey levels.
    assert coarse.unique().numel() > random_ellipses(2, 16, seed=1).unique().numel()


def test_unscaled_ellipses_are_the_raw_sum_and_minmax_rescales_it():
    raw, labels = random_ellipses(4, 32, seed=7, return_labels=True)  # "none" is the default
    scaled = random_ellipses(4, 32, seed=7, scaling="minmax")
    assert bool((raw[:, 0][labels == 0] == 0).all())  # background (no ellipse) is 0, as in Adler & Öktem's code
    assert raw.min() < 0 < raw.max()  # values of either sign
    low, high = raw.amin(dim=(1, 2, 3), keepdim=True), raw.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(scaled, (raw - low) / (high - low))


def test_dival_ellipses_have_zero_background_and_span_the_unit_interval():
    x, labels = dival_ellipses(6, 32, seed=2, return_labels=True)
    assert x.shape == (6, 1, 32, 32) and torch.equal(x, dival_ellipses(6, 32, seed=2))
    assert bool((x[:, 0][labels == 0] == 0).all())  # outside every ellipse
    assert torch.all(x.amin(dim=(1, 2, 3)) == 0) and torch.all(x.amax(dim=(1, 2, 3)) == 1)
    assert torch.equal(draw_ellipses("dival-ellipses", n=2, size=32, seed=2, start=4), x[4:])
    assert torch.equal(
        draw_ellipses("ellipses", n=2, size=32, seed=2, scaling="none"),
        random_ellipses(2, 32, mean_ellipses=50, seed=2),
    )
    with pytest.raises(ParameterError, match="unknown ellipse phantom 'disks'"):
        draw_ellipses("disks", n=1, size=16)


def test_ellipses_are_rendered_as_the_full_grid_formula_gives():
    """Each ellipse is tested on its bounding box only: the image and the topmost index must equal the
    formula evaluated on every pixel, for ellipses large, tiny, rotated, and partly or wholly off the grid."""
    rng = torch.Generator().manual_seed(0)
    n = 60
    params = torch.stack(
        [
            torch.rand(n, generator=rng, dtype=torch.float64) - 0.5,
            0.005 + 0.6 * torch.rand(n, generator=rng, dtype=torch.float64) ** 2,
            0.005 + 0.6 * torch.rand(n, generator=rng, dtype=torch.float64) ** 2,
            3.0 * torch.rand(n, generator=rng, dtype=torch.float64) - 1.5,
            3.0 * torch.rand(n, generator=rng, dtype=torch.float64) - 1.5,
            2 * math.pi * torch.rand(n, generator=rng, dtype=torch.float64),
        ],
        dim=1,
    )
    h, w = 37, 52
    xs = -1 + (2 * torch.arange(w, dtype=torch.float64) + 1) / w
    ys = 1 - (2 * torch.arange(h, dtype=torch.float64) + 1) / h
    value, a, b, x0, y0, phi = (params[:, i, None, None] for i in range(6))
    dx, dy = xs[None, None, :] - x0, ys[None, :, None] - y0
    u = (dx * torch.cos(phi) + dy * torch.sin(phi)) / a
    v = (-dx * torch.sin(phi) + dy * torch.cos(phi)) / b
    inside = u * u + v * v <= 1
    expected_top = torch.where(inside.any(0), (inside * torch.arange(1, n + 1)[:, None, None]).amax(0) - 1, -1)
    image, top = ellipses_image(params, (h, w))
    assert torch.allclose(image, (inside * value).sum(0), rtol=0, atol=1e-12)
    assert torch.equal(top, expected_top) and inside.any(0).float().mean() > 0.5


def test_random_ellipses_bad_arguments():
    with pytest.raises(ParameterError):
        random_ellipses(-1, 16)
    with pytest.raises(ParameterError):
        random_ellipses(1, 16, supersample=0)
    with pytest.raises(ParameterError, match="unknown ellipse scaling 'unit'"):
        random_ellipses(1, 16, scaling="unit")


def test_gaussian_noise_levels():
    g = torch.Generator().manual_seed(0)
    y = torch.full((4, 1, 50, 60), 3.0, dtype=torch.float64)
    y[1] = 1.0
    noisy = gaussian(y, relative=0.05, generator=g)
    std = (noisy - y).flatten(1).std(dim=1)
    torch.testing.assert_close(std, torch.tensor([0.15, 0.05, 0.15, 0.15], dtype=torch.float64), rtol=0.05, atol=0)
    absolute = gaussian(y, sigma=0.2, generator=torch.Generator().manual_seed(1)) - y
    assert absolute.std().item() == pytest.approx(0.2, rel=0.03)
    again = gaussian(y, relative=0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_gaussian_noise_errors():
    y = torch.ones(2, 3)
    with pytest.raises(ParameterError, match="exactly one"):
        gaussian(y)
    with pytest.raises(ParameterError, match="exactly one"):
        gaussian(y, sigma=1.0, relative=0.1)
    with pytest.raises(ParameterError, match="sigma"):
        gaussian(y, sigma=-1.0)
    with pytest.raises(NonFiniteError):
        gaussian(torch.tensor([1.0, float("nan")]), sigma=1.0)


def test_poisson_prelog_statistics():
    mu_max, n0 = 81.35858, 4096.0
    y = torch.full((20000,), 0.01, dtype=torch.float64)  # transmission exp(-0.81) ≈ 0.44
    noisy = poisson_prelog(y, n0, mu_max, generator=torch.Generator().manual_seed(0))
    expected_counts = n0 * math.exp(-mu_max * 0.01)
    assert noisy.mean().item() == pytest.approx(0.01, rel=0.01)
    # Delta method: var(-log(N/N0)/μ) ≈ 1 / (E[N] μ²).
    assert noisy.var().item() == pytest.approx(1 / (expected_counts * mu_max**2), rel=0.05)
    dark = poisson_prelog(torch.full((10,), 1.0), 10.0, mu_max, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dark, torch.full((10,), -math.log(0.1 / 10) / mu_max))  # zero counts clamped at 0.1


def test_psnr_and_mse_closed_form():
    ref = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    ref[:, :, 0, 0] = 1.0
    x = ref + 0.1
    assert torch.allclose(metrics.mse(x, ref), torch.full((2,), 0.01, dtype=torch.float64))
    assert torch.allclose(metrics.psnr(x, ref), torch.full((2,), 20.0, dtype=torch.float64))
    assert metrics.psnr(x[0, 0], ref[0, 0], data_range=2.0).item() == pytest.approx(20 + 20 * math.log10(2))
    assert torch.allclose(metrics.relative_error(x, ref), torch.full((2,), math.sqrt(64 * 0.01), dtype=torch.float64))


def test_ssim_properties():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)
    assert torch.allclose(metrics.ssim(ref, ref), torch.ones(2, dtype=torch.float64))
    slightly = metrics.ssim(ref + 0.05 * torch.randn(ref.shape, generator=g, dtype=torch.float64), ref)
    very = metrics.ssim(ref + 0.3 * torch.randn(ref.shape, generator=g, dtype=torch.float64), ref)
    assert bool((very < slightly).all()) and bool((slightly < 1).all())
    # Constant images: SSIM = (2 a b + C1) / (a² + b² + C1) with C1 = (0.01 L)².
    a, b = torch.full((1, 1, 16, 16), 0.3, dtype=torch.float64), torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64)
    c1 = (0.01 * 1.0) ** 2
    assert metrics.ssim(a, b, data_range=1.0).item() == pytest.approx((2 * 0.15 + c1) / (0.09 + 0.25 + c1))


def test_ssim_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(40, 37, generator=g, dtype=torch.float64)
    x = ref + 0.1 * torch.randn(ref.shape, generator=g, dtype=torch.float64)
    expected = skimage_metrics.structural_similarity(
        x.numpy(),
        ref.numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=float(ref.max() - ref.min()),
    )
    assert metrics.ssim(x, ref).item() == pytest.approx(expected, abs=1e-10)


def test_dice_hand_computed():
    ref = torch.tensor([[0, 1, 1], [2, 2, 0]])
    seg = torch.tensor([[0, 1, 0], [2, 2, 2]])
    # class 1: 2·1/(1+2) = 2/3; class 2: 2·2/(3+2) = 4/5.
    assert metrics.dice(seg, ref).item() == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert metrics.dice(ref[None], ref[None]).tolist() == [1.0]
    with pytest.raises(DTypeError, match="integer label"):
        metrics.dice(seg.float(), ref)


def test_data_discrepancy():
    op = Identity((4, 4))
    x = torch.zeros(3, 4, 4)
    y = torch.ones(3, 4, 4)
    assert torch.allclose(metrics.data_discrepancy(x, y, op), torch.full((3,), 4.0))


def test_metric_input_errors():
    with pytest.raises(ShapeError, match="must match"):
        metrics.psnr(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 5))
    with pytest.raises(DTypeError, match="abs"):
        metrics.psnr(torch.ones(4, 4, dtype=torch.complex64), torch.ones(4, 4, dtype=torch.complex64))
    with pytest.raises(ShapeError, match="smaller than"):
        metrics.ssim(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 5, 5))
    with pytest.raises(DeviceError, match="different devices"):
        metrics.psnr(torch.ones(4, 4), torch.ones(4, 4, device="meta"))


def test_psnr_and_ssim_are_computed_per_image_and_averaged_over_channels():
    ref = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    ref[:, :, 0, 0] = 1.0  # data range 1 for both images
    x = ref + torch.tensor([0.1, 0.2], dtype=torch.float64).reshape(2, 1, 1, 1)
    expected = torch.tensor([10 * math.log10(1 / 0.01), 10 * math.log10(1 / 0.04)], dtype=torch.float64)
    torch.testing.assert_close(metrics.psnr(x, ref), expected)

    def constant_ssim(a: float, b: float) -> float:
        """SSIM of two constant images: (2ab + C1) / (a² + b² + C1), C1 = (0.01 L)²."""
        c1 = 1e-4
        return (2 * a * b + c1) / (a * a + b * b + c1)

    a = torch.tensor([0.3, 0.5], dtype=torch.float64).reshape(2, 1, 1, 1).expand(2, 1, 16, 16)
    b = torch.full((2, 1, 16, 16), 0.5, dtype=torch.float64)
    per_image = torch.tensor([constant_ssim(0.3, 0.5), 1.0], dtype=torch.float64)
    torch.testing.assert_close(metrics.ssim(a, b, data_range=1.0), per_image)
    a2 = torch.tensor([0.3, 0.5], dtype=torch.float64).reshape(1, 2, 1, 1).expand(3, 2, 16, 16)
    b2 = torch.full((3, 2, 16, 16), 0.5, dtype=torch.float64)
    channel_mean = torch.full((3,), (constant_ssim(0.3, 0.5) + 1.0) / 2, dtype=torch.float64)
    torch.testing.assert_close(metrics.ssim(a2, b2, data_range=1.0), channel_mean)


def test_relative_noise_is_scaled_by_the_mean_not_the_max_of_abs_y():
    y = torch.zeros(2, 1, 100, 100, dtype=torch.float64)
    y[0, :, :, :50] = 4.0  # mean |y| = 2, max 4
    y[1, :, :, :25] = -4.0  # mean |y| = 1, negative values
    noisy = gaussian(y, relative=0.05, generator=torch.Generator().manual_seed(0))
    std = (noisy - y).flatten(1).std(dim=1)
    torch.testing.assert_close(std, torch.tensor([0.1, 0.05], dtype=torch.float64), rtol=0.05, atol=0)


def test_modified_shepp_logan_matches_tofts_table_and_its_labels():
    from learnrecon.phantoms import shepp_logan, shepp_logan_labels

    table = [  # Toft / MATLAB phantom('Modified Shepp-Logan'): value, a, b, x0, y0, phi (degrees)
        (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
        (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
        (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
        (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
        (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
        (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
        (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
        (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
        (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
        (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
    ]
    n = 128
    centres = (2 * torch.arange(n, dtype=torch.float64) + 1) / n
    xs, ys = (-1 + centres)[None, :], (1 - centres)[:, None]
    expected = torch.zeros(n, n, dtype=torch.float64)
    for value, a, b, x0, y0, phi in table:
        c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        u = ((xs - x0) * c + (ys - y0) * s) / a
        w = (-(xs - x0) * s + (ys - y0) * c) / b
        expected += value * (u * u + w * w <= 1)
    torch.testing.assert_close(shepp_logan(n), expected.clamp_min(0), rtol=0, atol=1e-6)
    labels = shepp_logan_labels(n)

    def label_at(px: float, py: float) -> int:
        return int(labels[round((1 - py) * n / 2 - 0.5), round((px + 1) * n / 2 - 0.5)])

    points = [(0.0, 0.9), (0.0, -0.4), (0.22, 0.0), (-0.22, 0.0), (0.0, 0.35), (0.0, 0.1)]
    assert [label_at(*p) for p in points] == [1, 2, 3, 3, 4, 4]
