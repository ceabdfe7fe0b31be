"""Training data: simulated streams, finer simulation grids, file pairs, refusals before a step."""

import json

import pytest
import torch

from learnrecon import phantoms
from learnrecon.cli import main
from learnrecon.config import from_dict
from learnrecon.data.sources import make_training_data, make_validation_data
from learnrecon.errors import LearnreconError, ParameterError, ShapeError
from learnrecon.training import Trainer
from learnrecon.training.trainer import step_positions
from training_support import SMALL, load_h5_array, small_config, small_data_file


def test_worker_processes_simulate_the_same_batches(tmp_path):
    full = Trainer.from_config(small_config(), tmp_path / "serial", progress=False).train()
    first = Trainer.from_config(small_config(num_workers=2), tmp_path / "workers", progress=False).train(until=4)
    second = Trainer.from_config(small_config(num_workers=2), tmp_path / "workers", resume=True, progress=False).train()
    assert first["losses"] + second["losses"] == full["losses"]


def test_simulation_size_draws_the_data_from_a_finer_grid(tmp_path):
    from learnrecon.data.sources import make_training_data, make_validation_data
    from learnrecon.phantoms import random_ellipses

    values = json.loads(json.dumps(SMALL))
    values["data"].update(simulation={"size": 48}, noise="none")
    config = from_dict(values)
    data, op = make_training_data(config.data)
    pairs = data.batch(torch.arange(4, 6))
    assert data.simulation_op.image_shape == (48, 48) and pairs.x.shape == (2, 1, 24, 24)
    torch.testing.assert_close(pairs.y, data.simulation_op(random_ellipses(2, 48, seed=1000, start=4)))
    assert not torch.allclose(pairs.y, op(pairs.x), rtol=1e-3, atol=1e-3)
    assert make_validation_data(config.data, op).x.shape == (2, 1, 24, 24)
    Trainer.from_config(config, tmp_path / "fine", progress=False).train(until=1)
    values["data"]["simulation"] = {"size": 12}
    with pytest.raises(ParameterError, match="data.simulation.size must be an integer of at least the image size 24"):
        Trainer.from_config(from_dict(values), tmp_path / "coarse", progress=False)
    assert not (tmp_path / "coarse").exists()


def test_simulation_upsampling_bilinear_simulates_the_data_from_the_upsampled_images(tmp_path):
    from learnrecon.data.simulate import upsample_bilinear
    from learnrecon.data.sources import make_training_data, make_validation_data

    values = json.loads(json.dumps(SMALL))
    values["data"].update(simulation={"size": 48, "upsampling": "bilinear"}, noise="none")
    config = from_dict(values)
    data, op = make_training_data(config.data)
    pairs = data.batch(torch.arange(4, 6))
    upsampled = upsample_bilinear(pairs.x, (48, 48))
    torch.testing.assert_close(pairs.y, data.simulation_op(upsampled))
    validation = make_validation_data(config.data, op)
    upsampled = upsample_bilinear(validation.x, (48, 48))
    torch.testing.assert_close(validation.y, data.simulation_op(upsampled))
    values["data"]["simulation"]["upsampling"] = "cubic"
    with pytest.raises(ParameterError, match="data.simulation.upsampling must be one of render, bilinear, got 'cubic'"):
        Trainer.from_config(from_dict(values), tmp_path / "cubic", progress=False)
    assert not (tmp_path / "cubic").exists()


def test_file_data_name_the_files_samples_not_the_stream_positions(tmp_path):
    data = tmp_path / "train.h5"
    assert main(["simulate", "--n", "5", "--size", "24", "--angles", "6", "--detectors", "35",
                 "--out", str(data), "--quiet"]) == 0  # fmt: skip
    values = json.loads(json.dumps(SMALL))
    values["data"]["train_file"] = str(data)
    stream, _ = make_training_data(from_dict(values).data)
    positions = torch.arange(0, 10)
    first, second = stream.indices(positions[:5]), stream.indices(positions[5:])
    assert sorted(first) == sorted(second) == [0, 1, 2, 3, 4] and first != [0, 1, 2, 3, 4]
    from learnrecon.data import load

    dataset = load(data)
    torch.testing.assert_close(stream.batch(positions[:3]).y, torch.stack([dataset[i].y for i in first[:3]]))


