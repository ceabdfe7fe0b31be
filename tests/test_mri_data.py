"""MRI data: fastMRI-style masks, complex phantoms with a smooth phase, MRI training sections, the fastMRI reader."""

import math

import h5py
import numpy as np
import pytest
import torch

from learnrecon import phantoms
from learnrecon.config import from_dict
from learnrecon.data.fastmri import FastMRISlices, center_crop, rss, zero_filled
from learnrecon.data.simulate import as_images
from learnrecon.data.sources import make_training_data, make_validation_data, phantom_source
from learnrecon.errors import DataFileError, DTypeError, ParameterError, ShapeError
from learnrecon.models.hub import load_model
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.mri import MRI, cartesian_mask, centred_fft2, fastmri_center_fraction, gaussian_coil_maps
from learnrecon.training import Trainer


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize(("acceleration", "fraction"), [(4, 0.08), (8, 0.04)])
def test_fastmri_masks_sample_the_centre_and_about_w_over_r_columns(kind, acceleration, fraction):
    assert fastmri_center_fraction(acceleration) == pytest.approx(fraction)
    w = 128
    mask = cartesian_mask((64, w), acceleration, fraction, seed=3, kind=kind)
    columns = mask[0]
    assert bool((mask == columns).all())  # whole phase-encode lines
    n_centre = round(w * fraction)
    start = (w - n_centre + 1) // 2
    assert bool(columns[start : start + n_centre].all())
    if kind == "random":
        assert int(columns.sum()) == round(w / acceleration)
    else:
        assert abs(int(columns.sum()) - w / acceleration) <= 2
        outside = columns.clone()
        outside[start : start + n_centre] = False
        gaps = torch.diff(outside.nonzero().flatten()).double()
        spacing = float(gaps.min())
        assert bool(((gaps - spacing * (gaps / spacing).round()).abs() <= 1).all())  # equispaced up to rounding
    assert torch.equal(mask, cartesian_mask((64, w), acceleration, fraction, seed=3, kind=kind))


def test_mri_config_takes_the_mask_type_and_fastmri_centre():
    op = MRI.from_config(64, acceleration=8, mask_type="equispaced", mask_seed=1)
    assert torch.equal(op.mask, cartesian_mask((64, 64), 8, 0.04, seed=1, kind="equispaced"))
    assert torch.equal(MRI.from_config(**_without_type(op.config())).mask, op.mask)
    with pytest.raises(ParameterError, match="unknown mask type 'poisson'; choose one of random, equispaced"):
        MRI.from_config(64, acceleration=4, mask_type="poisson")


def _without_type(cfg):
    return {k: v for k, v in cfg.items() if k != "type"}


def test_complex_phantoms_have_a_smooth_bounded_phase_and_dival_magnitudes():
    x = phantoms.mri_phantoms("mri-ellipses", n=3, size=48, seed=5, max_phase=2.0)
    assert x.dtype == torch.complex64 and x.shape == (3, 1, 48, 48)
    torch.testing.assert_close(x.abs(), phantoms.dival_ellipses(3, 48, seed=5), atol=1e-6, rtol=1e-6)
    phase = torch.stack([phantoms.smooth_phase(np.random.default_rng([5, i, 1]), 48, 2.0) for i in range(3)])
    assert float(phase.abs().max()) == pytest.approx(2.0)
    # One period at most across the image: neighbouring pixels differ by at most 3 · π · 2 / 48 · max_phase-scale.
    assert float(torch.diff(phase, dim=-1).abs().max()) < 0.5
    inside = x.abs() > 0.05
    torch.testing.assert_close(x.angle()[inside], phase[:, None].float()[inside], atol=1e-5, rtol=0)
    # Image i does not depend on the chunk it is drawn in.
    torch.testing.assert_close(
        phantoms.mri_phantoms("mri-ellipses", n=1, size=48, seed=5, start=2, max_phase=2.0), x[2:]
    )
    head = phantoms.mri_phantoms("mri-shepp-logan", n=2, size=32, seed=0)
    torch.testing.assert_close(head.abs()[0, 0], phantoms.shepp_logan(32).float(), atol=1e-6, rtol=0)
    assert not torch.allclose(head[0], head[1])  # the phases differ


