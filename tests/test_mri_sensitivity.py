"""Coil sensitivities estimated from the fully sampled k-space centre (ACS)."""

import pytest
import torch

from learnrecon import phantoms
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators import MRI, cartesian_mask, estimate_coil_maps, gaussian_coil_maps
from learnrecon.operators.sensitivity import acs_width
from learnrecon.solvers import tikhonov

SHAPE = (32, 32)


def _data(center_fraction, acceleration=4):
    maps = gaussian_coil_maps(4, SHAPE)
    x = phantoms.mri_phantoms("mri-ellipses", n=2, size=SHAPE, seed=0, max_phase=1.5).to(torch.complex128)
    x = x.reshape(2, 1, 1, *SHAPE)
    mask = cartesian_mask(SHAPE, acceleration, center_fraction, seed=0)
    op = MRI(mask, maps)
    return maps, x, mask, op, op(x)


def _aligned_error(estimated, maps, support):
    """‖Ŝ − S e^{iθ}‖ / ‖S‖ on the support, e^{iθ} the phase common to the coils that best aligns Ŝ with S."""
    phase = (maps.conj() * estimated).sum(dim=0)
    phase = phase / phase.abs().clamp_min(1e-30)
    error = (estimated - maps * phase).abs().pow(2).sum(dim=0)
    return float((error[support].sum() / maps.abs().pow(2).sum(dim=0)[support].sum()).sqrt())


def test_fully_sampled_k_space_gives_the_maps_exactly_up_to_the_image_phase():
    maps, x, mask, _, y = _data(1.0, acceleration=1)
    estimated = estimate_coil_maps(y[:, 0], mask)  # (2, 4, H, W)
    assert estimated.shape == (2, 4, *SHAPE) and estimated.dtype == torch.complex128
    for i in range(2):
        support = x[i, 0, 0].abs() > 0.1 * x[i].abs().max()
        phase = x[i, 0, 0] / x[i, 0, 0].abs().clamp_min(1e-30)  # Ŝ_c = S_c x / |x|
        torch.testing.assert_close(estimated[i][:, support], (maps * phase)[:, support], rtol=0, atol=1e-12)


def test_acs_estimate_recovers_gaussian_maps_and_sense_with_them_matches_the_true_maps():
    maps, x, mask, op, y = _data(0.25)  # 8 ACS columns of 32, 4x
    assert acs_width(mask) == 8
    estimated = estimate_coil_maps(y[:, 0], mask)
    for i in range(2):
        support = x[i, 0, 0].abs() > 0.1 * x[i].abs().max()
        assert _aligned_error(estimated[i], maps, support) < 0.15  # measured 0.129 and 0.124
        true_maps = tikhonov(y[i : i + 1], op, 1e-2, n_iter=30).abs()[0, 0, 0]
        with_estimate = tikhonov(y[i : i + 1], MRI(mask, estimated[i]), 1e-2, n_iter=30).abs()[0, 0, 0]
        difference = (with_estimate - true_maps)[support].norm() / true_maps[support].norm()
        assert difference < 0.15  # measured 0.080 and 0.100 (magnitudes: the common phase goes into the image)
    wrong = estimate_coil_maps(y[:, 0], mask)[:, torch.tensor([1, 2, 3, 0])]  # coils swapped: far off
    assert _aligned_error(wrong[0], maps, x[0, 0, 0].abs() > 0.1 * x[0].abs().max()) > 0.5


def test_hann_window_and_bad_input_named():
    _, _, mask, _, y = _data(0.25)
    hann = estimate_coil_maps(y[:, 0], mask, window="hann")
    assert torch.isfinite(hann).all() and not torch.allclose(hann, estimate_coil_maps(y[:, 0], mask))
    with pytest.raises(ParameterError, match="window"):
        estimate_coil_maps(y[:, 0], mask, window="kaiser")
    no_centre = mask.clone()
    no_centre[:, SHAPE[1] // 2] = False
    with pytest.raises(ParameterError, match=r"does not sample the k-space centre \(column 16 of 32\)"):
        estimate_coil_maps(y[:, 0], no_centre)
    with pytest.raises(ShapeError, match=r"mask has 16 columns but the k-space 32"):
        estimate_coil_maps(y[:, 0], mask[0, :16])
    with pytest.raises(ShapeError, match=r"mask has shape \(16, 32\)"):
        estimate_coil_maps(y[:, 0], mask[:16])
    points = mask.clone()
    points[0, 0] = not bool(points[0, 0])
    with pytest.raises(ParameterError, match="Cartesian line mask"):
        estimate_coil_maps(y[:, 0], points)
    with pytest.raises(ShapeError, match="complex multi-coil"):
        estimate_coil_maps(y[:, 0].abs(), mask)