def test_simulated_stream_and_validation_follow_the_phantom_settings():
    values = json.loads(json.dumps(SMALL))
    values["data"]["phantom"] = {"type": "ellipses", "scaling": "none"}
    config = from_dict(values).data
    stream, op = make_training_data(config)
    batch = stream.batch(step_positions(3, 2))
    raw = phantoms.random_ellipses(2, 24, seed=config.seed, start=6, scaling="none")
    assert torch.equal(batch.x, raw) and not torch.equal(
        batch.x, phantoms.random_ellipses(2, 24, seed=config.seed, start=6, scaling="minmax")
    )
    validation = make_validation_data(config, op)
    assert torch.equal(validation.x, phantoms.random_ellipses(2, 24, seed=config.validation_seed, scaling="none"))
    values["data"]["phantom"] = {"type": "dival-ellipses"}
    stream, _ = make_training_data(from_dict(values).data)
    assert torch.equal(stream.batch(step_positions(3, 2)).x, phantoms.dival_ellipses(2, 24, seed=config.seed, start=6))


def test_a_data_source_whose_shapes_do_not_fit_the_operator_is_refused_before_a_step(tmp_path):
    from learnrecon.data.sources import Pairs
    from learnrecon.models import build_model

    class Wrong:
        def batch(self, positions):
            return Pairs(torch.zeros(len(positions), 1, 20, 20), torch.zeros(len(positions), 1, 6, 35))

        def indices(self, positions):
            return positions.tolist()

    _, op = make_training_data(small_config().data)
    with pytest.raises(
        ShapeError, match=r"truth have shape \(5, 1, 20, 20\) but ParallelBeam2D's images need \(batch, 1, 24, 24\)"
    ):
        Trainer(build_model("lpd", SMALL["model"]["params"]), op, Wrong(), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_trains_from_a_data_file(tmp_path):
    data = tmp_path / "train.h5"
    assert main(["simulate", "--n", "5", "--size", "24", "--angles", "6", "--detectors", "35",
                 "--noise", "relative:0.05", "--out", str(data), "--quiet"]) == 0  # fmt: skip
    values = json.loads(json.dumps(SMALL))
    values["data"]["train_file"] = str(data)
    summary = Trainer.from_config(from_dict(values), tmp_path / "run", progress=False).train()
    assert summary["steps"] == 6 and all(torch.isfinite(torch.tensor(summary["losses"])))
    values["training"]["num_workers"] = 2
    assert (
        Trainer.from_config(from_dict(values), tmp_path / "workers", progress=False).train()["losses"]
        == summary["losses"]
    )


def test_data_files_that_cannot_give_pairs_are_refused_before_the_run_writes(tmp_path):
    import numpy as np

    good = small_data_file(tmp_path / "good.h5")
    x = load_h5_array(good, "x")
    cases = {
        r"items have shape \(24, 24\), but ParallelBeam2D's images need \(1, 24, 24\)": ("train_file", {"x": x[:, 0]}),
        "truth 'x' is int16; it must be real floating point": ("train_file", {"x": (x * 100).astype(np.int16)}),
        "data 'y' are int16; ParallelBeam2D's data are real floating point": (
            "train_file",
            {"y": load_h5_array(good, "y").astype(np.int16)},
        ),
        "holds no samples": ("validation_file", {k: load_h5_array(good, k)[:0] for k in ("x", "y", "labels")}),
        r"the truth of 1 item\(s\) holds NaN or Inf, the first item 1": (
            "validation_file",
            {"x": np.where(np.arange(3)[:, None, None, None] == 1, np.nan, x).astype(np.float32)},
        ),
    }
    for i, (message, (key, replaced)) in enumerate(cases.items()):
        values = json.loads(json.dumps(SMALL))
        values["data"][key] = str(small_data_file(tmp_path / f"bad{i}.h5", **replaced))
        with pytest.raises(LearnreconError, match=message):
            Trainer.from_config(from_dict(values), tmp_path / f"run{i}", progress=False)
        assert not (tmp_path / f"run{i}").exists()
    values = json.loads(json.dumps(SMALL))
    values["data"]["validation_file"] = str(small_data_file(tmp_path / "fan.h5", "--geometry", "fan"))
    with pytest.raises(ShapeError, match="simulated with another operator than the training data: it differs in"):
        Trainer.from_config(from_dict(values), tmp_path / "fan_run", progress=False)


def test_file_pairs_draw_a_new_permutation_each_epoch():
    from learnrecon.data.sources import FilePairs

    n = 8
    pairs = FilePairs(list(range(n)), seed=0)  # only the data set's length sets the order
    epochs = [pairs.indices(torch.arange(e * n, (e + 1) * n)) for e in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert FilePairs(list(range(n)), seed=0).indices(torch.arange(n, 2 * n)) == epochs[1]  # random access agrees


def test_file_pairs_of_other_seeds_are_not_the_same_orders_shifted_by_epochs():
    """Epoch ``e``'s permutation is seeded by ``(seed, epoch)`` through ``sample_generator``: runs with other seeds
    draw other orders, not one run's orders at other epochs."""
    from learnrecon.data.simulate import sample_generator
    from learnrecon.data.sources import FilePairs

    n = 8

    def orders(seed):
        pairs = FilePairs(list(range(n)), seed=seed)
        return [pairs.indices(torch.arange(e * n, (e + 1) * n)) for e in range(3)]

    by_seed = {seed: orders(seed) for seed in range(3)}
    for seed, epochs in by_seed.items():
        expected = [torch.randperm(n, generator=sample_generator(seed, e, stream=1)).tolist() for e in range(3)]
        assert epochs == expected
        others = [order for other, their in by_seed.items() if other != seed for order in their]
        assert not any(order in others for order in epochs)


def test_an_empty_training_file_is_refused_when_its_stream_is_made():
    from learnrecon.data.sources import FilePairs

    with pytest.raises(ParameterError, match="holds no samples"):
        FilePairs([], seed=0)


def test_complex_truth_or_complex_data_for_a_real_operator_are_refused(tmp_path):
    """A real ray transform's data files need real floating-point truth and data; complex arrays are refused."""
    import numpy as np

    from learnrecon.data import load
    from learnrecon.data.sources import check_pairs_file
    from learnrecon.errors import DTypeError

    good = small_data_file(tmp_path / "good.h5")
    check_pairs_file(load(good), load(good).op, "data.train_file")
    for name, message in (("x", "truth 'x' is complex64"), ("y", "data 'y' are complex64")):
        complex_values = load_h5_array(good, name).astype(np.complex64)
        bad = load(small_data_file(tmp_path / f"complex_{name}.h5", **{name: complex_values}))
        with pytest.raises(DTypeError, match=message):
            check_pairs_file(bad, bad.op, "data.train_file")


def test_a_simulation_size_equal_to_the_image_size_is_allowed_and_a_smaller_one_refused():
    """``data.simulation.size`` must be at least the image size: equal is the same grid."""
    from learnrecon.data.sources import simulation_setting

    values = json.loads(json.dumps(SMALL))
    values["data"]["simulation"] = {"size": 24}
    cfg = from_dict(values).data
    _, op = make_training_data(cfg)
    assert simulation_setting(cfg, op)[0].domain_shape == (24, 24)
    values["data"]["simulation"] = {"size": 23}
    with pytest.raises(ParameterError, match="data.simulation.size must be an integer of at least the image size 24"):
        simulation_setting(from_dict(values).data, op)


def test_the_simulated_stream_refuses_positions_that_are_not_consecutive():
    """Simulated samples are drawn in consecutive blocks; other positions would get the wrong samples."""
    stream, _ = make_training_data(small_config().data)
    assert stream.batch(torch.tensor([4, 5])).x.shape == (2, 1, 24, 24)
    for positions in (torch.tensor([4, 6]), torch.tensor([5, 4])):
        with pytest.raises(ParameterError, match="consecutive"):
            stream.batch(positions)


def test_a_finer_simulation_grid_keeps_each_samples_noise_whatever_the_batch():
    """With ``data.simulation`` the noise of sample ``p`` still comes from ``(seed, p)``: a batch starting at
    position 2 holds the same data as positions 2, 3 of a batch starting at 0 (up to the float32 rounding of the
    projection, which sums in another order for another batch size; the 5 % noise is 1000 times larger)."""
    values = json.loads(json.dumps(SMALL))
    values["data"]["simulation"] = {"size": 48}
    stream, _ = make_training_data(from_dict(values).data)
    whole = stream.batch(torch.arange(0, 4))
    part = stream.batch(torch.arange(2, 4))
    torch.testing.assert_close(part.x, whole.x[2:], rtol=0, atol=0)
    torch.testing.assert_close(part.y, whole.y[2:], rtol=1e-5, atol=1e-5 * whole.y.abs().max().item())
