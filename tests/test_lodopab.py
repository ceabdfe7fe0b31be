"""LoDoPaB-CT's file layout: a small data set written in it, read back, its geometry, and training from it."""

import json
import math
import pickle

import h5py
import numpy as np
import pytest
import torch

from learnrecon import phantoms
from learnrecon.config import from_dict, load_config
from learnrecon.data.lodopab import LoDoPaBFiles, lodopab_operator, write_lodopab_layout
from learnrecon.data.sources import LoDoPaBPairs, make_training_data, make_validation_data
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.training import Trainer

SIZE, ANGLES, CELLS = 24, 16, 35


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """10 training samples in files of 4 (4, 4, 2) and 3 validation samples, noiseless, as LoDoPaB ships them."""
    root = tmp_path_factory.mktemp("lodopab")
    op = lodopab_operator(SIZE, ANGLES, CELLS, backend="native")
    for part, n, seed in (("train", 10, 0), ("validation", 3, 1)):
        x = phantoms.random_ellipses(n, SIZE, seed=seed, scaling="minmax")[:, 0]
        x[:, : SIZE // 3, : SIZE // 4] += 0.5  # an asymmetric mark, so that a wrong orientation shows
        write_lodopab_layout(root, part, x, op(x), per_file=4)
    return root


def test_the_operator_is_lodopabs_geometry():
    op = lodopab_operator(backend="matrix_free")
    assert op.domain_shape == (362, 362) and op.range_shape == (1000, 513)
    assert op.pixel_size == pytest.approx(0.26 / 362)
    assert op.detector_spacing * 513 / 2 == pytest.approx(0.13 * math.sqrt(2))
    assert float(op.angles[0]) == pytest.approx(math.pi / 2000) and float(op.angles[-1]) == pytest.approx(
        math.pi - math.pi / 2000
    )
    assert lodopab_operator().backend == "matrix_free"  # "auto" at this size: the CSR pair would take 3.6 GB
    assert lodopab_operator(64, 60, 91).backend == "native"


def test_files_are_written_and_read_in_the_layout(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert names[:3] == ["ground_truth_train_000.hdf5", "ground_truth_train_001.hdf5", "ground_truth_train_002.hdf5"]
    with h5py.File(folder / "observation_train_002.hdf5") as f:
        assert list(f) == ["data"] and f["data"].shape == (2, ANGLES, CELLS) and f["data"].dtype == np.float32
    train = LoDoPaBFiles(folder, "train", backend="native")
    assert len(train) == 10 and train.image_shape == (SIZE, SIZE) and train.data_shape == (ANGLES, CELLS)
    x, y = train.read([0, 5, 9])
    assert x.shape == (3, 1, SIZE, SIZE) and y.shape == (3, 1, ANGLES, CELLS)
    expected = phantoms.random_ellipses(10, SIZE, seed=0, scaling="minmax")
    expected[:, 0, : SIZE // 3, : SIZE // 4] += 0.5
    torch.testing.assert_close(x, expected[[0, 5, 9]])
    with h5py.File(folder / "ground_truth_train_000.hdf5") as f:  # stored in ODL's orientation (axis 0 along x)
        stored = torch.from_numpy(np.asarray(f["data"][0]))
    torch.testing.assert_close(stored, torch.rot90(expected[0, 0], -1))
    assert len(LoDoPaBFiles(folder, "train", limit=6)) == 6


def test_the_geometry_check_tells_a_wrong_orientation(folder):
    train = LoDoPaBFiles(folder, "train", backend="native")
    assert train.data_residual([0, 1, 7]) < 1e-5  # noiseless data of this geometry
    x, y = train.read([1])
    wrong = float((train.op(torch.rot90(x, -1, dims=(-2, -1))) - y).norm() / y.norm())  # ODL's axes taken as ours
    assert wrong > 0.1


def test_pairs_per_epoch_and_across_processes(folder):
    files = LoDoPaBFiles(folder, "train")
    pairs = LoDoPaBPairs(files, seed=3)
    first_epoch = pairs.indices(torch.arange(10))
    assert sorted(first_epoch) == list(range(10)) and first_epoch != list(range(10))
    assert pairs.indices(torch.arange(10, 20)) != first_epoch
    batch = pairs.batch(torch.arange(2, 5))
    x, y = files.read(first_epoch[2:5])
    torch.testing.assert_close(batch.x, x)
    torch.testing.assert_close(batch.y, y)
    clone = pickle.loads(pickle.dumps(pairs))  # what a DataLoader worker gets: no open handles
    assert clone.files._handles == {}
    torch.testing.assert_close(clone.batch(torch.arange(2, 5)).y, batch.y)


def test_bad_folders_are_named(tmp_path, folder):
    with pytest.raises(DataFileError, match="does not exist"):
        LoDoPaBFiles(tmp_path / "nowhere")
    with pytest.raises(DataFileError, match="no observation_test_NNN.hdf5"):
        LoDoPaBFiles(folder, "test")
    with pytest.raises(ParameterError, match="part must be one of"):
        LoDoPaBFiles(folder, "training")
    broken = tmp_path / "broken"
    op = lodopab_operator(SIZE, ANGLES, CELLS, backend="native")
    x = torch.rand(3, SIZE, SIZE)
    write_lodopab_layout(broken, "train", x, op(x), per_file=2)
    (broken / "ground_truth_train_001.hdf5").unlink()
    with pytest.raises(DataFileError, match="ground_truth_train_001.hdf5 is missing"):
        LoDoPaBFiles(broken)
    with h5py.File(broken / "ground_truth_train_001.hdf5", "w") as f:
        f.create_dataset("data", data=np.zeros((2, SIZE, SIZE), np.float32))
    with pytest.raises(DataFileError, match="holds 2 images but observation_train_001.hdf5 1 sinograms"):
        LoDoPaBFiles(broken)


def _config(folder, **data):
    return from_dict(
        {
            "model": {"name": "lpd", "params": {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4}},
            "data": {"lodopab": {"root": str(folder), "backend": "native"}, "n_validation": 2, **data},
            "training": {"steps": 2, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "threads": 1},
        }
    )


def test_a_config_trains_on_lodopab_files(folder, tmp_path):
    config = _config(folder)
    data, op = make_training_data(config.data)
    assert isinstance(data, LoDoPaBPairs) and op.range_shape == (ANGLES, CELLS)
    validation = make_validation_data(config.data, op)
    assert validation.x.shape == (2, 1, SIZE, SIZE)
    trainer = Trainer.from_config(config, tmp_path / "run", progress=False)
    summary = trainer.train()
    trainer.close()
    assert summary["steps"] == 2 and math.isfinite(summary["best_psnr"])
    saved = json.loads((tmp_path / "run" / "last.json").read_text())
    assert saved["config"]["data"]["lodopab"]["root"] == str(folder)
    with pytest.raises(ParameterError, match="leave out data.operator"):
        make_training_data(_config(folder, operator={"type": "ParallelBeam2D", "image_size": 24, "n_angles": 4}).data)
    with pytest.raises(ParameterError, match="takes root"):
        make_training_data(from_dict({"data": {"lodopab": {"path": "x"}}}).data)


def test_the_shipped_lodopab_config_loads():
    config = load_config("configs/lpd_lodopab.yaml")
    assert config.model.name == "lpd" and config.data.lodopab["backend"] == "auto"
    assert config.training.batch_size >= 2
