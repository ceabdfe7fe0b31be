"""Simulated MRI data written in fastMRI's layout (simulate_fastmri, learnrecon simulate --config) and read back."""

import importlib

import h5py
import numpy as np
import pytest
import torch
import yaml

from learnrecon.cli import main
from learnrecon.config import from_dict
from learnrecon.data import load
from learnrecon.data.fastmri import FastMRISlices, zero_filled
from learnrecon.data.simulate import Phantoms, simulate, simulate_fastmri
from learnrecon.data.sources import make_training_data, phantom_source
from learnrecon.errors import ParameterError
from learnrecon.operators import MRI, cartesian_mask

simulate_module = importlib.import_module("learnrecon.data.simulate")  # the module, not data.simulate()

DATA = {
    "operator": {"type": "MRI", "image_size": 24, "acceleration": 4, "center_fraction": 0.25, "n_coils": 3},
    "phantom": {"type": "mri-ellipses", "max_phase": 1.5},
    "noise": "gaussian:0.01",
    "seed": 7,
}


def _phantoms(n, size=24, seed=7):
    return Phantoms.drawn(phantom_source(DATA["phantom"]), n, (size, size), seed=seed)


def test_multicoil_file_round_trips_through_the_fastmri_reader(tmp_path):
    op = MRI.from_config(24, acceleration=4, center_fraction=0.25, n_coils=3)
    path = simulate_fastmri(tmp_path / "sim.h5", op, _phantoms(3), noise="gaussian:0.01", seed=7, chunk_size=2,
                            progress=False)  # fmt: skip
    truth = _phantoms(3).chunk(0, 3)[0]  # (3, 1, H, W) complex64
    slices = FastMRISlices(path)
    assert len(slices) == 3 and slices.files[0].target == "reconstruction_rss"
    for i in range(3):
        item = slices[i]
        assert item.multicoil and item.kspace.shape == (3, 24, 24) and item.kspace.dtype == torch.complex64
        torch.testing.assert_close(item.truth, truth[i, 0])
        torch.testing.assert_close(item.target, truth[i, 0].abs(), atol=1e-6, rtol=1e-5)  # RSS = |x|, Σ|S|² = 1
        assert not item.kspace[:, ~op.mask].abs().any()  # zero where not sampled, as fastMRI's test files
        noise = (item.kspace - op(truth[i : i + 1].reshape(1, 1, 24, 24).to(torch.complex128))[0])[:, op.mask]
        assert 0.005 < float(noise.abs().pow(2).mean().sqrt()) < 0.02  # complex Gaussian, σ = 0.01
        file_op = item.operator()  # the file's mask and coil maps
        torch.testing.assert_close(file_op.mask, op.mask)
        torch.testing.assert_close(file_op.coil_maps, op.coil_maps, atol=1e-7, rtol=0)
    estimated = slices[0].operator(coil_maps="estimated")
    assert estimated.coil_maps.shape == (3, 24, 24) and torch.equal(estimated.mask, op.mask)
    with h5py.File(path) as f:
        assert f["mask"].shape == (24,) and f.attrs["acceleration"] == pytest.approx(op.acceleration)
        assert f.attrs["num_low_frequency"] == 6 and f.attrs["format"] == "fastmri"
        assert f.attrs["max"] == pytest.approx(float(truth.abs().max()), rel=1e-5)


def test_single_coil_file_has_the_esc_target_and_the_simple_operator(tmp_path):
    op = MRI(cartesian_mask((16, 16), 4, 0.25))
    x = torch.rand(2, 1, 16, 16)  # real images get zero phase
    simulate(tmp_path / "single.h5", op, x, noise="none", progress=False)  # simulate() writes MRI as fastMRI's
    item = FastMRISlices(tmp_path / "single.h5")[1]
    assert not item.multicoil and item.coil_maps is None
    torch.testing.assert_close(item.target, x[1, 0])
    torch.testing.assert_close(item.kspace, op(x[1, 0].to(torch.complex128)).to(torch.complex64))
    torch.testing.assert_close(item.operator().mask, op.mask)
    torch.testing.assert_close(zero_filled(item.kspace), op.pseudo_inverse(item.kspace))
    with pytest.raises(ParameterError, match="single-coil; it takes no coil_maps"):
        item.operator(coil_maps="estimated")


def test_cli_simulates_a_config_data_section_as_the_training_stream_draws_it(tmp_path, capsys):
    config = tmp_path / "mri.yaml"
    config.write_text(yaml.safe_dump({"data": DATA}))
    out = tmp_path / "sim.h5"
    assert main(["simulate", "--config", str(config), "--n", "3", "--out", str(out), "--quiet"]) == 0
    assert "fastMRI's layout" in capsys.readouterr().out
    stream, op = make_training_data(from_dict({"data": DATA}).data)
    x, y = stream.batch(torch.arange(3))  # phantoms 0..2 of data.seed, noise from (seed, i)
    slices = FastMRISlices(out)
    for i in range(3):
        torch.testing.assert_close(slices[i].truth, x[i, 0, 0].to(torch.complex64))
        torch.testing.assert_close(slices[i].kspace, (y[i, 0] * op.mask).to(torch.complex64))
    assert main(["simulate", "--config", str(config), "--geometry", "fan", "--out", str(tmp_path / "b.h5")]) == 1
    assert "--config gives the operator, phantoms and noise; leave out --geometry" in capsys.readouterr().err
    assert not (tmp_path / "b.h5").exists()


def test_cli_simulates_a_ray_transform_config_in_learnrecon_s_layout(tmp_path):
    data = {"operator": {"type": "ParallelBeam2D", "image_size": 16, "n_angles": 6, "n_detectors": 23},
            "phantom": {"type": "ellipses", "scaling": "none"}, "noise": "relative:0.05", "seed": 3}  # fmt: skip
    config = tmp_path / "ct.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    assert main(["simulate", "--config", str(config), "--n", "2", "--out", str(tmp_path / "ct.h5"), "--quiet"]) == 0
    x, y = make_training_data(from_dict({"data": data}).data)[0].batch(torch.arange(2))
    stored = load(tmp_path / "ct.h5")
    torch.testing.assert_close(stored.tensors().x, x)
    torch.testing.assert_close(stored.tensors().y, y)


def test_a_failed_simulation_leaves_no_file_and_bad_operators_are_named(tmp_path, monkeypatch):
    op = MRI.from_config(16, acceleration=4, n_coils=2)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return original(*args, **kwargs)

    original = simulate_module.measure
    monkeypatch.setattr(simulate_module, "measure", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        simulate_fastmri(tmp_path / "half.h5", op, _phantoms(4, 16), chunk_size=2, progress=False)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []  # nothing half-written, no temporary file
    points = torch.zeros(16, 16)
    points[::2, ::2] = 1
    with pytest.raises(ParameterError, match="store the mask as sampled columns"):
        simulate_fastmri(tmp_path / "p.h5", MRI(points), _phantoms(1, 16), progress=False)
    with pytest.raises(ParameterError, match="holds no labels"):
        simulate(tmp_path / "l.h5", op, torch.rand(1, 1, 16, 16), labels=torch.zeros(1, 16, 16), progress=False)
    assert np.all([not p.exists() for p in (tmp_path / "p.h5", tmp_path / "l.h5")])