def test_complex_phantoms_are_refused_by_a_real_operator():
    x = phantoms.mri_phantoms("mri-ellipses", n=1, size=16, seed=0)
    with pytest.raises(DTypeError, match="phantoms are complex .* ParallelBeam2D's images are real"):
        as_images(x, ParallelBeam2D(16, 4))
    with pytest.raises(ParameterError, match="max_phase must be a number of radians"):
        phantom_source({"type": "mri-ellipses", "max_phase": "pi"})
    with pytest.raises(ParameterError, match="mri-shepp-logan takes supersample, max_phase, not 'scaling'"):
        phantom_source({"type": "mri-shepp-logan", "scaling": "minmax"})


MRI_CONFIG = {
    "model": {"name": "vn", "params": {"n_stages": 2, "n_filters": 4, "filter_size": 5, "n_rbf": 9}},
    "data": {
        "operator": {"type": "MRI", "image_size": 24, "acceleration": 4, "n_coils": 3},
        "phantom": {"type": "mri-ellipses", "max_phase": 1.0},
        "noise": "gaussian:0.001",
        "n_validation": 2,
    },
    "training": {"steps": 2, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "figure_every": 2,
                 "log_every": 1, "threads": 1},
}  # fmt: skip


def test_a_data_section_describes_mri_training_and_a_model_trains_and_reloads(tmp_path):
    config = from_dict(MRI_CONFIG)
    data, op = make_training_data(config.data)
    assert isinstance(op, MRI) and op.coil_maps is not None
    x, y = data.batch(torch.arange(2))
    assert x.shape == (2, 1, 1, 24, 24) and x.is_complex() and y.shape == (2, 1, 3, 24, 24) and y.is_complex()
    validation = make_validation_data(config.data, op)
    assert validation.x.is_complex()
    trainer = Trainer.from_config(config, tmp_path / "run")
    trainer.progress = False
    trainer.train()
    trainer.close()
    model = load_model(tmp_path / "run" / "last.safetensors")
    assert model.channels == (2, 6)
    with torch.no_grad():
        x_hat = model(validation.y, op)
    assert x_hat.shape == validation.x.shape and x_hat.is_complex()


def _fastmri_file(path, n_slices=3, coils=4, size=(20, 16), target=True, mask=False, kspace=True):
    gen = np.random.default_rng(0)
    shape = (n_slices, coils, *size) if coils else (n_slices, *size)
    values = (gen.standard_normal(shape) + 1j * gen.standard_normal(shape)).astype(np.complex64)
    with h5py.File(path, "w") as f:
        if kspace:
            f.create_dataset("kspace", data=values, chunks=(1, *shape[1:]))
        if target:
            name = "reconstruction_rss" if coils else "reconstruction_esc"
            f.create_dataset(name, data=gen.random((n_slices, 8, 8)).astype(np.float32))
        if mask:
            f.create_dataset("mask", data=(np.arange(size[1]) % 4 == 0))
            f.attrs["acceleration"] = 4
        f.create_dataset("ismrmrd_header", data=b"<ismrmrdHeader/>")
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = np.float64(1.5)
        f.attrs["norm"] = np.float64(2.5)
        f.attrs["patient_id"] = "abc"
    return values


