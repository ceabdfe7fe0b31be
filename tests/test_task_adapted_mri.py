"""Task-adapted reconstruction on undersampled MRI: the complex phantoms' labels (their magnitudes'), through the
simulated stream and validation; gradients of a FBPConvNet + segmentation model on complex images; a tiny joint
training; the refusals of labels the model cannot take; the MRI problem of the benchmark."""

import json

import pytest
import torch

from learnrecon import phantoms
from learnrecon.config import from_dict
from learnrecon.data.sources import make_training_data, make_validation_data
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models import SegmentationUNet, build_model
from learnrecon.training import Trainer
from learnrecon.training.losses import JointLoss

PARAMS = {
    "reconstructor": {"name": "fbpconvnet", "params": {"depth": 2, "width": 4, "init": "auto"}},
    "task": {"n_classes": 3, "depth": 2, "width": 4},
}
TASK = {
    "model": {"name": "task-adapted", "params": PARAMS},
    "data": {
        "operator": {"type": "MRI", "image_size": 24, "acceleration": 4, "mask_seed": 0, "n_coils": 2},
        "phantom": {"type": "mri-ellipses", "max_phase": 1.5},
        "noise": "gaussian:0.01",
        "n_validation": 2,
    },
    "training": {"steps": 4, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "threads": 1},
}


def _config(**training):
    values = json.loads(json.dumps(TASK))
    values["training"].update(training)
    return from_dict(values)


def _model(op, params=PARAMS):
    torch.manual_seed(0)
    return build_model("task-adapted", params, op)


def test_the_complex_phantoms_labels_are_their_magnitudes_labels():
    x, labels = phantoms.mri_phantoms("mri-ellipses", n=3, size=24, seed=5, start=2, return_labels=True)
    magnitude, expected = phantoms.dival_ellipses(3, 24, seed=5, start=2, return_labels=True)
    assert torch.equal(labels, expected) and labels.dtype == torch.int64
    torch.testing.assert_close(x.abs().double(), magnitude.double(), atol=1e-6, rtol=0)
    assert torch.equal(x, phantoms.mri_phantoms("mri-ellipses", n=3, size=24, seed=5, start=2))  # images unchanged
    assert set(labels.unique().tolist()) <= {0, 1, 2} and (labels == 0).any() and (labels > 0).any()
    assert (x[:, 0].abs()[labels == 0] == 0).all()  # the background is the magnitude's
    heads, head_labels = phantoms.mri_phantoms("mri-shepp-logan", n=2, size=24, return_labels=True)
    assert torch.equal(head_labels, phantoms.shepp_logan_labels(24).expand(2, 24, 24))


def test_the_labels_survive_the_simulated_stream_and_validation():
    config = _config()
    stream, op = make_training_data(config.data, labels=True)
    batch = stream.batch(torch.arange(3, 5))
    x, labels = phantoms.mri_phantoms("mri-ellipses", n=2, size=24, seed=config.data.seed, start=3, max_phase=1.5,
                                      return_labels=True)  # fmt: skip
    assert batch.x.is_complex() and tuple(batch.x.shape) == (2, 1, 1, 24, 24)
    assert torch.equal(batch.x.reshape(2, 1, 24, 24), x) and torch.equal(batch.extra["labels"], labels)
    validation = make_validation_data(config.data, op, labels=True)
    _, expected = phantoms.mri_phantoms("mri-ellipses", n=2, size=24, seed=config.data.validation_seed,
                                        max_phase=1.5, return_labels=True)  # fmt: skip
    assert torch.equal(validation.extra["labels"], expected)


def _gradients(model, loss, batch, op) -> dict[str, bool]:
    model.zero_grad()
    loss(model(batch.y, op), batch.x, batch.extra["labels"]).backward()
    return {
        part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters())
        for part in ("reconstructor", "task")
    }


def test_the_mri_model_segments_the_magnitude_and_gradients_reach_both_networks():
    stream, op = make_training_data(_config().data, labels=True)
    batch = stream.batch(torch.arange(2))
    model = _model(op)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):  # move the zero-initialised output layers, so that gradients reach every part
        optimizer.zero_grad()
        JointLoss(0.5)(model(batch.y, op), batch.x, batch.extra["labels"]).backward()
        optimizer.step()
    output = model(batch.y, op)
    assert output.image.is_complex() and tuple(output.image.shape) == (2, 1, 1, 24, 24)
    assert tuple(output.logits.shape) == (2, 3, 24, 24)
    torch.testing.assert_close(model.task(output.image), model.task(output.image.abs().reshape(2, 1, 24, 24)))
    for c in (0.01, 0.5, 0.99):
        assert _gradients(model, JointLoss(c), batch, op) == {"reconstructor": True, "task": True}
    assert _gradients(model, JointLoss(0.0), batch, op) == {"reconstructor": True, "task": False}
    model.freeze_reconstructor()
    assert _gradients(model, JointLoss(1.0), batch, op) == {"reconstructor": False, "task": True}


