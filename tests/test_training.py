"""Trainer, configs and checkpoints: resume equality, integrity checks, bad input, DDP with gloo, the CLI."""

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from learnrecon import metrics, phantoms
from learnrecon.cli import main
from learnrecon.config import Config, from_dict, load_config, save_config
from learnrecon.data.sources import make_training_data, make_validation_data
from learnrecon.errors import DataFileError, LearnreconError, ParameterError, ShapeError
from learnrecon.evaluation import predict
from learnrecon.io.checkpoint import checkpoint_paths, load_checkpoint, training_history
from learnrecon.models import load_model
from learnrecon.training import Trainer, TrainingError, learning_rate
from learnrecon.training.losses import get_loss
from learnrecon.training.trainer import step_positions

SMALL = {
    "model": {"name": "lpd", "params": {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4}},
    "data": {
        "operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35},
        "n_validation": 2,
    },
    "training": {
        "steps": 6,
        "batch_size": 2,
        "validate_every": 3,
        "checkpoint_every": 3,
        "figure_every": 3,
        "log_every": 1,
        "threads": 1,
    },
}


def _config(**training) -> Config:
    values = json.loads(json.dumps(SMALL))
    values["training"].update(training)
    return from_dict(values)


def _weights(path):
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def _with_a_random_loss(trainer: Trainer) -> Trainer:
    """``trainer`` with a loss that draws from torch's RNG (a stand-in for dropout or random crops)."""
    loss = trainer.loss_fn
    trainer.loss_fn = lambda x_hat, x: loss(x_hat + 1e-2 * torch.randn_like(x_hat), x)
    return trainer


def test_resume_continues_bit_for_bit(tmp_path):
    """With the optimiser, the schedule and torch's RNG restored (the loss draws from it, and the RNG is
    moved on before the resume), the split run's losses and weights are the uninterrupted run's."""
    config = _config()
    full = _with_a_random_loss(Trainer.from_config(config, tmp_path / "full", progress=False)).train()
    first = _with_a_random_loss(Trainer.from_config(config, tmp_path / "split", progress=False)).train(until=3)
    torch.manual_seed(123)
    second = _with_a_random_loss(Trainer.from_config(config, tmp_path / "split", resume=True, progress=False)).train()
    assert first["losses"] + second["losses"] == full["losses"]
    a, b = _weights(tmp_path / "full" / "last"), _weights(tmp_path / "split" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4", "5", "6"]


def test_resume_restores_best_and_time_and_drops_log_rows_after_the_checkpoint(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False).train(until=3)
    _, meta = load_checkpoint(tmp_path / "last")
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("4,9.0,0.1,0.1,9.0\n")  # a row that a run killed after its checkpoint wrote
    resumed = Trainer.from_config(_config(), tmp_path, resume=True, progress=False)
    assert resumed.best_psnr == meta["best_psnr"] and math.isfinite(resumed.best_psnr)
    assert resumed.seconds == meta["seconds"] > 0
    resumed.train()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"] and float(rows[3]["loss"]) != 9.0


def test_the_trainer_follows_the_schedule_with_the_configured_adam(tmp_path):
    trainer = Trainer.from_config(_config(lr=1e-2, betas=[0.5, 0.9], weight_decay=0.01), tmp_path, progress=False)
    group = trainer.optimizer.param_groups[0]
    assert tuple(group["betas"]) == (0.5, 0.9) and group["weight_decay"] == 0.01
    trainer.train()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([learning_rate(s, 1e-2, 6, "cosine") for s in range(6)])


def test_best_is_kept_when_a_later_validation_is_worse(tmp_path):
    trainer = Trainer.from_config(_config(), tmp_path, progress=False)
    trainer.best_psnr = 1e9  # as if an earlier validation had been better than any to come
    trainer.train()
    assert not (tmp_path / "best.safetensors").exists()


def _gradient_norms_at_the_optimiser(trainer) -> list[float]:
    """The list the norm of the gradient the optimiser sees is appended to at each of its steps."""
    seen, step = [], trainer.optimizer.step

    def spy(*args, **kwargs):
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack(grads))))
        return step(*args, **kwargs)

    trainer.optimizer.step = spy
    return seen


def test_gradients_are_clipped_before_the_step(tmp_path):
    """Adam is nearly blind to the gradient's scale, so the clipping is checked at the optimiser itself."""
    trainer = Trainer.from_config(_config(steps=1, clip_grad_norm=1e-3), tmp_path, progress=False)
    seen = _gradient_norms_at_the_optimiser(trainer)
    trainer.train()
    logged = float(next(csv.DictReader((tmp_path / "metrics.csv").open()))["grad_norm"])
    assert logged > 1e-3 and seen[0] <= 1e-3 * (1 + 1e-5)


def test_the_losses_and_the_trainer_uses_the_configured_one(tmp_path):
    a, b = torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 2.0)
    assert float(get_loss("l1")(a, b)) == 2.0 and float(get_loss("mse")(a, b)) == 4.0
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(get_loss("ssim")(x, x)) == pytest.approx(0.0, abs=1e-6) and float(get_loss("ssim")(x, 1 - x)) > 0.5
    trainer = Trainer.from_config(_config(loss="l1", steps=1), tmp_path, progress=False)
    x0, y0 = trainer.data.batch(step_positions(0, 2))
    with torch.no_grad():
        expected = float(torch.nn.functional.l1_loss(trainer.model(y0, trainer.op), x0))
    assert trainer.train()["losses"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "change", [{"loss": "l1"}, {"clip_grad_norm": 0.5}, {"schedule": "constant"}, {"weight_decay": 0.1}]
)
def test_resuming_with_other_optimisation_settings_is_refused(tmp_path, change):
    Trainer.from_config(_config(), tmp_path, progress=False).train(until=1)
    with pytest.raises(DataFileError, match=f"differs from the run's in training.{next(iter(change))}"):
        Trainer.from_config(_config(**change), tmp_path, resume=True, progress=False)


def test_validation_psnr_is_the_reconstructions_against_the_validation_truth(tmp_path):
    values = json.loads(json.dumps(SMALL))
    values["model"]["params"]["init"] = "fbp"  # a zero start would make the PSNR blind to which truth
    values["training"]["steps"] = 3
    trainer = Trainer.from_config(from_dict(values), tmp_path, progress=False)
    trainer.train()
    x, y = trainer.validation
    x_hat = predict(trainer.model, y, trainer.op)
    expected = float(metrics.psnr(x_hat, x).mean())  # the one convention: each truth image's own range
    rows = list(csv.DictReader((tmp_path / "validation.csv").open()))
    assert float(rows[-1]["psnr"]) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(float(metrics.psnr(x_hat, x, data_range=1.0).mean()), rel=1e-3)


def test_the_psnr_loss_and_the_validation_psnr_are_the_same_metric(tmp_path):
    trainer = Trainer.from_config(_config(steps=3, loss="psnr"), tmp_path, progress=False)
    trainer.train()
    row = list(csv.DictReader((tmp_path / "validation.csv").open()))[-1]
    assert float(row["loss"]) == pytest.approx(-float(row["psnr"]), rel=1e-6)


def test_training_steps_run_in_training_mode_after_a_validation(tmp_path):
    trainer = Trainer.from_config(_config(steps=4, validate_every=1), tmp_path, progress=False)
    modes, forward = [], trainer.net.forward
    trainer.net.forward = lambda *args, **kwargs: (modes.append(trainer.model.training), forward(*args, **kwargs))[1]
    trainer.train()
    assert modes.count(True) == 4


