"""Data sets: simulate -> HDF5 -> load round trip, readers, noise specs, atomic writes and bad files."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from learnrecon.data import load, parse_noise, read_images, simulate
from learnrecon.data.hdf5 import FORMAT_VERSION, open_h5
from learnrecon.data.simulate import make_phantoms, measure
from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.io.files import atomic_path, check_output_path
from learnrecon.operators import Identity
from learnrecon.phantoms import random_ellipses


def truth(n=5, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


def test_round_trip_is_bit_identical(tmp_path):
    x = truth()
    labels = (x[:, 0] > 0.5).long()
    op = Identity((8, 8))
    path = simulate(tmp_path / "d.h5", op, x, labels=labels, noise="relative:0.05", seed=3, progress=False)
    ds = load(path)
    assert len(ds) == 5 and isinstance(ds.op, Identity) and ds.op.domain_shape == (8, 8)
    whole = ds.tensors()
    assert torch.equal(whole.x, x)
    assert torch.equal(whole.labels, labels)
    assert torch.equal(whole.y, measure(op, x, "relative:0.05", seed=3))
    item = ds[2]
    assert torch.equal(item.x, x[2]) and torch.equal(item.y, whole.y[2]) and torch.equal(item.labels, labels[2])


def test_noise_does_not_depend_on_chunking(tmp_path):
    x = truth(7)
    op = Identity((8, 8))
    a = simulate(tmp_path / "a.h5", op, x, noise="gaussian:0.1", seed=1, chunk_size=2, progress=False)
    b = simulate(tmp_path / "b.h5", op, x, noise="gaussian:0.1", seed=1, chunk_size=64, progress=False)
    assert torch.equal(load(a).tensors().y, load(b).tensors().y)
    assert not torch.equal(load(a).tensors().y, x), "noise was added"


def test_dataloader_batches(tmp_path):
    path = simulate(tmp_path / "d.h5", Identity((8, 8)), truth(6), noise="none", progress=False)
    loader = torch.utils.data.DataLoader(load(path), batch_size=4)
    batch = next(iter(loader))
    assert batch.x.shape == (4, 1, 8, 8) and batch.y.shape == (4, 1, 8, 8) and batch.labels.shape == (4, 0)


def test_existing_output_refused_and_overwrite_allowed(tmp_path):
    path = tmp_path / "d.h5"
    simulate(path, Identity((8, 8)), truth(), progress=False)
    with pytest.raises(DataFileError, match="already exists.*--overwrite"):
        simulate(path, Identity((8, 8)), truth(), progress=False)
    simulate(path, Identity((8, 8)), truth(2), overwrite=True, progress=False)
    assert len(load(path)) == 2


def test_interrupted_write_leaves_nothing(tmp_path):
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_between_truth_and_operator(tmp_path):
    with pytest.raises(ShapeError, match="operator needs"):
        simulate(tmp_path / "d.h5", Identity((4, 4)), truth(), progress=False)
    assert not (tmp_path / "d.h5").exists()


def test_missing_file():
    with pytest.raises(DataFileError, match="does not exist"):
        load("/nonexistent/data.h5")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DataFileError, match="not a readable HDF5"):
        load(path)


def test_truncated_file(tmp_path):
    good = simulate(tmp_path / "d.h5", Identity((8, 8)), truth(50), progress=False)
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFileError):
        load(cut).tensors()


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["y"] = np.zeros((2, 3))
    with pytest.raises(DataFileError, match="not a learnrecon data set"):
        load(path)


@pytest.mark.parametrize(
    ("spec", "kind", "value"),
    [
        ("none", "none", 0.0),
        ("relative:0.05", "relative", 0.05),
        ("gaussian:0.1", "gaussian", 0.1),
        ("poisson:4096", "poisson", 4096.0),
        ("counts:1000:0.06:5", "counts", 1000.0),
    ],
)
def test_parse_noise(spec, kind, value):
    parsed = parse_noise(spec)
    assert (parsed.kind, parsed.value) == (kind, value)
    assert parse_noise(str(parsed)) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "relative",
        "relative:-1",
        "gauss:0.1",
        "relative:abc",
        "poisson:0",
        "gaussian:nan",
        "gaussian:0.1:2",
        "relative:0.05:1",
        "counts:0",
        "counts:1000:0",
        "counts:1000:0.06:-1",
        "counts:1000:0.06:5:1",
    ],
)
def test_bad_noise_spec(spec):
    with pytest.raises(ParameterError):
        parse_noise(spec)


def test_counts_files_hold_the_prelog_model_and_the_counts_behind_the_post_log_data(tmp_path):
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.operators.nonlinear import BeerLambert

    ray, x = ParallelBeam2D(16, 8), truth(3, 16)
    counts = load(simulate(tmp_path / "c.h5", ray, x, noise="counts:500:0.1", seed=4, progress=False))
    post = load(simulate(tmp_path / "p.h5", ray, x, noise="poisson:500:0.1", seed=4, progress=False))
    assert isinstance(counts.op, BeerLambert) and (counts.op.photons, counts.op.mu_max) == (500.0, 0.1)
    c = counts.tensors().y
    assert bool((c == c.round()).all()) and bool((c >= 0).all()) and float(c.max()) > 100
    torch.testing.assert_close(counts.op.log_data(c), post.tensors().y)  # the same counts, before and after the log
    with pytest.raises(ParameterError, match="counts:500:0.1"):
        simulate(tmp_path / "bad.h5", counts.op, x, noise="relative:0.05", progress=False)
    with pytest.raises(ParameterError, match="contradicts"):
        simulate(tmp_path / "bad.h5", counts.op, x, noise="counts:400:0.1", progress=False)
    assert not (tmp_path / "bad.h5").exists()


def test_read_numpy_images(tmp_path):
    images = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    np.savez(tmp_path / "b.npz", truth=images[0])
    assert torch.equal(read_images(tmp_path / "a.npy"), torch.from_numpy(images)[:, None])
    assert read_images(tmp_path / "b.npz").shape == (1, 1, 16, 16)


def test_simulate_reads_the_named_array_of_an_npz_file(tmp_path, capsys):
    from learnrecon.cli import main

    images = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "two.npz", truth=images, mask=images > 0.5)
    args = ["simulate", "--phantom", "file", "--truth", str(tmp_path / "two.npz"), "--size", "16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 1
    assert "name the one to use (key=..., or --truth-key in learnrecon simulate)" in capsys.readouterr().err
    assert main([*args, "--truth-key", "truth", "--out", str(tmp_path / "b.h5")]) == 0
    assert torch.equal(load(tmp_path / "b.h5").tensors().x, torch.from_numpy(images)[:, None])


def test_read_images_refuses_bad_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataFileError, match="object arrays are refused"):
        read_images(tmp_path / "obj.npy")
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan))
    with pytest.raises(DataFileError, match="NaN"):
        read_images(tmp_path / "nan.npy")
    np.save(tmp_path / "5d.npy", np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(ShapeError, match="expected"):
        read_images(tmp_path / "5d.npy")
    with pytest.raises(DataFileError, match="does not exist"):
        read_images(tmp_path / "missing.npy")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataFileError, match="cannot read images"):
        read_images(tmp_path / "a.txt")


def _dicom_slice(pixels: np.ndarray, path: Path, instance: int | None = None) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_read_dicom(tmp_path):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    _dicom_slice(pixels, tmp_path / "slice.dcm")
    images = read_images(tmp_path / "slice.dcm")
    assert torch.equal(images[0, 0], torch.from_numpy(pixels * 2.0 - 1000).float())
    assert read_images(tmp_path).shape == (1, 1, 8, 8)


def test_a_dicom_folder_finds_every_slice_and_orders_them_by_instance_number(tmp_path):
    """Upper-case and missing suffixes are found (other files are not), and slices 1, 2, 3 come in that order
    although their names sort as 10, 2, 3."""
    for name, instance in (("IM10.DCM", 1), ("IM2.dcm", 2), ("IM3", 3)):
        _dicom_slice(np.full((8, 8), instance, dtype=np.uint16), tmp_path / name, instance)
    (tmp_path / "README").write_text("not a slice")
    images = read_images(tmp_path)
    assert images[:, 0, 0, 0].tolist() == [2.0 * k - 1000 for k in (1, 2, 3)]
    (tmp_path / "IM3").unlink()
    _dicom_slice(np.full((8, 8), 3, dtype=np.uint16), tmp_path / "IM3")  # no InstanceNumber: name order
    assert read_images(tmp_path)[:, 0, 0, 0].tolist() == [2.0 * k - 1000 for k in (1, 2, 3)]
    (tmp_path / "IM10.DCM").unlink()
    _dicom_slice(np.full((8, 8), 1, dtype=np.uint16), tmp_path / "IM10.DCM")
    assert read_images(tmp_path)[:, 0, 0, 0].tolist() == [2.0 * k - 1000 for k in (1, 2, 3)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="contains no DICOM files"):
        read_images(tmp_path / "empty")


def test_an_empty_image_array_is_refused(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), dtype=np.float32))
    with pytest.raises(DataFileError, match=r"holds no images \(an array of shape \(0, 1, 8, 8\)\)"):
        read_images(tmp_path / "empty.npy")


def test_finer_operator_simulates_the_same_geometry_without_the_inverse_crime():
    from learnrecon import phantoms
    from learnrecon.data.simulate import finer_operator, simulate_pairs, upsample_bilinear
    from learnrecon.operators import ParallelBeam2D

    op = ParallelBeam2D(32, 12, n_detectors=47)
    fine = finer_operator(op, 96)
    assert fine.image_shape == (96, 96) and fine.range_shape == op.range_shape
    assert fine.image_extent == op.image_extent and fine.detector_spacing == op.detector_spacing

    def render(size):
        return phantoms.random_ellipses(1, size, seed=0, scaling="minmax").float()

    x, y = simulate_pairs(render, op, "none", seed=0, simulation_op=fine)
    assert x.shape == (1, 1, 32, 32)
    coarse = op(x)
    # The same line integrals up to the discretisation of the edges (1.3 %), but not the same data.
    relative = float((y - coarse).norm() / coarse.norm())
    assert 1e-3 < relative < 0.05
    x2, y2 = simulate_pairs(render, op, "none", seed=0)
    assert torch.equal(x2, x) and torch.equal(y2, coarse)
    x3, y3 = simulate_pairs(render, op, "none", seed=0, simulation_op=fine, upsampling="bilinear")
    upsampled = upsample_bilinear(x, (96, 96))
    assert torch.equal(x3, x) and torch.equal(y3, fine(upsampled))
    assert 1e-3 < float((y3 - y).norm() / y.norm()) < 0.05
    with pytest.raises(ParameterError, match="unknown upsampling 'nearest'; choose one of render, bilinear"):
        simulate_pairs(render, op, "none", seed=0, simulation_op=fine, upsampling="nearest")
    with pytest.raises(ParameterError, match="smaller than the image size"):
        finer_operator(op, 16)
    with pytest.raises(ParameterError, match="ray transform"):
        finer_operator(Identity((8, 8)), 16)


def test_bilinear_upsampling_is_scikit_image_resize_as_dival_uses_it():
    """DIVal simulates its ellipse data from skimage.transform.resize(x, (400, 400), order=1)."""
    from skimage.transform import resize

    from learnrecon import phantoms
    from learnrecon.data.simulate import finer_operator, simulate_pairs
    from learnrecon.operators import ParallelBeam2D

    op = ParallelBeam2D(32, 12, n_detectors=47)
    fine = finer_operator(op, 100)
    x, y = simulate_pairs(
        lambda size: phantoms.draw_ellipses("dival-ellipses", n=2, size=size, seed=3).float(),
        op,
        "none",
        seed=0,
        simulation_op=fine,
        upsampling="bilinear",
    )
    reference = torch.from_numpy(resize(x.numpy(), (2, 1, 100, 100), order=1)).float()
    torch.testing.assert_close(y, fine(reference), rtol=1e-4, atol=1e-4)


def test_seed_changes_the_noise_and_simulate_records_seed_and_noise(tmp_path):
    op = Identity((4, 4))
    x = torch.ones(2, 1, 4, 4)
    a, b = measure(op, x, "gaussian:1.0", seed=0), measure(op, x, "gaussian:1.0", seed=1)
    assert not torch.equal(a, b) and not torch.equal(a[0], a[1])
    dataset = load(simulate(tmp_path / "d.h5", op, x, noise="poisson:100:2.5", seed=7, progress=False))
    assert int(dataset.attrs["seed"]) == 7
    spec = parse_noise(str(dataset.attrs["noise"]))
    assert (spec.kind, spec.value, spec.mu_max) == ("poisson", 100.0, 2.5)


def test_file_phantoms_take_the_first_n_images_and_record_how_many(tmp_path):
    """``make_phantoms("file", n, ...)`` selects the file's first ``n`` images (n only selects and checks)."""
    images = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    np.save(tmp_path / "four.npy", images)
    phantoms = make_phantoms("file", n=2, size=16, truth=tmp_path / "four.npy")
    x, labels = phantoms.chunk(0, len(phantoms))
    assert torch.equal(x, torch.from_numpy(images[:2])[:, None]) and labels is None and phantoms.info["n"] == 2
    assert len(phantoms) == 2 and not phantoms.has_labels
    with pytest.raises(ShapeError, match="pass --size 16"):
        make_phantoms("file", n=2, size=8, truth=tmp_path / "four.npy")


