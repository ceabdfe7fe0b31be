"""The CLI's train and evaluate commands."""

import json
import math

import pytest
import torch
import yaml

from learnrecon import metrics
from learnrecon.cli import main
from learnrecon.io.checkpoint import load_checkpoint
from learnrecon.models import load_model
from learnrecon.training import Trainer
from training_support import SMALL, load_h5_array, small_config, small_data_file


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
    Trainer.from_config(small_config(steps=1), tmp_path / "run", progress=False).train()
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


def test_cli_evaluate_refuses_an_empty_file_and_a_truth_with_nan(tmp_path, capsys):
    import numpy as np

    Trainer.from_config(small_config(steps=1), tmp_path / "run", progress=False).train()
    good = small_data_file(tmp_path / "good.h5")
    x, y = load_h5_array(good, "x"), load_h5_array(good, "y")
    empty = small_data_file(tmp_path / "empty.h5", x=x[:0], y=y[:0], labels=load_h5_array(good, "labels")[:0])
    x[2, 0, 3, 4] = np.nan
    nan = small_data_file(tmp_path / "nan.h5", x=x)
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

    Trainer.from_config(small_config(steps=1), tmp_path / "run", progress=False).train()
    checkpoint = str(tmp_path / "run" / "last.safetensors")
    data = small_data_file(tmp_path / "d.h5", "--ellipse-scaling", "none")
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