def test_weights_of_another_shape_or_another_save_are_refused(tmp_path):
    from learnrecon.io import save_checkpoint
    from learnrecon.models import build_model

    params = {"n_iter": 1, "n_primal": 2, "n_dual": 2, "width": 4}
    meta = {"model": {"name": "lpd", "params": params}}
    save_checkpoint(tmp_path / "a", build_model("lpd", params), meta, rng=False)
    other = build_model("lpd", params)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    save_checkpoint(tmp_path / "b", other, meta, rng=False)
    wider = json.loads((tmp_path / "b.json").read_text())
    wider["model"]["params"]["width"] = 6  # the hash covers the weights, not the JSON
    (tmp_path / "b.json").write_text(json.dumps(wider))
    with pytest.raises(DataFileError, match="weight shapes do not match"):
        load_model(tmp_path / "b")
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(DataFileError, match=r"do not match a.json \(truncated, corrupt, or from another save\)"):
        load_model(tmp_path / "a")


def test_checkpointed_activations_train_as_without(tmp_path):
    plain = Trainer.from_config(_config(steps=3), tmp_path / "plain", progress=False).train()
    recomputed = Trainer.from_config(
        _config(steps=3, checkpoint_activations=True), tmp_path / "ckpt", progress=False
    ).train()
    assert recomputed["losses"] == pytest.approx(plain["losses"], rel=1e-5)


def test_worker_processes_simulate_the_same_batches(tmp_path):
    full = Trainer.from_config(_config(), tmp_path / "serial", progress=False).train()
    first = Trainer.from_config(_config(num_workers=2), tmp_path / "workers", progress=False).train(until=4)
    second = Trainer.from_config(_config(num_workers=2), tmp_path / "workers", resume=True, progress=False).train()
    assert first["losses"] + second["losses"] == full["losses"]


def test_init_from_continues_from_a_checkpoints_weights_and_records_it(tmp_path):
    Trainer.from_config(_config(steps=3), tmp_path / "first", progress=False).train()
    start = _weights(tmp_path / "first" / "last")
    trainer = Trainer.from_config(
        _config(steps=2, init_from=str(tmp_path / "first" / "last")), tmp_path / "next", progress=False
    )
    assert all(torch.equal(v, trainer.model.state_dict()[k.removeprefix("model/")]) for k, v in start.items())
    trainer.train()
    meta = load_checkpoint(tmp_path / "next" / "last")[1]
    assert meta["step"] == 2 and meta["started_from"]["step"] == 3
    first = load_checkpoint(tmp_path / "first" / "last")[1]
    assert meta["started_from"]["sha256"] == first["sha256"]
    history = training_history(meta)
    assert (history["rounds"], history["steps"]) == (2, 5)
    assert history["seconds"] == pytest.approx(meta["seconds"] + first["seconds"])
    resumed = Trainer.from_config(_config(steps=4, init_from="/gone"), tmp_path / "next", resume=True, progress=False)
    assert resumed.started_from == meta["started_from"]  # resuming keeps the record and needs no start file


def test_a_widened_fbpconvnet_starts_where_its_source_ended_and_records_the_widening(tmp_path):
    small = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 2}}}
    Trainer.from_config(
        from_dict({**SMALL, **small, "training": {**SMALL["training"], "steps": 2}}),
        tmp_path / "narrow",
        progress=False,
    ).train()
    script = Path(__file__).parents[1] / "scripts" / "widen_fbpconvnet.py"
    widened = tmp_path / "wide_start"
    subprocess.run([sys.executable, script, str(tmp_path / "narrow" / "best"), "3", str(widened)], check=True)
    wide = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 3}}}
    training = {**SMALL["training"], "steps": 1, "init_from": str(widened)}
    trainer = Trainer.from_config(from_dict({**SMALL, **wide, "training": training}), tmp_path / "wide", progress=False)
    narrow = load_model(tmp_path / "narrow" / "best")
    y = torch.randn(1, 1, *trainer.op.range_shape)
    torch.testing.assert_close(trainer.model.eval()(y, trainer.op), narrow(y, trainer.op), atol=1e-5, rtol=1e-5)
    trainer.train()
    record = load_checkpoint(tmp_path / "wide" / "last")[1]["started_from"]
    assert record["widened_from"]["width"] == 2 and record["step"] == 2
    # The widened start carries the narrow run's record, so its steps count once: 2 narrow + 1 wide.
    assert training_history(load_checkpoint(tmp_path / "wide" / "last")[1])["steps"] == 3


def test_init_from_may_switch_a_parameter_that_leaves_the_weights_alone(tmp_path):
    """FBPConvNet's ``symmetric`` changes what the model computes, not its weights: a plain run's checkpoint
    starts a symmetric run, which records the parameters it started from; the width still has to match."""
    plain = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 2}}}
    Trainer.from_config(
        from_dict({**SMALL, **plain, "training": {**SMALL["training"], "steps": 1}}), tmp_path / "plain", progress=False
    ).train()
    symmetric = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 2, "symmetric": True}}}
    training = {**SMALL["training"], "steps": 1, "init_from": str(tmp_path / "plain" / "last")}
    trainer = Trainer.from_config(
        from_dict({**SMALL, **symmetric, "training": training}), tmp_path / "symmetric", progress=False
    )
    torch.testing.assert_close(
        _weights(tmp_path / "plain" / "last"), {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    )
    trainer.train()
    record = load_checkpoint(tmp_path / "symmetric" / "last")[1]["started_from"]
    assert record["model_params"] == {"depth": 1, "width": 2}
    wider = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 3, "symmetric": True}}}
    with pytest.raises(DataFileError, match="init_from.*'width': 2.*'width': 3"):
        Trainer.from_config(from_dict({**SMALL, **wider, "training": training}), tmp_path / "wider", progress=False)


def test_init_from_another_model_is_refused_and_writes_nothing(tmp_path):
    Trainer.from_config(_config(steps=1), tmp_path / "first", progress=False).train()
    values = json.loads(json.dumps(SMALL))
    values["model"]["params"]["width"] = 6
    values["training"]["init_from"] = str(tmp_path / "first" / "last")
    with pytest.raises(DataFileError, match="init_from.*'width': 4.*'width': 6"):
        Trainer.from_config(from_dict(values), tmp_path / "wide", progress=False)
    assert not (tmp_path / "wide").exists()
    with pytest.raises(DataFileError, match="does not exist"):
        Trainer.from_config(_config(init_from=str(tmp_path / "missing")), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()


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


def test_run_folder_holds_logs_checkpoints_and_figures(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False).train()
    for name in ("config.yaml", "last.safetensors", "last.json", "best.json", "metrics.csv", "validation.csv"):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "validation-0000003.png",
        "validation-0000006.png",
    ]
    assert load_config(tmp_path / "config.yaml") == _config()
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["model"]["name"] == "lpd" and meta["step"] in (3, 6) and "validation" in meta
    model = load_model(tmp_path / "best")
    y = torch.zeros(1, 1, 6, 35)
    assert model(y, _op()).shape == (1, 1, 24, 24)


def _op():
    from learnrecon.operators import ParallelBeam2D

    return ParallelBeam2D(24, 6, n_detectors=35)


def test_refuses_to_overwrite_a_run(tmp_path):
    Trainer.from_config(_config(steps=1), tmp_path, progress=False).train()
    with pytest.raises(DataFileError, match="--resume"):
        Trainer.from_config(_config(steps=1), tmp_path, progress=False)
    with pytest.raises(DataFileError, match="cannot resume"):
        Trainer.from_config(_config(), tmp_path / "empty", resume=True, progress=False)


def test_cosine_learning_rate():
    assert learning_rate(0, 1e-3, 100, "cosine") == 1e-3
    assert learning_rate(50, 1e-3, 100, "cosine") == pytest.approx(5e-4)
    assert learning_rate(100, 1e-3, 100, "cosine") == pytest.approx(0.0)
    assert learning_rate(70, 1e-3, 100, "constant") == 1e-3