def test_truth_with_more_than_one_channel_is_refused(tmp_path):
    with pytest.raises(ShapeError, match=r"truth has shape \(5, 2, 8, 8\); it must be \(n, 1, H, W\) images"):
        simulate(tmp_path / "d.h5", Identity((8, 8)), truth().expand(5, 2, 8, 8), progress=False)
    assert not (tmp_path / "d.h5").exists()


def test_dicom_instance_numbers_are_ordered_as_numbers_not_as_text(tmp_path):
    """Instance numbers 2, 9, 10 come in that order, whatever the file names and although "10" < "2" as text."""
    for name, instance in (("a.dcm", 10), ("b.dcm", 2), ("c.dcm", 9)):
        _dicom_slice(np.full((8, 8), instance, dtype=np.uint16), tmp_path / name, instance)
    assert read_images(tmp_path)[:, 0, 0, 0].tolist() == [2.0 * k - 1000 for k in (2, 9, 10)]


def test_numpy_files_with_upper_case_suffixes_are_read(tmp_path):
    images = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    (tmp_path / "a.npy").rename(tmp_path / "A.NPY")
    np.savez(tmp_path / "b.npz", truth=images)
    (tmp_path / "b.npz").rename(tmp_path / "B.NPZ")
    for name in ("A.NPY", "B.NPZ"):
        assert torch.equal(read_images(tmp_path / name), torch.from_numpy(images)[:, None])