def test_fastmri_reader_reads_one_slice_at_a_time(tmp_path, monkeypatch):
    multi = _fastmri_file(tmp_path / "a.h5", n_slices=3)
    single = _fastmri_file(tmp_path / "b.h5", n_slices=2, coils=0, target=False, mask=True)
    reads = []
    original = h5py.Dataset.__getitem__

    def recording(self, key):
        reads.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    slices = FastMRISlices(tmp_path)
    assert len(slices) == 5 and reads == []  # building the index reads no arrays
    item = slices[1]
    assert reads == [("/kspace", 1), ("/reconstruction_rss", 1)]  # one slice, not the volume
    assert item.multicoil and item.kspace.dtype == torch.complex64 and item.mask is None
    np.testing.assert_array_equal(item.kspace.numpy(), multi[1])
    assert item.attrs == {"acquisition": "CORPD_FBK", "max": 1.5, "norm": 2.5, "patient_id": "abc"}
    last = slices[-1]
    assert last.file.name == "b.h5" and last.slice == 1 and last.target is None and last.attrs["acceleration"] == 4
    np.testing.assert_array_equal(last.kspace.numpy(), single[1])
    # The single-coil operator of the file's mask gives fastMRI's zero-filled image as its pseudo-inverse.
    op = last.operator()
    torch.testing.assert_close(op.pseudo_inverse(last.kspace), zero_filled(last.kspace, last.mask))
    image = torch.randn(20, 16, dtype=torch.complex64)
    torch.testing.assert_close(zero_filled(centred_fft2(image)), image, atol=1e-5, rtol=1e-5)
    coils = torch.randn(4, 20, 16, dtype=torch.complex64)
    torch.testing.assert_close(rss(coils), coils.abs().pow(2).sum(0).sqrt())
    assert center_crop(torch.arange(20.0 * 16).reshape(20, 16), (8, 8)).shape == (8, 8)
    with pytest.raises(ParameterError, match="holds no mask"):
        item.operator()
    mask = cartesian_mask((20, 16), 4, 0.25)
    with pytest.raises(ParameterError, match="multi-coil; its operator needs coil sensitivities.*'estimated'"):
        item.operator(mask)
    estimated = item.operator(mask, coil_maps="estimated")  # from the slice's 4 centre columns
    assert estimated.coil_maps.shape == (4, 20, 16) and torch.equal(estimated.mask, mask)


def test_fastmri_reader_errors_name_the_problem(tmp_path):
    _fastmri_file(tmp_path / "no_kspace.h5", kspace=False)
    with pytest.raises(DataFileError, match="has no 'kspace' dataset, so it is not a fastMRI file"):
        FastMRISlices(tmp_path / "no_kspace.h5")
    _fastmri_file(tmp_path / "single.h5", coils=0, target=False, mask=True)
    item = FastMRISlices(tmp_path / "single.h5")[0]
    with pytest.raises(ShapeError, match="the mask has 12 columns but the k-space has 16"):
        item.operator(torch.ones(12))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="holds no fastMRI .h5 files"):
        FastMRISlices(tmp_path / "empty")
    with pytest.raises(ShapeError, match="coil_maps has shape .*; expected \\(n_coils, 16, 16\\)"):
        MRI(cartesian_mask((16, 16), 4), gaussian_coil_maps(3, (12, 12)))
    with pytest.raises(DTypeError, match="is real .* but complex data is expected"):
        MRI(cartesian_mask((16, 16), 4))(torch.zeros(1, 16, 16))
    assert math.isfinite(float(item.kspace.abs().sum()))


def test_complex_tv_is_real_tv_rotated_for_a_unitary_operator():
    """With a full mask A = F is unitary, so complex TV on F(e^{iθ} z) for a real z is e^{iθ} times real TV
    denoising of z (the PDHG iterates are the same up to the rotation); CG-SENSE (Tikhonov) takes complex data."""
    from learnrecon.operators import Identity
    from learnrecon.solvers import tikhonov, tv_pdhg

    z = phantoms.shepp_logan(24).double()[None, None] + 0.05 * torch.randn(1, 1, 24, 24, dtype=torch.float64)
    rotation = torch.exp(torch.tensor(0.7j, dtype=torch.complex128))
    full = MRI(torch.ones(24, 24))
    y = full(rotation * z.to(torch.complex128))
    x_complex = tv_pdhg(y, full, lam=0.05, n_iter=300, nonneg=False)
    x_real = tv_pdhg(z, Identity((24, 24)), lam=0.05, n_iter=300, nonneg=False)
    torch.testing.assert_close(x_complex, rotation * x_real.to(torch.complex128), atol=1e-8, rtol=1e-8)
    with pytest.raises(ParameterError, match="complex images, for which x >= 0 has no meaning"):
        tv_pdhg(y, full, lam=0.05)
    multi = MRI(cartesian_mask((24, 24), 4), gaussian_coil_maps(3, (24, 24)))
    x = (rotation * z.to(torch.complex128))[:, :, None]
    data = multi(x)
    sense = tikhonov(data, multi, alpha=1e-3, n_iter=200)
    tv = tv_pdhg(data, multi, lam=1e-3, n_iter=100, nonneg=False)
    assert sense.shape == tv.shape == x.shape and sense.is_complex() and tv.is_complex()
    zero_filled_error = (multi.pseudo_inverse(data) - x).norm()
    assert (sense - x).norm() < zero_filled_error and (tv - x).norm() < zero_filled_error