def test_psnr_loss_is_minus_the_mean_per_image_psnr_and_blind_to_each_images_scale():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    x_hat = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    loss = get_loss("psnr")(x_hat, x)
    assert torch.allclose(loss, -metrics.psnr(x_hat, x).mean())
    # one image ten times brighter, with ten times the error: mean PSNR, and the loss, do not change, MSE does
    scale = torch.tensor([10.0, 1.0, 1.0]).reshape(3, 1, 1, 1)
    assert torch.allclose(get_loss("psnr")(scale * x_hat, scale * x), loss)
    assert get_loss("mse")(scale * x_hat, scale * x) > 30 * get_loss("mse")(x_hat, x)
    # its gradient is MSE's, image by image, divided by that image's MSE (times 10/ln 10, over the batch of 3)
    loss.backward()
    err = (x_hat - x).detach()
    mse_b = err.pow(2).flatten(1).mean(1).reshape(3, 1, 1, 1)
    expected = (10 / torch.log(torch.tensor(10.0))) / 3 * (2 * err / err[0].numel()) / mse_b
    assert torch.allclose(x_hat.grad, expected, rtol=1e-4)


def test_ssim_loss_is_one_minus_the_benchmarks_mean_ssim_and_blind_to_each_images_scale():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    x_hat = x + 0.1 * torch.randn_like(x)
    loss = get_loss("ssim")(x_hat, x)
    assert torch.allclose(loss, 1 - metrics.ssim(x_hat, x).mean())
    scale = torch.tensor([4.0, 1.0, 0.5]).reshape(3, 1, 1, 1)  # raw ellipse sums have ranges of 0.8-2.0
    assert torch.allclose(get_loss("ssim")(scale * x_hat, scale * x), loss)


def test_an_unknown_loss_names_the_choices():
    with pytest.raises(ParameterError, match="unknown loss 'psnr2'.*mse, l1, ssim, psnr"):
        get_loss("psnr2")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer.from_config(_config(), tmp_path, progress=False)
    trainer.train(until=3)
    before = (tmp_path / "last.safetensors").read_bytes()
    real_loss = trainer.loss_fn
    trainer.loss_fn = lambda a, b: real_loss(a, b) * float("nan")
    with pytest.raises(TrainingError, match=r"loss is nan at step 4 \(batch of samples \[6, 7\]\).*step 3"):
        trainer.train()
    assert (tmp_path / "last.safetensors").read_bytes() == before


def test_a_stop_names_the_checkpoint_actually_kept_and_the_samples_of_the_batch(tmp_path):
    def poisoned(trainer):
        real_loss = trainer.loss_fn
        trainer.loss_fn = lambda a, b: real_loss(a, b) * float("nan")
        return trainer

    with pytest.raises(TrainingError, match="at step 1 .*no checkpoint had been saved yet"):
        poisoned(Trainer.from_config(_config(), tmp_path / "fresh", progress=False)).train()
    Trainer.from_config(_config(), tmp_path / "resumed", progress=False).train(
        until=1
    )  # checkpoint at its last step, 1
    with pytest.raises(TrainingError, match=r"at step 2 .*resumed/last \(step 1\)"):
        poisoned(Trainer.from_config(_config(), tmp_path / "resumed", resume=True, progress=False)).train()
    trainer = Trainer.from_config(_config(), tmp_path / "bad_data", progress=False)
    real_batch = trainer.data.batch
    trainer.data.batch = lambda positions: real_batch(positions)._replace(y=real_batch(positions).y * float("nan"))
    stopped = r"non-finite data \(measurements contains .* NaN.*\) at step 1 \(batch of samples \[0, 1\]\)"
    with pytest.raises(TrainingError, match=stopped):
        trainer.train()


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


def test_resuming_with_another_experiment_is_refused_and_writes_nothing(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False).train(until=3)
    saved = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "metrics.csv", "last.json")}
    with pytest.raises(DataFileError, match="differs from the run's in training.batch_size, training.lr"):
        Trainer.from_config(_config(batch_size=4, lr=5e-2), tmp_path, resume=True, progress=False)
    values = json.loads(json.dumps(SMALL))
    values["model"] = {"name": "lgd", "params": {"n_iter": 2, "width": 4}}
    with pytest.raises(DataFileError, match="holds model 'lpd'"):
        Trainer.from_config(from_dict(values), tmp_path, resume=True, progress=False)
    assert saved == {name: (tmp_path / name).read_bytes() for name in saved}
    # where and how long it runs, and what it logs, may change
    summary = Trainer.from_config(
        _config(steps=7, threads=2, log_every=2), tmp_path, resume=True, progress=False
    ).train()
    assert summary["steps"] == 7


def test_weights_only_checkpoints_are_a_start_not_a_run_to_resume(tmp_path):
    from learnrecon.io.checkpoint import save_checkpoint

    trainer = Trainer.from_config(_config(), tmp_path / "run", progress=False)
    trainer.train(until=1)
    save_checkpoint(tmp_path / "run" / "last", trainer.model, trainer.metadata(), optimizer=None, rng=False)
    with pytest.raises(DataFileError, match="holds weights only .*training.init_from"):
        Trainer.from_config(_config(), tmp_path / "run", resume=True, progress=False)