def test_the_image_loss_keeps_the_imaginary_part():
    x = torch.complex(torch.zeros(1, 1, 1, 4, 4), torch.ones(1, 1, 1, 4, 4))
    logits, labels = torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64)
    output = type("Output", (), {"image": torch.zeros_like(x), "logits": logits})()
    assert JointLoss(0.0).terms(output, x, labels)["image"].item() == pytest.approx(1.0)  # |0 − i|² = 1


class _OneBatch:
    def __init__(self, batch):
        self.fixed = batch

    def batch(self, positions):
        return self.fixed

    def indices(self, positions):
        return positions.tolist()


def test_a_tiny_mri_joint_training_lowers_both_losses(tmp_path):
    config = _config(steps=25, batch_size=2, validate_every=25, checkpoint_every=25, task_weight=0.5, lr=2e-2)
    stream, op = make_training_data(config.data, labels=True)
    fixed = stream.batch(torch.arange(2))
    model = _model(op)
    with torch.no_grad():
        before = JointLoss(0.5).terms(model.eval()(fixed.y, op), fixed.x, fixed.extra["labels"])
    trainer = Trainer(model, op, _OneBatch(fixed), validation=make_validation_data(config.data, op, labels=True),
                      run_dir=tmp_path / "run", settings=config.training, progress=False)  # fmt: skip
    trainer.train()
    with torch.no_grad():
        after = JointLoss(0.5).terms(model.eval()(fixed.y, op), fixed.x, fixed.extra["labels"])
    assert after["image"] < 0.9 * before["image"] and after["task"] < 0.9 * before["task"], (before, after)


def test_mri_labels_of_another_shape_or_beyond_the_models_classes_are_refused(tmp_path):
    stream, op = make_training_data(_config().data, labels=True)
    batch = stream.batch(torch.arange(2))

    class Labels:
        def __init__(self, labels):
            self.labels = labels

        def batch(self, positions):
            return batch.x, batch.y, {"labels": self.labels}

        def indices(self, positions):
            return positions.tolist()

    settings = _config(task_weight=0.5).training
    with pytest.raises(ShapeError, match=r"labels have shape \(2, 12, 24\); the images need \(n, 24, 24\)"):
        Trainer(_model(op), op, Labels(batch.extra["labels"][:, :12]), run_dir=tmp_path / "shape", settings=settings,
                progress=False)  # fmt: skip
    with pytest.raises(ParameterError, match=r"labels hold classes 0 … 5, but the model has 3 classes"):
        Trainer(_model(op), op, Labels(batch.extra["labels"] * 0 + 5 * (batch.extra["labels"] > 0)),
                run_dir=tmp_path / "classes", settings=settings, progress=False)  # fmt: skip
    two = {**PARAMS, "task": {"n_classes": 2, "depth": 2, "width": 4}}
    with pytest.raises(ParameterError, match="the model has 2 classes"):
        Trainer(_model(op, two), op, stream, run_dir=tmp_path / "two", settings=settings, progress=False)
    with pytest.raises(ShapeError, match=r"takes images \(B, 1, H, W\), got shape \(2, 3, 24, 24\)"):
        SegmentationUNet(3, depth=2, width=4)(torch.zeros(2, 3, 24, 24))
    assert not any((tmp_path / name).exists() for name in ("shape", "classes", "two"))


def test_the_benchmark_builds_the_mri_problem_from_the_ct_code_path():
    from learnrecon.benchmark import task_adapted as bench

    config = bench.sweep_config(0.5, 1, "start", "mri")
    assert config.model.params["reconstructor"]["name"] == "fbpconvnet" and config.data.operator["acceleration"] == 8
    assert config.training.task_mode == "joint" and config.training.task_c == 0.5 and config.data.seed == 1000
    assert bench.sweep_config(0.0, 0, "start", "mri").training.task_mode == "sequential"
    assert bench.runs_folder("runs", 1, "mri").as_posix() == "runs/mri/seed1"
    assert bench.runs_folder("runs", 1, "ct").as_posix() == "runs/seed1"  # the CT runs where they were trained
    with pytest.raises(ParameterError, match="unknown task-adapted problem 'pet'; choose one of ct, mri"):
        bench.sweep_config(0.5, 0, None, "pet")
