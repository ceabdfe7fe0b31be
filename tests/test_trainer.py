"""The trainer: schedule, resume bit for bit, validation, clipping, NaN stops, init_from, run folders and locks."""

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from learnrecon import metrics, phantoms
from learnrecon.cli import main
from learnrecon.config import from_dict, load_config
from learnrecon.data.sources import make_training_data
from learnrecon.errors import DataFileError, LearnreconError
from learnrecon.evaluation import predict
from learnrecon.io.checkpoint import load_checkpoint, training_history
from learnrecon.models import load_model
from learnrecon.training import Trainer, TrainingError, learning_rate
from learnrecon.training.losses import get_loss
from learnrecon.training.trainer import step_positions
from training_support import (
    SMALL,
    model_weights,
    small_config,
    small_op,
    with_a_random_loss,
)


def test_resume_continues_bit_for_bit(tmp_path):
    """With the optimiser, the schedule and torch's RNG restored (the loss draws from it, and the RNG is
    moved on before the resume), the split run's losses and weights are the uninterrupted run's."""
    config = small_config()
    full = with_a_random_loss(Trainer.from_config(config, tmp_path / "full", progress=False)).train()
    first = with_a_random_loss(Trainer.from_config(config, tmp_path / "split", progress=False)).train(until=3)
    torch.manual_seed(123)
    second = with_a_random_loss(Trainer.from_config(config, tmp_path / "split", resume=True, progress=False)).train()
    assert first["losses"] + second["losses"] == full["losses"]
    a, b = model_weights(tmp_path / "full" / "last"), model_weights(tmp_path / "split" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4", "5", "6"]


def test_resume_restores_best_and_time_and_drops_log_rows_after_the_checkpoint(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False).train(until=3)
    _, meta = load_checkpoint(tmp_path / "last")
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("4,9.0,0.1,0.1,9.0\n")  # a row that a run killed after its checkpoint wrote
    resumed = Trainer.from_config(small_config(), tmp_path, resume=True, progress=False)
    assert resumed.best_psnr == meta["best_psnr"] and math.isfinite(resumed.best_psnr)
    assert resumed.seconds == meta["seconds"] > 0
    resumed.train()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"] and float(rows[3]["loss"]) != 9.0


def test_the_trainer_follows_the_schedule_with_the_configured_adam(tmp_path):
    trainer = Trainer.from_config(small_config(lr=1e-2, betas=[0.5, 0.9], weight_decay=0.01), tmp_path, progress=False)
    group = trainer.optimizer.param_groups[0]
    assert tuple(group["betas"]) == (0.5, 0.9) and group["weight_decay"] == 0.01
    trainer.train()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([learning_rate(s, 1e-2, 6, "cosine") for s in range(6)])


def test_best_is_kept_when_a_later_validation_is_worse(tmp_path):
    trainer = Trainer.from_config(small_config(), tmp_path, progress=False)
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
    trainer = Trainer.from_config(small_config(steps=1, clip_grad_norm=1e-3), tmp_path, progress=False)
    seen = _gradient_norms_at_the_optimiser(trainer)
    trainer.train()
    logged = float(next(csv.DictReader((tmp_path / "metrics.csv").open()))["grad_norm"])
    assert logged > 1e-3 and seen[0] <= 1e-3 * (1 + 1e-5)


def test_the_losses_and_the_trainer_uses_the_configured_one(tmp_path):
    a, b = torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 2.0)
    assert float(get_loss("l1")(a, b)) == 2.0 and float(get_loss("mse")(a, b)) == 4.0
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(get_loss("ssim")(x, x)) == pytest.approx(0.0, abs=1e-6) and float(get_loss("ssim")(x, 1 - x)) > 0.5
    trainer = Trainer.from_config(small_config(loss="l1", steps=1), tmp_path, progress=False)
    x0, y0 = trainer.data.batch(step_positions(0, 2))
    with torch.no_grad():
        expected = float(torch.nn.functional.l1_loss(trainer.model(y0, trainer.op), x0))
    assert trainer.train()["losses"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "change", [{"loss": "l1"}, {"clip_grad_norm": 0.5}, {"schedule": "constant"}, {"weight_decay": 0.1}]
)
def test_resuming_with_other_optimisation_settings_is_refused(tmp_path, change):
    Trainer.from_config(small_config(), tmp_path, progress=False).train(until=1)
    with pytest.raises(DataFileError, match=f"differs from the run's in training.{next(iter(change))}"):
        Trainer.from_config(small_config(**change), tmp_path, resume=True, progress=False)


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