def test_overwrite_clears_the_old_runs_figures_and_events_and_figures_follow_figure_every(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False).train()
    (tmp_path / "tensorboard").mkdir(exist_ok=True)
    (tmp_path / "tensorboard" / "events.old").write_text("old")
    Trainer.from_config(
        _config(steps=5, validate_every=2, figure_every=3), tmp_path, overwrite=True, progress=False
    ).train()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "validation-0000003.png",
        "validation-0000005.png",
    ]
    assert not (tmp_path / "tensorboard" / "events.old").exists()
    steps = [row.split(",")[0] for row in (tmp_path / "validation.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "3", "4", "5"]


def test_corrupt_and_mismatched_checkpoints_are_refused(tmp_path):
    Trainer.from_config(_config(steps=1), tmp_path, progress=False).train()
    weights, info = checkpoint_paths(tmp_path / "last")
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFileError, match="do not match"):
        load_model(weights)
    weights.write_bytes(good)
    meta = json.loads(info.read_text())
    info.write_text(json.dumps({**meta, "model": {"name": "lgd", "params": {}}}))
    with pytest.raises(DataFileError, match="do not match model 'lgd'|do not fit"):
        load_model(weights)
    info.write_text("{not json")
    with pytest.raises(DataFileError, match="corrupt"):
        load_model(weights)
    info.unlink()
    with pytest.raises(DataFileError, match="does not exist"):
        load_model(weights)


def test_an_interrupt_while_a_checkpoint_replaces_the_last_waits_for_the_pair(tmp_path, monkeypatch):
    import signal

    from learnrecon.io import checkpoint as checkpoint_module

    trainer = Trainer.from_config(_config(steps=2), tmp_path, progress=False)
    trainer.train(until=1)
    real_replace, calls = os.replace, []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C between the weights and their JSON
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", interrupted_replace)
    trainer.step = 2
    # Python's own SIGINT handler, whatever the runner left (a background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.save("last")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 2
    _, meta = load_checkpoint(tmp_path / "last")  # the weights match their JSON
    assert meta["step"] == 2


def test_a_pickle_is_not_a_checkpoint(tmp_path):
    torch.save({"x": torch.zeros(2)}, tmp_path / "model.safetensors")
    (tmp_path / "model.json").write_text(json.dumps({"format": "learnrecon-checkpoint", "sha256": "0"}))
    with pytest.raises(DataFileError):
        load_model(tmp_path / "model.safetensors")


def test_half_precision_weights_take_half_the_space_and_load_as_float32(tmp_path):
    from learnrecon.io.checkpoint import save_checkpoint
    from learnrecon.operators.registry import build_operator

    Trainer.from_config(_config(steps=1), tmp_path, progress=False).train()
    model = load_model(tmp_path / "last")
    meta = {k: model.provenance[k] for k in ("model", "operator")}
    full = save_checkpoint(tmp_path / "full", model, meta, rng=False)
    half = save_checkpoint(tmp_path / "half", model, meta, rng=False, weights_dtype=torch.float16)
    assert load_checkpoint(half)[0]["model/steps.0.dual.0.weight"].dtype == torch.float16

    def payload(path):  # bytes of tensor data; the JSON header of so small a model is a third of the file
        return sum(t.numel() * t.element_size() for t in load_checkpoint(path)[0].values())

    assert payload(half) == payload(full) // 2
    rounded = load_model(half)
    assert rounded.provenance["weights_dtype"] == "float16"
    for (name, value), (_, loaded) in zip(model.state_dict().items(), rounded.state_dict().items(), strict=True):
        assert loaded.dtype == value.dtype, name
        assert torch.allclose(loaded, value, rtol=1e-3, atol=1e-4), name
    op = build_operator(meta["operator"])
    y = op(phantoms.random_ellipses(1, 24, seed=5))
    with torch.no_grad():
        assert torch.allclose(rounded(y, op), model(y, op), atol=1e-2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"lr": "fast"}}, "'training.lr' must be float"),
        ({"training": {"learning_rate": 1e-3}}, "unknown config key training.learning_rate"),
        ({"optimiser": {}}, "unknown config section 'optimiser'"),
        ({"training": {"betas": [0.9]}}, "training.betas"),
        ({"data": {"operator": {"type": "ParallelBeam2D", "image_size": 12.5}}}, "image_size must be a positive int"),
        ({"data": {"operator": {"type": "Radon"}}}, "unknown operator type 'Radon'.*known types: Blur"),
        ({"data": {"operator": {"type": "ParallelBeam2D", "n_angle": 3}}}, "ParallelBeam2D has no argument 'n_angle'"),
        ({"data": {"operator": "ParallelBeam2D"}}, "'data.operator' must be a mapping"),
        ({"training": {"steps": 0}}, "training.steps must be >= 1"),
        ({"training": {"loss": "huber"}}, "unknown loss 'huber'"),
        ({"training": {"num_workers": -1}}, "training.threads and training.num_workers must be >= 0"),
        (
            {"data": {"phantom": {"type": "ellipses", "scaling": "unit"}}},
            "data.phantom.scaling must be one of minmax, none",
        ),
        ({"data": {"phantom": {"type": "shepp-logan"}}}, "data.phantom.type must be one of ellipses, dival-ellipses"),
        (
            {"data": {"phantom": {"type": "dival-ellipses", "scaling": "none"}}},
            "dival-ellipses takes supersample, not 'scaling'",
        ),
        ({"data": {"simulation": {"upsampling": "bilinear"}}}, "data.simulation takes size \\(required\\)"),
        ({"model": {"name": "lpd", "params": {"depth": "3"}}}, "'depth' must be int"),
        ({"training": {"device": "gpu0"}}, "training.device 'gpu0' is not a device"),
        ({"data": {"n_validation": 0}}, "data.n_validation must be >= 1"),
        (
            {"model": {"name": "fbpconvnet", "params": {}}, "training": {"checkpoint_activations": True}},
            "checkpoint_activations applies to unrolled models; fbpconvnet is not one",
        ),
    ],
)
def test_bad_configs_name_the_key(tmp_path, change, message):
    values = json.loads(json.dumps(SMALL))
    for section, entries in change.items():
        values.setdefault(section, {}).update(entries)
    with pytest.raises(ParameterError, match=message):
        Trainer.from_config(from_dict(values), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written


def test_config_files_that_are_empty_not_text_or_write_1e_3_are_read_as_meant(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(DataFileError, match="is empty"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "latin1.yaml").write_bytes("model: {name: lpd}  # réglé\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_config(tmp_path / "latin1.yaml")
    (tmp_path / "lr.yaml").write_text("training: {lr: 1e-3, steps: 10}\n")
    assert yaml.safe_load((tmp_path / "lr.yaml").read_text())["training"]["lr"] == "1e-3"  # YAML 1.1
    assert load_config(tmp_path / "lr.yaml").training.lr == 1e-3


def test_a_file_as_the_output_folder_is_refused(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(DataFileError, match="is a file"):
        Trainer.from_config(_config(), tmp_path / "afile", progress=False)
    assert (tmp_path / "afile").read_text() == "mine"


def test_config_yaml_round_trip_and_safe_loading(tmp_path):
    config = _config()
    assert load_config(save_config(config, tmp_path / "c.yaml")) == config
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DataFileError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_shipped_configs_load():
    """Every config loads at 128² (but LoDoPaB-CT's, at its own size); the paper-length ones keep the published
    schedule (batch 5, 100k steps, lr 1e-3), where the rounds that continue shipped weights may change the batch."""
    root = Path(__file__).resolve().parents[1]
    paths = sorted([*root.joinpath("configs").glob("*.yaml"), *root.joinpath("src/learnrecon/configs").glob("*.yaml")])
    configs = {path: load_config(path) for path in paths}
    for path, config in configs.items():
        if config.data.lodopab is not None:  # LoDoPaB-CT's own files and geometry (tests/test_lodopab.py)
            continue
        assert config.data.operator_section()["image_size"] == 128, path
    paper = [p for p in paths if p.stem.endswith("_paper") or p.stem == "lpd_dival"]
    assert len(paper) == 4
    for path in paper:
        t = configs[path].training
        assert (t.batch_size, t.steps, t.lr, t.init_from) == (5, 100_000, 1e-3, None), path


def test_a_config_with_a_key_twice_is_refused(tmp_path):
    (tmp_path / "twice.yaml").write_text("model: {name: lpd}\ntraining:\n  lr: 1.0e-3\n  steps: 10\n  lr: 5.0e-4\n")
    with pytest.raises(DataFileError, match="key 'lr' appears twice in one section"):
        load_config(tmp_path / "twice.yaml")


def test_a_run_stopped_before_its_first_checkpoint_says_to_start_again(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False)  # writes config.yaml and figures/, no checkpoint yet
    with pytest.raises(DataFileError, match="stopped before its first checkpoint; pass --overwrite"):
        Trainer.from_config(_config(), tmp_path, progress=False)


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


def test_the_flat_data_keys_of_earlier_versions_are_read_with_a_warning_that_says_what_to_write():
    legacy = {"geometry": "parallel", "image_size": 24, "n_angles": 6, "n_detectors": 35, "phantom": "ellipses",
              "ellipse_scaling": "none", "simulation_size": 48, "simulation_upsampling": "bilinear"}  # fmt: skip
    with pytest.warns(FutureWarning, match=r"deprecated; write the data section as data:\n  operator: \{type: Par"):
        old = from_dict({"data": legacy}).data
    new = from_dict(
        {
            "data": {
                "operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35},
                "phantom": {"type": "ellipses", "scaling": "none", "supersample": 1},
                "simulation": {"size": 48, "upsampling": "bilinear"},
            }
        }
    ).data
    assert old == new
    with pytest.warns(FutureWarning):  # those versions' default scaling was min-max
        assert from_dict({"data": {"image_size": 24}}).data.phantom["scaling"] == "minmax"
    with pytest.warns(FutureWarning):
        fan = from_dict({"data": {"geometry": "fan", "image_size": 24, "n_angles": 6}}).data.operator
    assert fan == {"type": "FanBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 183,  # those versions' default
                   "source_distance": 48.0, "detector_distance": 24.0}  # fmt: skip
    with pytest.raises(ParameterError, match="either an operator section or the old geometry keys"):
        from_dict({"data": {"image_size": 24, "operator": {"type": "Identity", "shape": [24, 24]}}})


def test_a_model_trains_on_a_blur_operator_from_a_yaml_config(tmp_path):
    config = tmp_path / "blur.yaml"
    values = json.loads(json.dumps(SMALL))
    values["data"]["operator"] = {"type": "Blur", "image_size": 24, "sigma": 1.5}
    values["model"] = {"name": "proximal", "params": {"n_iter": 2, "width": 4}}
    values["training"].update(steps=2, validate_every=2, checkpoint_every=2)
    config.write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    model = load_model(tmp_path / "run" / "last")
    assert model.provenance["operator"]["type"] == "Blur" and model.provenance["step"] == 2
    _, op = make_training_data(load_config(config).data)
    y = op(phantoms.random_ellipses(1, 24, seed=0))
    assert model(y, op).shape == (1, 1, 24, 24)


def test_a_trainer_is_built_from_objects_in_a_few_lines(tmp_path):
    from learnrecon.data.sources import PhantomSource, SimulatedPairs, parse_noise
    from learnrecon.models import build_model
    from learnrecon.operators import Blur, gaussian_kernel

    op = Blur(gaussian_kernel(1.0), 16)
    data = SimulatedPairs(op, parse_noise("gaussian:0.01"), PhantomSource("ellipses"), seed=0)
    validation = data.batch(torch.arange(100, 102))
    trainer = Trainer(build_model("proximal", {"n_iter": 2, "width": 4}), op, data, validation=validation,
                      run_dir=tmp_path / "run", settings=_config(steps=3).training, progress=False)  # fmt: skip
    summary = trainer.train()
    assert summary["steps"] == 3 and math.isfinite(summary["best_psnr"])
    assert load_model(tmp_path / "run" / "best").provenance["model"] == {
        "name": "proximal",
        "params": {"n_iter": 2, "width": 4},
    }


def test_a_model_that_does_not_accept_the_operators_spaces_is_refused_before_a_step(tmp_path):
    from learnrecon.data.sources import PhantomSource, SimulatedPairs, parse_noise
    from learnrecon.models import build_model
    from learnrecon.operators import MRI, cartesian_mask

    op = MRI(cartesian_mask((16, 16), 4))
    data = SimulatedPairs(op, parse_noise("none"), PhantomSource("ellipses"), seed=0)
    with pytest.raises(LearnreconError, match="model lpd cannot reconstruct MRI's data: .*complex"):
        Trainer(build_model("lpd", SMALL["model"]["params"]), op, data, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.lock").exists()


def test_a_data_source_whose_shapes_do_not_fit_the_operator_is_refused_before_a_step(tmp_path):
    from learnrecon.data.sources import Pairs
    from learnrecon.models import build_model

    class Wrong:
        def batch(self, positions):
            return Pairs(torch.zeros(len(positions), 1, 20, 20), torch.zeros(len(positions), 1, 6, 35))

        def indices(self, positions):
            return positions.tolist()

    _, op = make_training_data(_config().data)
    with pytest.raises(
        ShapeError, match=r"truth have shape \(5, 1, 20, 20\) but ParallelBeam2D's images need \(batch, 1, 24, 24\)"
    ):
        Trainer(build_model("lpd", SMALL["model"]["params"]), op, Wrong(), run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    config = tmp_path / "small.yaml"
    values = json.loads(json.dumps(SMALL))
    values["training"].update(steps=10**6, checkpoint_every=10**6, validate_every=10**6, figure_every=10**6)
    config.write_text(yaml.safe_dump(values))
    run = ["-m", "learnrecon.cli", "train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]
    first = subprocess.Popen([sys.executable, *run], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "config.yaml").exists() and time.time() < deadline:
            time.sleep(0.2)
        second = subprocess.run([sys.executable, *run, "--overwrite"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert (
            f"is being written by process {first.pid} " in second.stderr and "learnrecon train (lpd)" in second.stderr
        )
        assert (tmp_path / "run" / "config.yaml").exists()  # the refused run removed nothing
    finally:
        first.kill()
        first.wait()
    with pytest.warns(UserWarning, match="taking over the stale lock"):  # its holder was killed
        Trainer.from_config(_config(), tmp_path / "run", overwrite=True, progress=False).train(until=1)


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


def test_cli_train_and_evaluate(tmp_path, capsys):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp_path / "run"
    early = ["train", "--config", str(config), "--out", str(tmp_path / "early"), "--until", "2", "--quiet"]
    assert main(early) == 0
    assert "to step 2 of 6 (" in (said := capsys.readouterr().out) and "no validation yet (every 3 steps)" in said
    nothing = ["train", "--config", str(config), "--out", str(tmp_path / "nothing"), "--until", "0", "--quiet"]
    assert main(nothing) == 0 and "no checkpoint saved" in capsys.readouterr().out
    assert main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "trained lpd to step 6 of 6" in said and f"checkpoints in {run}/last and {run}/best" in said
    data = tmp_path / "test.h5"
    assert main(["simulate", "--n", "3", "--size", "24", "--angles", "6", "--detectors", "35",
                 "--noise", "relative:0.05", "--seed", "7", "--out", str(data), "--quiet"]) == 0  # fmt: skip
    out = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", str(run / "best.safetensors"), "--data", str(data), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert len(result["per_image"]["psnr"]) == 3 and result["psnr"] == pytest.approx(
        sum(result["per_image"]["psnr"]) / 3
    )
    assert main([*args, "--quiet"]) == 1  # refuses to overwrite
    averaged_out = tmp_path / "averaged.json"
    averaged = ["evaluate", "--checkpoint", str(run / "best.safetensors"), "--data", str(data), "--symmetry-average"]
    assert main([*averaged, "--out", str(averaged_out), "--quiet"]) == 0
    assert "averaged over the geometry's symmetries" in capsys.readouterr().out
    average = json.loads(averaged_out.read_text())
    assert average["symmetry_average"] and not result["symmetry_average"]
    assert len(average["per_image"]["psnr"]) == 3 and average["psnr"] != result["psnr"]
    denoising = tmp_path / "denoise.h5"
    assert main(["simulate", "--n", "2", "--size", "24", "--geometry", "denoise", "--noise", "gaussian:0.1",
                 "--out", str(denoising), "--quiet"]) == 0  # fmt: skip
    refused = tmp_path / "refused.json"
    assert main([*averaged[:3], "--data", str(denoising), "--symmetry-average", "--out", str(refused)]) == 1
    assert "ParallelBeam2D" in capsys.readouterr().err and not refused.exists()
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_train_resume_overwrite_and_max_minutes(tmp_path, monkeypatch):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp_path / "run"
    train = ["train", "--config", str(config), "--out", str(run), "--quiet"]
    assert main([*train, "--until", "3"]) == 0
    assert main([*train, "--resume"]) == 0 and load_checkpoint(run / "last")[1]["step"] == 6
    assert main([*train, "--overwrite", "--until", "2"]) == 0 and load_checkpoint(run / "last")[1]["step"] == 2
    seen = {}

    def train_for(self, until=None, max_seconds=None):
        seen["max_seconds"] = max_seconds
        return {"steps": 0, "best_psnr": -math.inf, "seconds": 0.0, "losses": []}

    monkeypatch.setattr(Trainer, "train", train_for)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "timed"), "--max-minutes", "1.5"]) == 0
    assert seen["max_seconds"] == 90.0


def test_cli_evaluate_a_shipped_model_on_selected_items(tmp_path):
    data = tmp_path / "d.h5"
    assert main(["simulate", "--n", "3", "--size", "32", "--angles", "6", "--out", str(data), "--quiet"]) == 0
    out = tmp_path / "e.json"
    evaluate = ["evaluate", "--pretrained", "lgd-ellipses", "--data", str(data), "--index", "1:3", "--quiet"]
    assert main([*evaluate, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "lgd-ellipses" and result["index"] == [1, 2] and len(result["per_image"]["psnr"]) == 2


def test_cli_evaluate_checks_before_it_works_and_warns_of_another_geometry(tmp_path, capsys):
    data = tmp_path / "test.h5"
    assert main(["simulate", "--n", "2", "--size", "24", "--angles", "8", "--detectors", "35",
                 "--out", str(data), "--quiet"]) == 0  # fmt: skip
    Trainer.from_config(_config(steps=1), tmp_path / "run", progress=False).train()
    checkpoint = str(tmp_path / "run" / "last.safetensors")
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--batch-size", "0"]) == 1
    assert "--batch-size must be a positive integer" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--device", "gpu0"]) == 1
    assert "--device 'gpu0' is not a device" in capsys.readouterr().err
    out = tmp_path / "new" / "sub" / "r.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nothing"), "--data", str(data), "--out", str(out)]) == 1
    assert not (tmp_path / "new").exists()
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--out", str(out), "--quiet"]) == 0
    assert "differs from the one the model was trained with in angles" in capsys.readouterr().err
    assert json.loads(out.read_text())["per_image"]["psnr"] and not list(out.parent.glob(".*tmp*"))


def _data_file(path: Path, *extra: str, **replaced) -> Path:
    """A ``learnrecon simulate`` file of 3 items at the SMALL geometry, with datasets ``replaced`` by arrays."""
    import h5py

    args = ["simulate", "--n", "3", "--size", "24", "--angles", "6", "--detectors", "35", *extra]
    assert main([*args, "--out", str(path), "--quiet"]) == 0
    with h5py.File(path, "a") as f:
        for name, array in replaced.items():
            del f[name]
            f[name] = array
    return path


def test_data_files_that_cannot_give_pairs_are_refused_before_the_run_writes(tmp_path):
    import numpy as np

    good = _data_file(tmp_path / "good.h5")
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
        values["data"][key] = str(_data_file(tmp_path / f"bad{i}.h5", **replaced))
        with pytest.raises(LearnreconError, match=message):
            Trainer.from_config(from_dict(values), tmp_path / f"run{i}", progress=False)
        assert not (tmp_path / f"run{i}").exists()
    values = json.loads(json.dumps(SMALL))
    values["data"]["validation_file"] = str(_data_file(tmp_path / "fan.h5", "--geometry", "fan"))
    with pytest.raises(ShapeError, match="simulated with another operator than the training data: it differs in"):
        Trainer.from_config(from_dict(values), tmp_path / "fan_run", progress=False)


def test_cli_evaluate_refuses_an_empty_file_and_a_truth_with_nan(tmp_path, capsys):
    import numpy as np

    Trainer.from_config(_config(steps=1), tmp_path / "run", progress=False).train()
    good = _data_file(tmp_path / "good.h5")
    x, y = load_h5_array(good, "x"), load_h5_array(good, "y")
    empty = _data_file(tmp_path / "empty.h5", x=x[:0], y=y[:0], labels=load_h5_array(good, "labels")[:0])
    x[2, 0, 3, 4] = np.nan
    nan = _data_file(tmp_path / "nan.h5", x=x)
    evaluate = ["evaluate", "--checkpoint", str(tmp_path / "run" / "last.safetensors"), "--quiet", "--data"]
    assert main([*evaluate, str(empty), "--out", str(tmp_path / "e.json")]) == 1
    assert "holds no samples" in capsys.readouterr().err and not (tmp_path / "e.json").exists()
    assert main([*evaluate, str(nan), "--out", str(tmp_path / "n.json")]) == 1
    assert "the truth of 1 item(s) holds NaN or Inf, the first item 2" in capsys.readouterr().err
    assert not (tmp_path / "n.json").exists()
    assert main([*evaluate, str(nan), "--index", "1:3", "--out", str(tmp_path / "n.json")]) == 1
    assert "the first item 2" in capsys.readouterr().err  # the file's item number, not the selection's
    assert main([*evaluate, str(nan), "--index", "0:2", "--out", str(tmp_path / "n.json")]) == 0


def test_cli_evaluate_names_and_takes_the_psnr_peak(tmp_path, capsys):
    """PSNR with each truth image's own range by default (the library's one convention), or a fixed peak."""
    import math

    from learnrecon.data import load

    Trainer.from_config(_config(steps=1), tmp_path / "run", progress=False).train()
    checkpoint = str(tmp_path / "run" / "last.safetensors")
    data = _data_file(tmp_path / "d.h5", "--ellipse-scaling", "none")
    results = {}
    for peak in ("1", "2", "image"):
        out = tmp_path / f"{peak}.json"
        assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--data-range", peak,
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
        results[peak] = json.loads(out.read_text())
        assert results[peak]["data_range"] == (peak if peak == "image" else float(peak))
    said = capsys.readouterr().out
    assert "(data range 1)" in said and "(data range 2)" in said and "(each image's own range)" in said
    default = tmp_path / "default.json"
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--out", str(default), "--quiet"]) == 0
    assert json.loads(default.read_text())["per_image"] == results["image"]["per_image"]
    for a, b in zip(results["1"]["per_image"]["psnr"], results["2"]["per_image"]["psnr"], strict=True):
        assert b == pytest.approx(a + 20 * math.log10(2), abs=1e-4)
    dataset = load(data)
    x = torch.stack([dataset[i].x for i in range(3)])
    with torch.no_grad():
        x_hat = load_model(checkpoint)(torch.stack([dataset[i].y for i in range(3)]), dataset.op)
    expected = metrics.psnr(x_hat, x, data_range=None)
    torch.testing.assert_close(torch.tensor(results["image"]["per_image"]["psnr"]), expected.float(), atol=1e-4, rtol=0)
    assert not (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)) == 1).any()  # raw ellipses: the peaks differ
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--data-range", "0"]) == 1
    assert "--data-range must be a positive number or 'image', got '0'" in capsys.readouterr().err


def load_h5_array(path: Path, name: str):
    import h5py

    with h5py.File(path, "r") as f:
        return f[name][()]


def test_cli_train_interrupted_says_where_to_resume(tmp_path, capsys, monkeypatch):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    real = Trainer._after_step

    def interrupted_at_step_4(self, loss, grad_norm):
        real(self, loss, grad_norm)
        if self.step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_after_step", interrupted_at_step_4)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    assert f"interrupted at step 4; continue from {tmp_path / 'run'}/last (step 3) with --resume" in (
        capsys.readouterr().err
    )


def test_each_rank_takes_a_consecutive_block_of_the_batch():
    """Ranks split a step's positions into consecutive blocks (what the simulated stream draws) covering the
    batch once; the blocks hold the samples one process would draw for the whole batch."""
    blocks = [step_positions(2, 6, rank, 3) for rank in range(3)]
    assert [b.tolist() for b in blocks] == [[12, 13], [14, 15], [16, 17]]
    stream, _ = make_training_data(_config().data)
    whole = stream.batch(step_positions(2, 6))
    torch.testing.assert_close(torch.cat([stream.batch(b).y for b in blocks]), whole.y)


def test_batch_norm_is_synchronised_across_processes_on_a_gpu_and_named_elsewhere():
    from learnrecon.models import build_model
    from learnrecon.training import synchronise_batch_norm

    model = build_model("fbpconvnet", {"depth": 2, "width": 4})
    with pytest.warns(UserWarning, match="each process normalises with its part of the batch"):
        assert synchronise_batch_norm(model, torch.device("cpu")) is model
    synced = synchronise_batch_norm(model, torch.device("cuda"))  # module surgery only: no GPU needed
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert synced.state_dict().keys() == build_model("fbpconvnet", {"depth": 2, "width": 4}).state_dict().keys()
    lpd = build_model("lpd", SMALL["model"]["params"])
    assert synchronise_batch_norm(lpd, torch.device("cpu")) is lpd  # no batch norm, no warning


def _torchrun(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    command = [*launcher, "-m", "learnrecon.cli", "train", "--config", str(config), "--out", str(out), "--quiet"]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=300)


def test_distributed_data_parallel_with_gloo_matches_one_process(tmp_path):
    """Two processes with half the batch each (two simulated samples) take the same steps as one process with
    the whole batch; a time limit stops both at the same step (one stopping alone would hang the other)."""
    values = json.loads(json.dumps(SMALL))
    values["training"]["batch_size"] = 4
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "ddp")
    assert done.returncode == 0, done.stderr[-2000:]
    single = Trainer.from_config(from_dict(values), tmp_path / "single", progress=False)
    single.train()
    a, b = _weights(tmp_path / "ddp" / "last"), _weights(tmp_path / "single" / "last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert json.loads((tmp_path / "ddp" / "last.json").read_text())["world_size"] == 2
    logged = [
        [float(r["loss"]) for r in csv.DictReader((tmp_path / run / "metrics.csv").open())] for run in ("ddp", "single")
    ]
    assert logged[0] == pytest.approx(logged[1], rel=1e-4)  # the processes' mean loss, logged once per step

    values["training"].update(steps=100_000, validate_every=100_000, figure_every=100_000, checkpoint_every=100_000)
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "timed", "--max-minutes", "0.02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < json.loads((tmp_path / "timed" / "last.json").read_text())["step"] < 100_000


def test_distributed_errors_say_which_process_printed_them(tmp_path):
    """A batch that two processes cannot share: each process exits non-zero with the error, labelled with its
    rank, and no run folder is made."""
    values = json.loads(json.dumps(SMALL))
    values["training"]["batch_size"] = 3
    config = tmp_path / "odd.yaml"
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "odd")
    assert done.returncode != 0
    message = "error: training.batch_size 3 must be a multiple of the 2 processes"
    for rank in (0, 1):
        assert f"learnrecon train [rank {rank} of 2]: {message}" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "odd").exists()


