"""The MRI benchmark preset: its smoke version end to end, its metrics, the CLI's MRI presets."""

import json

import torch

from learnrecon.benchmark.mri import MRI_PRESETS, mri_dry_run, nmse, run_mri_benchmark
from learnrecon.cli import main


def test_nmse_is_fastmri_s_on_magnitudes():
    x = torch.tensor([[[[3.0 + 4.0j, 0.0]]]])
    x_hat = torch.tensor([[[[0.0 + 4.0j, 1.0]]]])  # magnitudes 4 and 1 against 5 and 0
    torch.testing.assert_close(nmse(x_hat, x), torch.tensor([(1.0 + 1.0) / 25.0], dtype=torch.float64))


def test_mri_smoke_preset_runs_and_orders_the_classical_methods(tmp_path):
    summary = run_mri_benchmark(MRI_PRESETS["mri-smoke"], tmp_path / "mri", progress=False)
    results = json.loads((tmp_path / "mri" / "results.json").read_text())
    assert results["results"] == json.loads(json.dumps(summary["results"]))
    at4 = summary["results"]["4x"]
    assert set(at4) == {"zero-filled", "CG-SENSE (Tikhonov)", "TV (complex PDHG)", "FISTA-wavelet"}
    for test in ("ellipses", "Shepp–Logan"):
        assert at4["TV (complex PDHG)"][test]["psnr"] > at4["zero-filled"][test]["psnr"]
        assert at4["FISTA-wavelet"][test]["psnr"] > at4["zero-filled"][test]["psnr"]
        assert at4["CG-SENSE (Tikhonov)"][test]["nmse"] < at4["zero-filled"][test]["nmse"]
    report = (tmp_path / "mri" / "report.md").read_text()
    assert summary["tuned"]["4x ellipses"]["FISTA-wavelet lambda"] > 0
    assert "| FISTA-wavelet |" in report and "FISTA-wavelet is not run" not in report
    assert "| zero-filled |" in report and (tmp_path / "mri" / "figures" / "reconstructions-4x.png").exists()


def test_cli_dry_run_of_the_mri_preset_builds_both_accelerations(capsys):
    assert main(["benchmark", "--preset", "mri", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "operator 4x" in out and "operator 8x" in out and "preset mri: every part builds" in out
    assert any("acceleration 8.00" in line for line in mri_dry_run(MRI_PRESETS["mri"]))