def test_training_steps_run_in_training_mode_after_a_validation(tmp_path):
    trainer = Trainer.from_config(small_config(steps=4, validate_every=1), tmp_path, progress=False)
    modes, forward = [], trainer.net.forward
    trainer.net.forward = lambda *args, **kwargs: (modes.append(trainer.model.training), forward(*args, **kwargs))[1]
    trainer.train()
    assert modes.count(True) == 4


def test_checkpointed_activations_train_as_without(tmp_path):
    plain = Trainer.from_config(small_config(steps=3), tmp_path / "plain", progress=False).train()
    recomputed = Trainer.from_config(
        small_config(steps=3, checkpoint_activations=True), tmp_path / "ckpt", progress=False
    ).train()
    assert recomputed["losses"] == pytest.approx(plain["losses"], rel=1e-5)


def test_init_from_continues_from_a_checkpoints_weights_and_records_it(tmp_path):
    Trainer.from_config(small_config(steps=3), tmp_path / "first", progress=False).train()
    start = model_weights(tmp_path / "first" / "last")
    trainer = Trainer.from_config(
        small_config(steps=2, init_from=str(tmp_path / "first" / "last")), tmp_path / "next", progress=False
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
    resumed = Trainer.from_config(
        small_config(steps=4, init_from="/gone"), tmp_path / "next", resume=True, progress=False
    )
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
        model_weights(tmp_path / "plain" / "last"), {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    )
    trainer.train()
    record = load_checkpoint(tmp_path / "symmetric" / "last")[1]["started_from"]
    assert record["model_params"] == {"depth": 1, "width": 2}
    wider = {"model": {"name": "fbpconvnet", "params": {"depth": 1, "width": 3, "symmetric": True}}}
    with pytest.raises(DataFileError, match="init_from.*'width': 2.*'width': 3"):
        Trainer.from_config(from_dict({**SMALL, **wider, "training": training}), tmp_path / "wider", progress=False)


def test_init_from_another_model_is_refused_and_writes_nothing(tmp_path):
    Trainer.from_config(small_config(steps=1), tmp_path / "first", progress=False).train()
    values = json.loads(json.dumps(SMALL))
    values["model"]["params"]["width"] = 6
    values["training"]["init_from"] = str(tmp_path / "first" / "last")
    with pytest.raises(DataFileError, match="init_from.*'width': 4.*'width': 6"):
        Trainer.from_config(from_dict(values), tmp_path / "wide", progress=False)
    assert not (tmp_path / "wide").exists()
    with pytest.raises(DataFileError, match="does not exist"):
        Trainer.from_config(small_config(init_from=str(tmp_path / "missing")), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()


def test_run_folder_holds_logs_checkpoints_and_figures(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False).train()
    for name in ("config.yaml", "last.safetensors", "last.json", "best.json", "metrics.csv", "validation.csv"):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "validation-0000003.png",
        "validation-0000006.png",
    ]
    assert load_config(tmp_path / "config.yaml") == small_config()
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["model"]["name"] == "lpd" and meta["step"] in (3, 6) and "validation" in meta
    model = load_model(tmp_path / "best")
    y = torch.zeros(1, 1, 6, 35)
    assert model(y, small_op()).shape == (1, 1, 24, 24)


def test_refuses_to_overwrite_a_run(tmp_path):
    Trainer.from_config(small_config(steps=1), tmp_path, progress=False).train()
    with pytest.raises(DataFileError, match="--resume"):
        Trainer.from_config(small_config(steps=1), tmp_path, progress=False)
    with pytest.raises(DataFileError, match="cannot resume"):
        Trainer.from_config(small_config(), tmp_path / "empty", resume=True, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer.from_config(small_config(), tmp_path, progress=False)
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
        poisoned(Trainer.from_config(small_config(), tmp_path / "fresh", progress=False)).train()
    Trainer.from_config(small_config(), tmp_path / "resumed", progress=False).train(
        until=1
    )  # checkpoint at its last step, 1
    with pytest.raises(TrainingError, match=r"at step 2 .*resumed/last \(step 1\)"):
        poisoned(Trainer.from_config(small_config(), tmp_path / "resumed", resume=True, progress=False)).train()
    trainer = Trainer.from_config(small_config(), tmp_path / "bad_data", progress=False)
    real_batch = trainer.data.batch
    trainer.data.batch = lambda positions: real_batch(positions)._replace(y=real_batch(positions).y * float("nan"))
    stopped = r"non-finite data \(measurements contains .* NaN.*\) at step 1 \(batch of samples \[0, 1\]\)"
    with pytest.raises(TrainingError, match=stopped):
        trainer.train()


def test_resuming_with_another_experiment_is_refused_and_writes_nothing(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False).train(until=3)
    saved = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "metrics.csv", "last.json")}
    with pytest.raises(DataFileError, match="differs from the run's in training.batch_size, training.lr"):
        Trainer.from_config(small_config(batch_size=4, lr=5e-2), tmp_path, resume=True, progress=False)
    values = json.loads(json.dumps(SMALL))
    values["model"] = {"name": "lgd", "params": {"n_iter": 2, "width": 4}}
    with pytest.raises(DataFileError, match="holds model 'lpd'"):
        Trainer.from_config(from_dict(values), tmp_path, resume=True, progress=False)
    assert saved == {name: (tmp_path / name).read_bytes() for name in saved}
    # where and how long it runs, and what it logs, may change
    summary = Trainer.from_config(
        small_config(steps=7, threads=2, log_every=2), tmp_path, resume=True, progress=False
    ).train()
    assert summary["steps"] == 7