def test_shipped_models_load_with_provenance_and_beat_fbp():
    from learnrecon import phantoms
    from learnrecon.data.simulate import measure
    from learnrecon.metrics import psnr
    from learnrecon.models import pretrained, pretrained_names
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.solvers import fbp

    names = pretrained_names()
    assert names == ["fbpconvnet-dival", "fbpconvnet-ellipses", "lgd-ellipses", "lpd-dival", "lpd-ellipses"]
    op = ParallelBeam2D(128, 30)
    for name in names:
        model = pretrained(name)
        for key in ("config", "step", "seconds", "device", "best_psnr", "commit"):
            assert key in model.provenance, (name, key)
        data = model.provenance["config"]["data"]  # the ellipses and noise it was trained on
        x = phantoms.draw_ellipses(data["phantom"], n=3, size=128, seed=12345, scaling=data["ellipse_scaling"])
        y = measure(op, x, data["noise"], seed=12345)
        baseline = float(psnr(fbp(y, op, filter="hann"), x).mean())
        with torch.no_grad():
            assert float(psnr(model(y, op), x).mean()) > baseline + 3, name
    with pytest.raises(ParameterError, match="no pretrained model 'lpd-lodopab'"):
        pretrained("lpd-lodopab")


def test_shipped_weights_fit_the_package_budget():
    """The issue allows the shipped weights 5 MB in all (a larger model must fit beside the others)."""
    from learnrecon.models.hub import PRETRAINED_DIR

    sizes = [path.stat().st_size for path in PRETRAINED_DIR.glob("*.safetensors")]
    assert len(sizes) == 5 and sum(sizes) < 5_000_000, sizes