def test_images_with_a_single_nan_or_inf_or_complex_values_are_refused(tmp_path):
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        images = np.ones((2, 4, 4), dtype=np.float32)
        images[1, 2, 3] = value
        np.save(tmp_path / f"{name}.npy", images)
        with pytest.raises(DataFileError, match="contains NaN or Inf values"):
            read_images(tmp_path / f"{name}.npy")
    np.save(tmp_path / "complex.npy", np.ones((4, 4), dtype=np.complex64))
    with pytest.raises(DataFileError, match="holds complex64 data; ground truth must be real numbers"):
        read_images(tmp_path / "complex.npy")


def test_items_are_indexed_as_a_sequence_and_the_end_is_out_of_range(tmp_path):
    x = truth(3)
    ds = load(simulate(tmp_path / "d.h5", Identity((8, 8)), x, progress=False))
    assert torch.equal(ds[-1].x, x[2]) and torch.equal(ds[-3].x, x[0])
    for index in (3, -4):
        with pytest.raises(IndexError, match="out of range"):
            ds[index]


def test_data_files_are_opened_read_only_so_a_file_open_elsewhere_can_be_read(tmp_path):
    path = simulate(tmp_path / "d.h5", Identity((8, 8)), truth(2), progress=False)
    with open_h5(path) as f:
        assert f.mode == "r"
    with h5py.File(path, "r"):  # another reader holds the file
        assert torch.equal(load(path).tensors().x, truth(2))