def test_overwrite_clears_the_old_runs_figures_and_events_and_figures_follow_figure_every(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False).train()
    (tmp_path / "tensorboard").mkdir(exist_ok=True)
    (tmp_path / "tensorboard" / "events.old").write_text("old")
    Trainer.from_config(
        small_config(steps=5, validate_every=2, figure_every=3), tmp_path, overwrite=True, progress=False
    ).train()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "validation-0000003.png",
        "validation-0000005.png",
    ]
    assert not (tmp_path / "tensorboard" / "events.old").exists()
    steps = [row.split(",")[0] for row in (tmp_path / "validation.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "3", "4", "5"]


def test_a_run_stopped_before_its_first_checkpoint_says_to_start_again(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False)  # writes config.yaml and figures/, no checkpoint yet
    with pytest.raises(DataFileError, match="stopped before its first checkpoint; pass --overwrite"):
        Trainer.from_config(small_config(), tmp_path, progress=False)


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
                      run_dir=tmp_path / "run", settings=small_config(steps=3).training, progress=False)  # fmt: skip
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
        Trainer.from_config(small_config(), tmp_path / "run", overwrite=True, progress=False).train(until=1)


def test_resuming_with_other_adam_betas_is_refused(tmp_path):
    Trainer.from_config(small_config(), tmp_path, progress=False).train(until=1)
    with pytest.raises(DataFileError, match="differs from the run's in training.betas"):
        Trainer.from_config(small_config(betas=[0.5, 0.9]), tmp_path, resume=True, progress=False)


def test_a_nan_gradient_with_a_finite_loss_stops_without_touching_the_weights(tmp_path):
    trainer = Trainer.from_config(small_config(), tmp_path, progress=False)
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
    trainer = Trainer.from_config(small_config(steps=1, clip_grad_norm=0.0), tmp_path, progress=False)
    real_loss = trainer.loss_fn
    trainer.loss_fn = lambda a, b: 1e4 * real_loss(a, b)  # a gradient norm far above 1
    seen = _gradient_norms_at_the_optimiser(trainer)
    trainer.train()
    logged = float(next(csv.DictReader((tmp_path / "metrics.csv").open()))["grad_norm"])
    assert logged > 1 and seen[0] == pytest.approx(logged, rel=1e-5)


def test_train_to_completion_finishes_a_run_resumes_a_stopped_one_and_leaves_a_finished_one(tmp_path):
    from learnrecon.training import run_finished, train_to_completion

    run = tmp_path / "run"
    stopped = Trainer.from_config(small_config(steps=6), run, progress=False)
    stopped.train(until=3)  # stopped after its first checkpoint
    stopped.close()
    assert not run_finished(run, 6)
    train_to_completion(small_config(steps=6), run, progress=False)
    assert run_finished(run, 6)
    assert len((run / "metrics.csv").read_text().splitlines()) - 1 == 6  # steps 1-3, then 4-6 resumed, none twice
    before = model_weights(run / "last")
    train_to_completion(small_config(steps=6), run, progress=False)
    after = model_weights(run / "last")
    assert all(torch.equal(before[k], after[k]) for k in before)  # a finished run is left as it is