def test_reproduction_preset_trains_to_completion_and_resumes(tmp_path):
    from dataclasses import replace

    from learnrecon.benchmark import get_preset, run_benchmark

    values = json.loads(json.dumps(SMALL))
    values["data"]["operator"] = {"type": "ParallelBeam2D", "image_size": 64, "n_angles": 20, "n_detectors": 91}
    config = tmp_path / "lpd_tiny.yaml"
    config.write_text(yaml.safe_dump(values))
    preset = replace(
        get_preset("smoke"), pretrained=(), train_model=None, reproduce=(str(config),), runs_dir=str(tmp_path / "runs")
    )
    first = run_benchmark(preset, tmp_path / "out", progress=False)
    ((label, run),) = first["reproduced"].items()
    assert run["steps"] == 6 and label == f"LPD (lpd_tiny, {run['best_step']} steps)" and label in first["results"]
    stamp = (tmp_path / "runs" / "lpd_tiny" / "last.safetensors").stat().st_mtime_ns
    best = tmp_path / "runs" / "lpd_tiny" / "best.json"
    assert run["best_step"] == json.loads(best.read_text())["step"]
    second = run_benchmark(preset, tmp_path / "out", overwrite=True, progress=False)
    assert second["reproduced"] == first["reproduced"]
    marked = json.loads(best.read_text())
    marked["step"] = 4  # the JSON's step is not hashed: the evaluated checkpoint is best, not last (step 6)
    best.write_text(json.dumps(marked))
    assert (
        next(iter(run_benchmark(preset, tmp_path / "again", progress=False)["reproduced"].values()))["best_step"] == 4
    )
    assert (tmp_path / "runs" / "lpd_tiny" / "last.safetensors").stat().st_mtime_ns == stamp  # nothing retrained
    assert "## Reproduction runs" in (tmp_path / "out" / "report.md").read_text()
    # a run stopped before its first checkpoint (config and logs written, no last) starts again
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json"):
        (tmp_path / "runs" / "lpd_tiny" / name).unlink()
    third = run_benchmark(preset, tmp_path / "out", overwrite=True, progress=False)
    assert third["reproduced"][label]["steps"] == 6


