"""Task-adapted reconstruction: the joint loss, where its gradients go in each mode, labels through files and
streams, the segmentation scores, a tiny joint training, and the refusals of bad task input."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from learnrecon import phantoms
from learnrecon.cli import main
from learnrecon.config import from_dict
from learnrecon.data import load
from learnrecon.data.sources import make_training_data, make_validation_data
from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.evaluation import evaluate, segmentation_scores
from learnrecon.metrics import dice_per_class, pixel_accuracy
from learnrecon.models import SMALL_PARAMS, TaskAdapted, TaskOutput, build_model, load_model
from learnrecon.operators import ParallelBeam2D
from learnrecon.training import Trainer
from learnrecon.training.losses import JointLoss, soft_dice_loss

OP = ParallelBeam2D(24, 6, n_detectors=35)

TASK = {
    "model": {"name": "task-adapted", "params": SMALL_PARAMS["task-adapted"]},
    "data": {"operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35}},
    "training": {"steps": 4, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "threads": 1},
}


def _task_config(**training):
    values = json.loads(json.dumps(TASK))
    values["training"].update(training)
    return from_dict(values)


def _batch(n=2):
    x, labels = phantoms.random_ellipses(n, 24, seed=3, return_labels=True)
    return x.float(), OP(x.float()), labels


def test_the_joint_loss_is_the_weighted_sum_of_mse_and_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    image, x = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    logits, labels = torch.randn(2, 3, 4, 4, generator=gen), torch.randint(0, 3, (2, 4, 4), generator=gen)
    mse = ((image - x) ** 2).mean()
    p = logits.softmax(dim=1)
    ce = -p.gather(1, labels[:, None]).log().mean()  # by hand: minus the mean log-probability of the true class
    for c in (0.0, 0.3, 1.0):
        torch.testing.assert_close(JointLoss(c)(TaskOutput(image, logits), x, labels), (1 - c) * mse + c * ce)
    q = F.one_hot(labels, 3).movedim(-1, 1).float()
    dice = 1 - (2 * (p * q).sum((0, 2, 3)) / (p.sum((0, 2, 3)) + q.sum((0, 2, 3)))).mean()
    torch.testing.assert_close(soft_dice_loss(logits, labels), dice)
    torch.testing.assert_close(JointLoss(0.5, dice_weight=2.0)(TaskOutput(image, logits), x, labels),
                               0.5 * mse + 0.5 * (ce + 2 * dice))  # fmt: skip


def _gradients(model: TaskAdapted, loss: JointLoss) -> dict[str, bool]:
    x, y, labels = _batch()
    model.zero_grad()
    loss(model(y, OP), x, labels).backward()
    return {
        part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters())
        for part in ("reconstructor", "task")
    }


def _trained_a_little() -> TaskAdapted:
    """A small model whose zero-initialised output layers have moved, so that gradients reach every part."""
    torch.manual_seed(0)
    model = build_model("task-adapted", SMALL_PARAMS["task-adapted"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y, labels = _batch()
    for _ in range(3):
        optimizer.zero_grad()
        JointLoss(0.5)(model(y, OP), x, labels).backward()
        optimizer.step()
    return model


def test_gradients_reach_both_networks_only_where_the_mode_says():
    model = _trained_a_little()
    assert _gradients(model, JointLoss(0.5)) == {"reconstructor": True, "task": True}
    assert _gradients(model, JointLoss(0.0)) == {"reconstructor": True, "task": False}
    assert _gradients(model, JointLoss(1.0)) == {"reconstructor": True, "task": True}  # end to end
    model.freeze_reconstructor()  # sequential: the task network alone, on a fixed reconstructor
    assert _gradients(model, JointLoss(1.0)) == {"reconstructor": False, "task": True}
    model.train()
    assert not model.reconstructor.training and model.task.training


def test_segmentation_scores_against_a_hand_count():
    labels = torch.tensor([[[0, 1], [2, 2]]])
    logits = F.one_hot(torch.tensor([[[0, 1], [1, 2]]]), 3).movedim(-1, 1).float() * 10
    scores = segmentation_scores(logits, labels)
    # class 1: predicted {(0,1), (1,0)}, true {(0,1)} -> 2/3; class 2: predicted {(1,1)}, true {(1,0), (1,1)} -> 2/3
    assert scores["dice"] == pytest.approx(2 / 3) and scores["accuracy"] == pytest.approx(3 / 4)
    assert scores["dice_per_class"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    torch.testing.assert_close(dice_per_class(logits.argmax(1), labels, 4)[0, 3], torch.tensor(torch.nan).double(),
                               equal_nan=True)  # fmt: skip
    assert pixel_accuracy(labels, labels).item() == 1.0


def test_labels_survive_the_hdf5_round_trip_and_reach_the_training_batches(tmp_path):
    path = tmp_path / "d.h5"
    args = ["simulate", "--n", "3", "--size", "24", "--angles", "6", "--detectors", "35", "--out", str(path)]
    assert main([*args, "--quiet"]) == 0
    _, expected = phantoms.random_ellipses(3, 24, seed=0, return_labels=True)
    assert torch.equal(torch.stack([load(path)[i].labels for i in range(3)]), expected)
    values = json.loads(json.dumps(TASK))
    values["data"] = {"train_file": str(path)}
    stream, _ = make_training_data(from_dict(values).data, labels=True)
    batch = stream.batch(torch.arange(2))
    assert torch.equal(batch.extra["labels"], expected[stream.indices(torch.arange(2))])


def test_simulated_labels_are_the_phantoms_labels():
    config = _task_config()
    stream, op = make_training_data(config.data, labels=True)
    batch = stream.batch(torch.arange(4, 6))
    x, labels = phantoms.random_ellipses(2, 24, seed=config.data.seed, start=4, return_labels=True)
    assert torch.equal(batch.x, x.float()) and torch.equal(batch.extra["labels"], labels)
    validation = make_validation_data(config.data, op, labels=True)
    assert validation.extra["labels"].shape == (config.data.n_validation, 24, 24)


class _OneBatch:
    """A data source that gives the same batch at every step (a tiny training that must fit it)."""

    def __init__(self, batch):
        self.fixed = batch

    def batch(self, positions):
        return self.fixed

    def indices(self, positions):
        return positions.tolist()


def test_a_tiny_joint_training_lowers_both_losses(tmp_path):
    torch.manual_seed(0)
    config = _task_config(steps=80, batch_size=4, validate_every=40, checkpoint_every=40, task_weight=0.5, lr=1e-2)
    stream, op = make_training_data(config.data, labels=True)
    fixed = stream.batch(torch.arange(4))
    model = build_model("task-adapted", SMALL_PARAMS["task-adapted"])
    with torch.no_grad():
        before = JointLoss(0.5).terms(model.eval()(fixed.y, op), fixed.x, fixed.extra["labels"])
    trainer = Trainer(model, op, _OneBatch(fixed), validation=make_validation_data(config.data, op, labels=True),
                      run_dir=tmp_path / "run", settings=config.training, progress=False)  # fmt: skip
    trainer.train()
    model = load_model(tmp_path / "run" / "last").eval()
    with torch.no_grad():
        after = JointLoss(0.5).terms(model(fixed.y, op), fixed.x, fixed.extra["labels"])
    assert after["image"] < 0.9 * before["image"] and after["task"] < 0.7 * before["task"], (before, after)
    with (tmp_path / "run" / "validation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"dice", "cross_entropy", "accuracy", "task_loss"} <= set(rows[0]) and 0 <= float(rows[-1]["dice"]) <= 1
    result = evaluate(model, fixed.y, fixed.x, op)  # a task model is a reconstructor too: scored on its image
    assert result["reconstruction"].shape == fixed.x.shape


def test_the_sequential_mode_leaves_the_reconstructor_as_it_started(tmp_path):
    Trainer.from_config(_task_config(task_weight=0.0), tmp_path / "first", progress=False).train()
    second = _task_config(task_mode="sequential", init_from=str(tmp_path / "first" / "last"))
    Trainer.from_config(second, tmp_path / "second", progress=False).train()
    first, after = load_model(tmp_path / "first" / "last"), load_model(tmp_path / "second" / "last")
    for a, b in zip(first.reconstructor.parameters(), after.reconstructor.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.task.parameters(), after.task.parameters(), strict=True))


@pytest.mark.parametrize(
    ("training", "error", "message"),
    [
        ({"task_weight": 1.5}, ParameterError, r"training.task_weight \(C\) must lie in \[0, 1\], got 1.5"),
        ({"task_weight": -0.1}, ParameterError, r"must lie in \[0, 1\]"),
        ({"task_mode": "both"}, ParameterError, "training.task_mode must be one of joint, end-to-end, sequential"),
        ({"task_mode": "end-to-end", "task_weight": 0.5}, ParameterError, r"task loss alone \(C = 1\)"),
    ],
)
def test_bad_task_settings_are_named_and_nothing_is_written(tmp_path, training, error, message):
    with pytest.raises(error, match=message):
        Trainer.from_config(_task_config(**training), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_labels_the_model_cannot_take_and_files_without_labels_are_refused(tmp_path):
    values = json.loads(json.dumps(TASK))
    values["model"]["params"] = {**SMALL_PARAMS["task-adapted"], "task": {"n_classes": 2, "depth": 2, "width": 4}}
    values["training"]["task_weight"] = 0.5
    with pytest.raises(ParameterError, match="the model has 2 classes"):
        Trainer.from_config(from_dict(values), tmp_path / "classes", progress=False)
    stream, op = make_training_data(_task_config().data, labels=True)
    batch = stream.batch(torch.arange(2))
    x, y, labels = batch.x, batch.y, batch.extra["labels"]

    class WrongShape:
        def batch(self, positions):
            return x, y, {"labels": labels[:, :12]}

        def indices(self, positions):
            return positions.tolist()

    model = build_model("task-adapted", SMALL_PARAMS["task-adapted"])
    with pytest.raises(ShapeError, match=r"labels have shape \(2, 12, 24\); the images need \(n, 24, 24\)"):
        Trainer(model, op, WrongShape(), run_dir=tmp_path / "shape", settings=_task_config(task_weight=0.5).training,
                progress=False)  # fmt: skip
    with pytest.raises(ParameterError, match="needs a task-adapted model"):
        Trainer(build_model("lpd", SMALL_PARAMS["lpd"]), op, stream, run_dir=tmp_path / "lpd",
                settings=_task_config(task_weight=0.5).training, progress=False)  # fmt: skip
    path = tmp_path / "nolabels.h5"
    main(["simulate", "--n", "2", "--size", "24", "--angles", "6", "--detectors", "35", "--out", str(path), "--quiet"])
    import h5py

    with h5py.File(path, "a") as f:
        del f["labels"]
    values = json.loads(json.dumps(TASK))
    values["data"] = {"train_file": str(path)}
    values["training"]["task_weight"] = 0.5
    with pytest.raises(DataFileError, match="holds no labels"):
        Trainer.from_config(from_dict(values), tmp_path / "file", progress=False)
    assert not any((tmp_path / name).exists() for name in ("classes", "shape", "lpd", "file"))


def test_the_task_adapted_benchmark_trains_the_sweep_evaluates_and_reports(tmp_path, monkeypatch):
    from dataclasses import replace

    from learnrecon.benchmark import task_adapted as bench

    small = json.loads(json.dumps(bench.CT_BASE))
    small["model"]["params"] = SMALL_PARAMS["task-adapted"]
    small["data"]["operator"] = {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35}
    small["data"]["n_validation"] = 2
    small["training"].update(batch_size=2, validate_every=2, checkpoint_every=2, threads=1)
    mri = json.loads(json.dumps(bench.MRI_BASE))
    mri["model"]["params"]["reconstructor"]["params"].update(depth=2, width=4)
    mri["model"]["params"]["task"]["width"] = 4
    mri["data"]["operator"].update(image_size=24, n_coils=2)
    mri["data"]["n_validation"] = 2
    mri["training"].update(batch_size=2, validate_every=2, checkpoint_every=2, threads=1)
    steps = {"reconstruction_steps": 2, "task_steps": 2}
    problems = {"ct": replace(bench.PROBLEMS["ct"], base=small, **steps),
                "mri": replace(bench.PROBLEMS["mri"], base=mri, **steps)}  # fmt: skip
    monkeypatch.setattr(bench, "PROBLEMS", problems)
    monkeypatch.setattr(bench, "N_TEST", 3)
    summary = bench.run_task_benchmark(tmp_path / "out", full=True, runs_dir=tmp_path / "runs", progress=False)
    for name in ("ct", "mri"):
        assert sorted(r["C"] for r in summary["problems"][name]["rows"]) == sorted(bench.TASK_WEIGHTS)
        folder = bench.runs_folder(tmp_path / "runs", 0, name)
        first, sequential = load_model(folder / "reconstructor" / "last"), load_model(folder / "c0" / "last")
        for a, b in zip(first.reconstructor.parameters(), sequential.reconstructor.parameters(), strict=True):
            assert torch.equal(a, b)  # C = 0 is the sequential pipeline: the reconstructor as the first stage left it
        assert sequential.provenance["config"]["training"]["task_mode"] == "sequential"
    assert load_model(tmp_path / "runs" / "mri" / "seed0" / "c0.5" / "last").provenance["operator"]["type"] == "MRI"
    figures = ("tradeoff.png", "segmentations.png", "tradeoff-mri.png", "segmentations-mri.png")
    for name in ("report.md", "results.json", *(f"figures/{f}" for f in figures)):
        assert (tmp_path / "out" / name).is_file(), name
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## CT" in report and "## MRI" in report and report.count("sequential pipeline (C = 0)") == 2
    again = bench.run_task_benchmark(tmp_path / "out", full=True, runs_dir=tmp_path / "runs", overwrite=True,
                                     progress=False)  # fmt: skip
    assert again["problems"] == summary["problems"]  # finished runs are evaluated again, not trained again
    with pytest.raises(ParameterError, match="exists; pass --overwrite"):
        bench.run_task_benchmark(tmp_path / "out", full=True, runs_dir=tmp_path / "runs", progress=False)


def test_the_summary_finds_the_best_task_weight_and_where_the_task_loss_is_smallest():
    from learnrecon.benchmark.task_adapted import summarise

    rows = [
        {"seed": s, "C": c, "psnr": 30 - c, "ssim": 0.9, "dice": d + 0.01 * s, "task_loss": t, "image_loss": 0.01}
        for s in (0, 1)
        for c, d, t in ((0.0, 0.70, 0.5), (0.5, 0.80, 0.3), (1.0, 0.75, 0.4))
    ]
    s = summarise(rows)
    assert s["best_dice_C"] == 0.5 and s["task_loss_minimum_C"] == 0.5 and s["task_loss_minimum_inside"]
    assert s["dice_gain_over_sequential"] == pytest.approx(0.10) and s["psnr_change_at_best"] == pytest.approx(-0.5)
    assert s["by_C"]["0.5"]["dice_spread"] == pytest.approx(0.01)
