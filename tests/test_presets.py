"""Benchmark presets that train: reproduction, DIVal, tuning of FBP, step fitting."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from learnrecon.io.checkpoint import load_checkpoint
from training_support import SMALL


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