def test_dival_preset_simulates_its_test_data_on_a_finer_grid():
    from dataclasses import replace

    from learnrecon.benchmark import get_preset, make_tasks
    from learnrecon.data.simulate import finer_operator, upsample_bilinear
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.phantoms import shepp_logan

    dival = get_preset("dival")
    assert (dival.noise, dival.simulation_size, dival.n_angles) == ("relative:0.025", 400, 30)
    assert dival.simulation_upsampling == "bilinear"
    preset = replace(dival, image_size=32, n_detectors=47, simulation_size=64, noise="none", n_test=2)
    op = ParallelBeam2D(32, 30, n_detectors=47)
    sl_task, ellipse_task = make_tasks(preset, op)
    assert sl_task.test.x.shape == (1, 1, 32, 32) and ellipse_task.test.y.shape == (2, 1, 30, 47)
    upsampled = upsample_bilinear(sl_task.test.x, (64, 64))
    torch.testing.assert_close(sl_task.test.y, finer_operator(op, 64)(upsampled))
    rendered = make_tasks(replace(preset, simulation_upsampling="render"), op)[0].test
    expected = finer_operator(op, 64)(shepp_logan(64).float().reshape(1, 1, 64, 64))
    torch.testing.assert_close(rendered.y, expected)


def test_presets_train_the_shipped_lpd_configuration_from_scratch():
    """The LPD the quick and DIVal benchmarks train from scratch is the shipped LPD's model, FBP as its start."""
    from learnrecon.benchmark import get_preset
    from learnrecon.models import model_parameters
    from learnrecon.models.hub import checkpoint_location

    shipped = load_checkpoint(checkpoint_location("lpd-ellipses"))[1]["model"]
    defaults = model_parameters(shipped["name"])
    for name in ("quick", "dival"):
        preset = get_preset(name)
        assert preset.train_model == shipped["name"]
        assert {**defaults, **dict(preset.train_params)} == {**defaults, **shipped["params"]}


def test_fbp_cutoff_is_tuned_on_validation_data():
    """Noiseless data want the full band; heavy noise wants a low cut-off."""
    from dataclasses import replace

    from learnrecon.benchmark import EvalSet, get_preset, tune_fbp
    from learnrecon.noise import gaussian
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.phantoms import shepp_logan

    op = ParallelBeam2D(64, 60, n_detectors=91)
    x = shepp_logan(64).float().reshape(1, 1, 64, 64)
    preset = replace(get_preset("quick"), fbp_frequency_scalings=(1.0, 0.5))
    clean = EvalSet("clean", x, op(x))
    noisy = EvalSet("noisy", x, gaussian(op(x), relative=1.0, generator=torch.Generator().manual_seed(0)))
    for data, best in ((clean, 1.0), (noisy, 0.5)):
        cutoff, grid = tune_fbp(preset, op, data)
        assert cutoff == best and [row["frequency_scaling"] for row in grid] == [1.0, 0.5]
        assert max(grid, key=lambda row: row["mean PSNR"])["frequency_scaling"] == best


