"""The pre-log CT benchmark (`learnrecon benchmark --preset prelog*`): the smoke version end to end, the training
configs, and its errors."""

import json

import pytest
import torch

from learnrecon.benchmark.prelog import DOSES, PHYSICS, PRELOG_PRESETS, run_name, training_config
from learnrecon.cli import main
from learnrecon.data.simulate import measure
from learnrecon.errors import ParameterError
from learnrecon.operators.nonlinear import BeerLambert
from learnrecon.operators.registry import build_operator
from learnrecon.phantoms import draw_ellipses


def test_the_two_lpds_see_the_same_counts_before_and_after_the_log():
    pre, post = (training_config(1e3, physics, 10).data for physics in ("pre-log", "post-log"))
    op = build_operator(pre.operator_section())
    assert isinstance(op, BeerLambert) and (op.photons, op.mu_max) == (1e3, 0.06)
    x = draw_ellipses("dival-ellipses", n=2, size=op.domain_shape, seed=0).float()
    counts = measure(op, x, pre.noise, seed=pre.seed)
    log_data = measure(build_operator(post.operator_section()), x, post.noise, seed=post.seed)
    torch.testing.assert_close(op.log_data(counts), log_data)
    with pytest.raises(ParameterError, match="physics"):
        training_config(1e3, "linear", 10)


def test_prelog_smoke_trains_evaluates_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the runs go to runs/prelog under the working directory
    out = tmp_path / "report"
    assert main(["benchmark", "--preset", "prelog-smoke", "--out", str(out), "--quiet"]) == 0
    assert "pre-log LPD - post-log LPD" in capsys.readouterr().out
    summary = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in summary["rows"]}
    assert len(summary["rows"]) == 6 * len(DOSES) and any("Gauss–Newton" in m for m in methods)
    for row in summary["rows"]:
        assert 10 < row["ellipses_psnr"] < 60 and 0 < row["shepp-logan_ssim"] <= 1
    by_method = {(r["photons"], r["method"]): r for r in summary["rows"]}
    for photons in DOSES:  # the likelihood with TV beats post-log FBP even untuned
        fbp = by_method[(photons, "FBP (post-log, Hann)")]["shepp-logan_psnr"]
        assert by_method[(photons, "Poisson likelihood + TV (Gauss–Newton)")]["shepp-logan_psnr"] > fbp
    assert set(summary["verdict"]) == {f"{d:g}" for d in DOSES}
    assert (out / "figures" / "prelog.png").stat().st_size > 0 and "Pre-log" in (out / "report.md").read_text()
    for photons in DOSES:
        for physics in PHYSICS:
            assert (tmp_path / "runs" / "prelog" / run_name(photons, physics) / "best.safetensors").exists()
    # the output exists: refused without --overwrite, and nothing else is written
    assert main(["benchmark", "--preset", "prelog-smoke", "--out", str(out), "--quiet"]) != 0


def test_prelog_preset_refuses_checkpoints_and_dry_runs(capsys):
    assert main(["benchmark", "--preset", "prelog-full", "--dry-run"]) == 0
    lines = capsys.readouterr().out
    assert lines.count("train ") == 4 and "counts:1000:0.06" in lines and "poisson:1000:0.06" in lines
    assert main(["benchmark", "--preset", "prelog", "--checkpoint", "x.safetensors"]) != 0
    assert set(PRELOG_PRESETS) == {"prelog", "prelog-full", "prelog-smoke"}
