"""The robustness-sweep preset: every method at every point, the ranges above TV, the report and figures."""

import json
from dataclasses import replace

from learnrecon.benchmark import get_preset, run_benchmark
from learnrecon.benchmark.runner import dry_run
from learnrecon.benchmark.sweeps import above
from learnrecon.cli import main


def _tiny():
    return replace(
        get_preset("smoke"),
        name="tiny-sweep",
        n_test=2,
        tv_lambdas=(0.3, 3.0),
        tv_iterations=20,
        tv_tuning_iterations=10,
        pretrained=("lgd-ellipses",),
        sweep_noise=(0.02, 0.1),
        sweep_angles=(10, 20),
    )


def test_sweep_runs_every_method_at_every_point_and_writes_its_report(tmp_path):
    summary = run_benchmark(_tiny(), tmp_path / "out", progress=False)
    assert [row["value"] for row in summary["sweeps"]["noise"]] == [0.02, 0.1]
    assert [row["value"] for row in summary["sweeps"]["angles"]] == [10, 20]
    for rows in summary["sweeps"].values():
        for row in rows:
            assert set(row["psnr"]) == {"FBP (hann)", "TV", "LGD (shipped)"}
            assert all(set(scores) == {"Shepp–Logan", "ellipses"} for scores in row["psnr"].values())
    # FBP loses quality as the noise grows (a sanity check of the simulation at each point)
    noise = summary["sweeps"]["noise"]
    assert noise[0]["psnr"]["FBP (hann)"]["ellipses"] > noise[1]["psnr"]["FBP (hann)"]["ellipses"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Where each learned model is above TV" in report
    assert (tmp_path / "out" / "figures" / "sweep-noise.png").stat().st_size > 0
    assert (tmp_path / "out" / "figures" / "sweep-angles.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["training_point"]["angles"] == 20


def test_above_names_the_points_where_a_method_beats_the_reference():
    rows = [
        {"value": 1, "psnr": {"TV": {"t": 30.0}, "M": {"t": 31.0}}},
        {"value": 2, "psnr": {"TV": {"t": 30.0}, "M": {"t": 29.0}}},
    ]
    assert above(rows, "M", "t") == [1]


def test_robustness_preset_dry_run_and_checkpoint_refused(capsys):
    lines = dry_run(get_preset("robustness"))
    assert any("180" in line for line in lines) and any("lpd-ellipses" in line for line in lines)
    assert main(["benchmark", "--preset", "robustness", "--checkpoint", "x.safetensors"]) == 1
    assert "--checkpoint is not part of it" in capsys.readouterr().err