def test_fit_steps_sets_the_steps_a_trial_rate_fills(tmp_path):
    """scripts/fit_steps.py: 10 steps/s over 1.7 min is 1,020 steps, written as 1,000 (a multiple of 500)."""
    script = Path(__file__).parents[1] / "scripts" / "fit_steps.py"
    (tmp_path / "trial" / "run").mkdir(parents=True)
    rows = ["step,loss,lr,grad_norm,seconds"] + [f"{s},0.1,1e-4,0.5,{5 + s / 10}" for s in range(0, 600, 50)]
    (tmp_path / "trial" / "run" / "metrics.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "configs").mkdir()
    config = "training:\n  steps: 3500\n  batch_size: 32\n"
    (tmp_path / "configs" / "run_gpu.yaml").write_text(config)
    command = [sys.executable, script, "trial", "1.7", "run"]
    subprocess.run(command, cwd=tmp_path, check=True)
    assert (tmp_path / "configs" / "run_gpu.yaml").read_text() == config.replace("3500", "1000")

    (tmp_path / "trial" / "run" / "metrics.csv").write_text("\n".join(rows[:3]) + "\n")
    failed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode != 0 and "too few" in failed.stderr


def test_config_defaults_are_the_lpd_paper_setup_and_bools_are_not_ints():
    from learnrecon.config import DataConfig, TrainingConfig

    data, training = DataConfig(), TrainingConfig()
    assert data.operator_section() == {"type": "ParallelBeam2D", "image_size": 128, "n_angles": 30, "n_detectors": 183}
    assert data.phantom == {"type": "ellipses", "scaling": "none", "supersample": 1}  # the shipped models'
    assert data.noise == "relative:0.05"
    assert (training.batch_size, training.lr, tuple(training.betas)) == (5, 1e-3, (0.9, 0.99))
    with pytest.raises(ParameterError, match="training.steps"):
        from_dict({"training": {"steps": True}})


def test_half_precision_save_keeps_optimiser_and_integer_tensors_and_restores_the_saved_groups(tmp_path):
    from learnrecon.io import save_checkpoint
    from learnrecon.io.checkpoint import restore_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    model(torch.randn(4, 3))  # num_batches_tracked = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    meta = {"model": {"name": "x"}}
    save_checkpoint(tmp_path / "c", model, meta, optimizer=optimizer, rng=False, weights_dtype=torch.float16)
    tensors, meta = load_checkpoint(tmp_path / "c")
    assert tensors["model/0.weight"].dtype == torch.float16
    assert tensors["model/1.num_batches_tracked"].dtype == torch.int64
    exp_avg = [v for k, v in tensors.items() if k.startswith("optimizer/") and k.endswith("exp_avg")]
    assert exp_avg and all(v.dtype == torch.float32 for v in exp_avg)
    fresh = torch.optim.Adam(model.parameters(), lr=0.5, betas=(0.5, 0.6))
    restore_optimizer(fresh, tensors, meta["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.1 and tuple(fresh.param_groups[0]["betas"]) == (0.9, 0.999)


def test_file_pairs_draw_a_new_permutation_each_epoch():
    from learnrecon.data.sources import FilePairs

    n = 8
    pairs = FilePairs(list(range(n)), seed=0)  # only the data set's length sets the order
    epochs = [pairs.indices(torch.arange(e * n, (e + 1) * n)) for e in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert FilePairs(list(range(n)), seed=0).indices(torch.arange(n, 2 * n)) == epochs[1]  # random access agrees


def test_benchmark_presets_are_the_reference_setups():
    from learnrecon.benchmark import get_preset

    quick, dival = get_preset("quick"), get_preset("dival")
    assert (quick.image_size, quick.n_angles, quick.n_detectors, quick.noise, quick.n_test) == (
        128,
        30,
        183,
        "relative:0.05",
        100,
    )
    assert (dival.image_size, dival.n_angles, dival.noise, dival.n_test, dival.simulation_size) == (
        128,
        30,
        "relative:0.025",
        100,
        400,
    )


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


def test_checkpoints_record_the_best_psnr_including_this_steps_validation(tmp_path):
    Trainer.from_config(_config(steps=3), tmp_path, progress=False).train()
    rows = list(csv.DictReader((tmp_path / "validation.csv").open()))
    psnr = float(rows[-1]["psnr"])  # the only validation, at step 3, when last is saved too
    _, best = load_checkpoint(tmp_path / "best")
    _, last = load_checkpoint(tmp_path / "last")
    assert best["best_psnr"] == pytest.approx(psnr) and best["validation"]["psnr"] == pytest.approx(psnr)
    assert last["best_psnr"] == pytest.approx(psnr)


def test_resuming_with_other_adam_betas_is_refused(tmp_path):
    Trainer.from_config(_config(), tmp_path, progress=False).train(until=1)
    with pytest.raises(DataFileError, match="differs from the run's in training.betas"):
        Trainer.from_config(_config(betas=[0.5, 0.9]), tmp_path, resume=True, progress=False)


def test_a_nan_gradient_with_a_finite_loss_stops_without_touching_the_weights(tmp_path):
    trainer = Trainer.from_config(_config(), tmp_path, progress=False)
    trainer.train(until=3)
    before = (tmp_path / "last.safetensors").read_bytes()
    real_loss = trainer.loss_fn
    # 0·sqrt(0) is 0, but its derivative is 0·inf = NaN: a finite loss with a NaN gradient.
    trainer.loss_fn = lambda a, b: real_loss(a, b) + 0 * torch.sqrt(0 * a.sum())
    with pytest.raises(TrainingError, match="gradient norm is nan at step 4"):
        trainer.train()
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_clip_grad_norm_zero_leaves_the_gradient_alone(tmp_path):
    trainer = Trainer.from_config(_config(steps=1, clip_grad_norm=0.0), tmp_path, progress=False)
    real_loss = trainer.loss_fn
    trainer.loss_fn = lambda a, b: 1e4 * real_loss(a, b)  # a gradient norm far above 1
    seen = _gradient_norms_at_the_optimiser(trainer)
    trainer.train()
    logged = float(next(csv.DictReader((tmp_path / "metrics.csv").open()))["grad_norm"])
    assert logged > 1 and seen[0] == pytest.approx(logged, rel=1e-5)


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

    good = _data_file(tmp_path / "good.h5")
    check_pairs_file(load(good), load(good).op, "data.train_file")
    for name, message in (("x", "truth 'x' is complex64"), ("y", "data 'y' are complex64")):
        complex_values = load_h5_array(good, name).astype(np.complex64)
        bad = load(_data_file(tmp_path / f"complex_{name}.h5", **{name: complex_values}))
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
    stream, _ = make_training_data(_config().data)
    assert stream.batch(torch.tensor([4, 5])).x.shape == (2, 1, 24, 24)
    for positions in (torch.tensor([4, 6]), torch.tensor([5, 4])):
        with pytest.raises(ParameterError, match="consecutive"):
            stream.batch(positions)


def test_a_finer_simulation_grid_keeps_each_samples_noise_whatever_the_batch():
    """With ``data.simulation`` the noise of sample ``p`` still comes from ``(seed, p)``: a batch starting at
    position 2 holds the same data as positions 2, 3 of a batch starting at 0."""
    values = json.loads(json.dumps(SMALL))
    values["data"]["simulation"] = {"size": 48}
    stream, _ = make_training_data(from_dict(values).data)
    whole = stream.batch(torch.arange(0, 4))
    part = stream.batch(torch.arange(2, 4))
    torch.testing.assert_close(part.x, whole.x[2:], rtol=0, atol=0)
    torch.testing.assert_close(part.y, whole.y[2:], rtol=0, atol=0)