def test_a_file_whose_truth_or_labels_count_differs_from_its_data_is_corrupt(tmp_path):
    for name in ("x", "labels"):
        x = truth(3)
        path = simulate(tmp_path / f"{name}.h5", Identity((8, 8)), x, labels=(x[:, 0] > 0.5).long(), progress=False)
        with h5py.File(path, "a") as f:
            kept = f[name][:2]
            del f[name]
            f[name] = kept
        with pytest.raises(DataFileError, match=f"'{name}' has 2 items but 'y' has 3; file is corrupt"):
            load(path)


def test_a_file_of_a_newer_format_version_is_refused(tmp_path):
    path = simulate(tmp_path / "d.h5", Identity((8, 8)), truth(2), progress=False)
    assert len(load(path)) == 2
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DataFileError, match=f"format version {FORMAT_VERSION + 1}; upgrade learnrecon"):
        load(path)


def test_labels_read_one_at_a_time_or_at_once_are_long_integers(tmp_path):
    x = truth(3)
    labels = (x[:, 0] > 0.5).long()
    ds = load(simulate(tmp_path / "d.h5", Identity((8, 8)), x, labels=labels, progress=False))
    assert ds[1].labels.dtype == ds.tensors().labels.dtype == torch.int64
    assert torch.equal(ds[1].labels, labels[1])


