"""Training from fastMRI-layout files (data.fastmri): read lazily, the Trainer and `learnrecon train --config`."""

import h5py
import numpy as np
import pytest
import torch
import yaml

from learnrecon.cli import main
from learnrecon.config import from_dict
from learnrecon.data.simulate import Phantoms, simulate_fastmri
from learnrecon.data.sources import make_training_data, make_validation_data, phantom_source
from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.models.hub import load_model
from learnrecon.operators import MRI, cartesian_mask
from learnrecon.operators.mri import centred_fft2
from learnrecon.operators.registry import build_operator

OPERATOR = {"type": "MRI", "image_size": 16, "acceleration": 4, "center_fraction": 0.25, "n_coils": 2}
TRAINING = {"steps": 2, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "figure_every": 2,
            "log_every": 1, "threads": 1}  # fmt: skip
MODEL = {"name": "vn", "params": {"n_stages": 2, "n_filters": 4, "filter_size": 3, "n_rbf": 5}}


def _files(folder, operator=OPERATOR):
    op = build_operator(operator)
    source = phantom_source({"type": "mri-ellipses", "max_phase": 1.0})
    for name, n, seed in (("train.h5", 6, 0), ("validation.h5", 2, 1)):
        images = Phantoms.drawn(source, n, (16, 16), seed=seed)
        simulate_fastmri(folder / name, op, images, noise="gaussian:0.001", seed=seed, progress=False)
    return op


def _config(folder, **data):
    fastmri = {"train": str(folder / "train.h5"), "validation": str(folder / "validation.h5")}
    return {"model": MODEL, "data": {"fastmri": fastmri, "n_validation": 2, **data}, "training": TRAINING}


def test_fastmri_files_train_through_the_cli_read_one_slice_at_a_time(tmp_path, monkeypatch):
    op = _files(tmp_path)
    config = tmp_path / "fastmri.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, operator=OPERATOR)))
    data, train_op = make_training_data(from_dict(_config(tmp_path)).data)
    assert torch.equal(train_op.mask, op.mask) and torch.allclose(train_op.coil_maps, op.coil_maps, atol=1e-6)
    reads = []
    original = h5py.Dataset.__getitem__

    def recording(self, key):
        reads.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    x, y = data.batch(torch.arange(2))
    assert x.shape == (2, 1, 1, 16, 16) and y.shape == (2, 1, 2, 16, 16) and x.is_complex() and y.is_complex()
    assert reads.count("/kspace") == 2 and reads.count("/truth") == 2  # two slices of six, not the file
    monkeypatch.undo()
    with h5py.File(tmp_path / "train.h5") as f:  # the epoch's permutation of the file's slices
        for i, index in enumerate(data.indices(torch.arange(2))):
            np.testing.assert_array_equal(y[i, 0].numpy(), f["kspace"][index])
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    model = load_model(tmp_path / "run" / "last.safetensors")
    validation = make_validation_data(from_dict(_config(tmp_path)).data, train_op)
    with torch.no_grad():
        x_hat = model(validation.y, train_op)
    assert x_hat.shape == validation.x.shape == (2, 1, 1, 16, 16) and torch.isfinite(x_hat.abs()).all()
    assert (tmp_path / "run" / "validation.csv").read_text().count("\n") == 2  # header and step 2


def _single_coil_file(path, mask=None):
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)).to(torch.complex64)
    with h5py.File(path, "w") as f:
        kspace = centred_fft2(image)
        f.create_dataset("kspace", data=(kspace * mask if mask is not None else kspace).numpy())
        f.create_dataset("reconstruction_esc", data=image.abs().numpy())
        if mask is not None:
            f.create_dataset("mask", data=mask[0].numpy())
    return image


def test_fully_sampled_single_coil_files_are_undersampled_by_the_operator_section(tmp_path):
    image = _single_coil_file(tmp_path / "train.h5")
    _single_coil_file(tmp_path / "validation.h5")
    section = {"type": "MRI", "image_size": 16, "acceleration": 4, "center_fraction": 0.25}
    data, op = make_training_data(from_dict(_config(tmp_path, operator=section)).data)
    assert op.coil_maps is None and op.domain_shape == (16, 16)
    position = data.indices(torch.arange(1))[0]
    x, y = data.batch(torch.arange(1))
    torch.testing.assert_close(x[0, 0], image[position], atol=1e-6, rtol=0)  # the fully sampled image F⁻¹ k
    torch.testing.assert_close(y[0, 0], op(image[position].to(torch.complex128)).to(torch.complex64))
    with pytest.raises(ParameterError, match="is fully sampled \\(no mask\\); give data.operator"):
        make_training_data(from_dict(_config(tmp_path)).data)


def test_fastmri_training_data_errors_name_the_problem(tmp_path):
    _files(tmp_path)
    with pytest.raises(ParameterError, match="data.fastmri takes train and validation \\(both required\\)"):
        make_training_data(from_dict({"data": {"fastmri": {"train": str(tmp_path / "train.h5")}}}).data)
    with pytest.raises(ParameterError, match="leave out data.train_file"):
        make_training_data(from_dict(_config(tmp_path, train_file="x.h5")).data)
    other = dict(OPERATOR, acceleration=2)
    with pytest.raises(ShapeError, match="data.operator has another MRI operator"):
        make_training_data(from_dict(_config(tmp_path, operator=other)).data)
    with pytest.raises(DataFileError, match="hold no label maps"):
        make_training_data(from_dict(_config(tmp_path)).data, labels=True)
    (tmp_path / "fastmri").mkdir()
    values = np.ones((2, 2, 16, 16), dtype=np.complex64)
    with h5py.File(tmp_path / "fastmri" / "multi.h5", "w") as f:  # a multi-coil fastMRI file: no sensitivities
        f.create_dataset("kspace", data=values)
        f.create_dataset("reconstruction_rss", data=np.ones((2, 16, 16), dtype=np.float32))
    folder = {"train": str(tmp_path / "fastmri"), "validation": str(tmp_path / "fastmri")}
    with pytest.raises(DataFileError, match="multi-coil and holds no coil sensitivities"):
        make_training_data(from_dict({"data": {"fastmri": folder}}).data)
    mask = cartesian_mask((16, 16), 4, 0.25)
    _single_coil_file(tmp_path / "undersampled.h5", mask=mask)
    with h5py.File(tmp_path / "undersampled.h5", "a") as f:
        del f["reconstruction_esc"]
    files = {"train": str(tmp_path / "undersampled.h5"), "validation": str(tmp_path / "undersampled.h5")}
    data, op = make_training_data(from_dict({"data": {"fastmri": files}}).data)
    assert isinstance(op, MRI) and torch.equal(op.mask, mask)
    with pytest.raises(DataFileError, match="undersampled k-space \\(it holds a mask\\) and no complex 'truth'"):
        data.batch(torch.arange(1))