def test_a_folder_as_the_output_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    for overwrite in (False, True):
        with pytest.raises(DataFileError, match="is a folder; give a file name"):
            check_output_path(tmp_path / "out", overwrite)
        with pytest.raises(DataFileError, match="is a folder"):
            simulate(tmp_path / "out", Identity((8, 8)), truth(2), overwrite=overwrite, progress=False)
    assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == []


def test_missing_parent_folders_of_an_output_are_created_unless_asked_not_to(tmp_path):
    assert check_output_path(tmp_path / "a" / "b.h5", create_parents=False) == tmp_path / "a" / "b.h5"
    assert not (tmp_path / "a").exists()
    path = simulate(tmp_path / "new" / "sub" / "d.h5", Identity((8, 8)), truth(2), progress=False)
    assert len(load(path)) == 2


def test_phantoms_are_made_chunk_by_chunk_and_a_file_is_the_same_whatever_the_chunks(tmp_path):
    images = make_phantoms("ellipses", n=5, size=16, seed=4)
    calls = []
    chunk = images.chunk
    images.chunk = lambda start, stop: (calls.append((start, stop)), chunk(start, stop))[1]
    a = simulate(tmp_path / "a.h5", Identity((16, 16)), images, noise="gaussian:0.1", seed=1, chunk_size=2,
                 progress=False)  # fmt: skip
    assert calls == [(0, 2), (2, 4), (4, 5)]
    whole = make_phantoms("ellipses", n=5, size=16, seed=4)
    b = simulate(tmp_path / "b.h5", Identity((16, 16)), whole, noise="gaussian:0.1", seed=1, progress=False)
    first, second = load(a).tensors(), load(b).tensors()
    assert (
        torch.equal(first.x, second.x) and torch.equal(first.y, second.y) and torch.equal(first.labels, second.labels)
    )
    assert torch.equal(first.x, random_ellipses(5, 16, seed=4))
    assert load(a).attrs["phantom"]["kind"] == "ellipses"


def test_a_simulation_that_cannot_fit_in_memory_is_refused_naming_the_size_it_needs(tmp_path):
    from learnrecon.errors import ResourceError
    from learnrecon.operators import ParallelBeam2D

    with pytest.raises(ResourceError, match=r"simulating 1 images of \(200000, 200000\) needs [0-9.]+ (GiB|TiB)"):
        simulate(tmp_path / "d.h5", Identity((200000, 200000)), make_phantoms("ellipses", n=1, size=200000),
                 progress=False)  # fmt: skip
    with pytest.raises(ResourceError, match=r"system matrices of ParallelBeam2D.* needs [0-9.]+ TiB"):
        ParallelBeam2D(200000, 30)(torch.zeros(1, 200000, 200000, device="meta"))
    assert not (tmp_path / "d.h5").exists()
