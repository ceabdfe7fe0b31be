"""The command line: help, version, simulate end to end, the smoke benchmark, and clean errors."""

import json
import subprocess
import sys
import types
from dataclasses import replace

import pytest
import torch

import learnrecon
from learnrecon import metrics
from learnrecon.cli import main
from learnrecon.data import load
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.io import training_history
from learnrecon.models import pretrained
from learnrecon.phantoms import dival_ellipses, random_ellipses
from learnrecon.reconstruction import parse_index, reconstruct_file


def run_cli(*args):
    """Run the console entry point in a subprocess: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "learnrecon.cli", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("simulate", "benchmark", "train", "evaluate"):
        assert command in out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert learnrecon.__version__ in capsys.readouterr().out


def test_report_renders_a_benchmark_folder_as_one_html_page(tmp_path):
    import base64

    png = b"\x89PNG\r\n\x1a\n not a real image, but bytes to embed"
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "psnr.png").write_bytes(png)
    text = "# learnrecon benchmark\n\n| method | PSNR |\n| --- | --- |\n| TV | 30.53 |\n\n![PSNR](figures/psnr.png)\n"
    (tmp_path / "report.md").write_text(text)
    status, stdout, err = run_cli("report", str(tmp_path))
    assert status == 0, err
    page = (tmp_path / "report.html").read_text()
    assert "<title>learnrecon benchmark</title>" in page and "<td>30.53</td>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    status, _, err = run_cli("report", str(tmp_path))
    assert status == 1 and "report.html already exists" in err
    assert run_cli("report", str(tmp_path), "--overwrite")[0] == 0

    for link, message in (("figures/gone.png", "missing"), ("../outside.png", "outside")):
        (tmp_path / "report.md").write_text(f"# r\n\n![x]({link})\n")
        status, _, err = run_cli("report", str(tmp_path), "--out", str(tmp_path / "other.html"))
        assert status == 1 and message in err and not (tmp_path / "other.html").exists()
    status, _, err = run_cli("report", str(tmp_path / "figures"))
    assert status == 1 and "holds no report.md" in err


def test_simulate_writes_a_loadable_data_set(tmp_path):
    out = tmp_path / "ellipses.h5"
    status = main(
        [
            "simulate",
            "--n",
            "3",
            "--size",
            "32",
            "--angles",
            "10",
            "--noise",
            "relative:0.05",
            "--seed",
            "4",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    ds = load(out)
    sample = ds[0]
    assert len(ds) == 3 and sample.x.shape == (1, 32, 32) and sample.y.shape == (1, 10, ds.op.range_shape[1])
    assert sample.labels.shape == (32, 32)
    assert type(ds.op).__name__ == "ParallelBeam2D" and ds.op.range_shape[0] == 10
    clean = ds.op(ds.tensors().x)
    residual = (ds.tensors().y - clean).flatten(1)
    relative = residual.std(dim=1) / clean.abs().flatten(1).mean(dim=1)
    torch.testing.assert_close(relative, torch.full((3,), 0.05), atol=0.01, rtol=0)


def test_simulate_is_reproducible(tmp_path):
    args = ["simulate", "--n", "2", "--size", "16", "--angles", "6", "--seed", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.h5")]) == 0
    a, b = load(tmp_path / "a.h5").tensors(), load(tmp_path / "b.h5").tensors()
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.labels, b.labels)
    assert main([*args, "--ellipse-scaling", "minmax", "--out", str(tmp_path / "scaled.h5")]) == 0
    scaled = load(tmp_path / "scaled.h5").tensors()
    assert torch.equal(a.x, random_ellipses(2, 16, seed=1, scaling="none"))  # the default, as the shipped models'
    assert torch.equal(scaled.x, random_ellipses(2, 16, seed=1, scaling="minmax")) and not torch.equal(scaled.x, a.x)
    assert main([*args, "--phantom", "dival-ellipses", "--out", str(tmp_path / "dival.h5")]) == 0
    assert torch.equal(load(tmp_path / "dival.h5").tensors().x, dival_ellipses(2, 16, seed=1))


def test_simulate_refuses_existing_output_without_traceback(tmp_path):
    out = tmp_path / "d.h5"
    out.write_text("keep me")
    status, _, err = run_cli("simulate", "--n", "1", "--size", "16", "--out", str(out), "--quiet")
    assert status == 1
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "loud"], "noise spec"),
        (["--n", "0"], "--n must be a positive integer"),
        (["--phantom", "file", "--truth", "/nonexistent.npy"], "does not exist"),
        (["--phantom", "file"], "needs --truth"),
    ],
)
def test_simulate_bad_arguments(tmp_path, args, message):
    out = tmp_path / "d.h5"
    status, _, err = run_cli("simulate", "--size", "16", "--out", str(out), "--quiet", *args)
    assert status == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_simulate_from_numpy_truth(tmp_path):
    import numpy as np

    images = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    np.save(tmp_path / "truth.npy", images)
    out = tmp_path / "d.h5"
    assert (
        main(
            [
                "simulate",
                "--phantom",
                "file",
                "--truth",
                str(tmp_path / "truth.npy"),
                "--n",
                "2",
                "--size",
                "24",
                "--angles",
                "8",
                "--noise",
                "none",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    ds = load(out)
    assert torch.equal(ds.tensors().x[:, 0], torch.from_numpy(images))
    torch.testing.assert_close(ds.tensors().y, ds.op(ds.tensors().x))


def test_smoke_benchmark_writes_report(tmp_path):
    out = tmp_path / "smoke"
    status, stdout, err = run_cli("benchmark", "--preset", "smoke", "--out", str(out), "--quiet")
    assert status == 0, err
    assert "| method |" in stdout
    summary = json.loads((out / "results.json").read_text())
    results = summary["results"]
    elsewhere = "trained for 128×128, 30 angles, 183 detectors"  # the smoke preset is 64², 20 angles
    shipped = {f"{model} (shipped, {elsewhere})" for model in ("FBPConvNet", "LGD", "LPD")}
    assert set(results) == {"FBP (hann)", "TV", "LPD (trained here, 4 steps)"} | shipped
    for per_set in results.values():
        assert set(per_set) == {"Shepp–Logan", "ellipses"}
    assert results["TV"]["ellipses"]["psnr"] > results["FBP (hann)"]["ellipses"]["psnr"]
    # Non-negativity only where the validation images are non-negative: Shepp–Logan, not the raw ellipses.
    assert summary["tuned"]["Shepp–Logan"]["TV"]["nonneg"] and not summary["tuned"]["ellipses"]["TV"]["nonneg"]
    assert set(summary["pretrained"]) == shipped and summary["trained_here"]["steps"] == 4
    lpd = summary["pretrained"][f"LPD (shipped, {elsewhere})"]  # steps and hours of every round, not the last
    history = training_history(pretrained("lpd-ellipses").provenance)
    assert (lpd["steps"], lpd["rounds"]) == (history["steps"], history["rounds"])
    assert lpd["rounds"] > 1 and lpd["steps"] > lpd["last_round_steps"]
    assert summary["trained_here"]["config"]["model"]["params"]["init"] == "fbp"
    for name in ("report.md", "report.html", "training/last.safetensors", "training/metrics.csv"):
        assert (out / name).stat().st_size > 0
    for figure in ("reconstructions", "psnr", "ssim", "training"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 0
    assert "## Shipped models" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "each reference image's range (max − min) as the data range" in report
    assert "non-negativity where the validation images are non-negative (Shepp–Logan)" in report
    status, _, err = run_cli("benchmark", "--preset", "smoke", "--out", str(out), "--quiet")
    assert status == 1 and "already exists" in err

    # The run trained here, given back as a checkpoint, scores as it did when it was trained.
    checkpoint = str(out / "training" / "last.safetensors")
    again = tmp_path / "again"
    status, stdout, err = run_cli(
        "benchmark", "--preset", "smoke", "--checkpoint", checkpoint, "--out", str(again), "--quiet"
    )
    assert status == 0, err
    summary = json.loads((again / "results.json").read_text())
    label = f"{checkpoint} (4 steps)"
    assert summary["checkpoints"][label]["model"] == "lpd" and label in stdout
    for test in ("Shepp–Logan", "ellipses"):
        scored = summary["results"][label][test]["psnr"]
        assert scored == pytest.approx(results["LPD (trained here, 4 steps)"][test]["psnr"], abs=1e-4)
    assert "## Checkpoints evaluated" in (again / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--preset", "smoke", "--checkpoint", "missing.safetensors"), "does not exist"),
        (("operators", "--checkpoint", "missing.safetensors"), "not to 'operators'"),
    ],
)
def test_benchmark_refuses_bad_checkpoint_arguments(tmp_path, args, message):
    out = tmp_path / "deeper" / "out"  # a folder the benchmark would have to make
    status, _, err = run_cli("benchmark", *args, "--out", str(out), "--quiet")
    assert status == 1 and message in err
    assert not any(tmp_path.iterdir())


def test_a_failed_benchmark_leaves_no_folder_it_made(tmp_path):
    from learnrecon.benchmark import get_preset, run_benchmark

    broken = replace(get_preset("smoke"), train_model="no-such-model")  # fails after the mkdir
    with pytest.raises(learnrecon.errors.LearnreconError):
        run_benchmark(broken, tmp_path / "a" / "b" / "out", progress=False)
    assert not any(tmp_path.iterdir())


def test_benchmark_writes_only_where_a_benchmark_folder_may_go(tmp_path):
    (tmp_path / "afile").write_text("mine")
    status, _, err = run_cli("benchmark", "--preset", "smoke", "--out", str(tmp_path / "afile"), "--overwrite")
    assert status == 1 and "is a file" in err and (tmp_path / "afile").read_text() == "mine"
    (tmp_path / "results" / "operators").mkdir(parents=True)
    (tmp_path / "results" / "operators" / "operators-cpu.json").write_text("{}")
    status, _, err = run_cli("benchmark", "--preset", "smoke", "--out", str(tmp_path / "results"), "--overwrite")
    assert status == 1 and "not a benchmark's (no results.json)" in err
    assert (tmp_path / "results" / "operators" / "operators-cpu.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "results"]


def test_reconstruct_lists_methods(capsys):
    assert main(["reconstruct", "--method", "list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "fbp",
        "tikhonov",
        "tsvd",
        "landweber",
        "cgls",
        "sart",
        "kaczmarz",
        "sgd",
        "pgd",
        "fista-wavelet",
        "tv",
    ):
        assert f"  {name} " in out


def test_reconstruct_writes_results_and_figure(tmp_path):
    import h5py

    data = tmp_path / "d.h5"
    simulate = ["simulate", "--n", "4", "--size", "32", "--angles", "20", "--ellipse-scaling", "minmax"]
    assert main([*simulate, "--out", str(data), "--quiet"]) == 0
    out = tmp_path / "recon.h5"
    status = main(
        [
            "reconstruct",
            "--method",
            "tv",
            "--param",
            "lam=1",
            "--param",
            "n_iter=100",
            "--in",
            str(data),
            "--out",
            str(out),
            "--index",
            "1:3",
            "--quiet",
        ]
    )
    assert status == 0
    with h5py.File(out) as f:
        assert f["x_hat"].shape == (2, 1, 32, 32) and list(f["index"][:]) == [1, 2]
        assert f.attrs["method"] == "tv" and json.loads(f.attrs["params"]) == {"lam": 1.0, "n_iter": 100}
        fbp_psnr = f["psnr"][:]
    assert (tmp_path / "recon.png").stat().st_size > 0
    assert (
        main(
            [
                "reconstruct",
                "--method",
                "fbp",
                "--in",
                str(data),
                "--out",
                str(tmp_path / "fbp.h5"),
                "--index",
                "1:3",
                "--quiet",
            ]
        )
        == 0
    )
    with h5py.File(tmp_path / "fbp.h5") as f:
        assert (fbp_psnr > f["psnr"][:]).all(), "TV beats FBP on noisy ellipses"


def test_prelog_counts_simulate_and_reconstruct_end_to_end(tmp_path, capsys):
    import h5py

    data, out = tmp_path / "counts.h5", tmp_path / "gn.h5"
    simulate = ["simulate", "--phantom", "dival-ellipses", "--n", "2", "--size", "32", "--angles", "30"]
    assert main([*simulate, "--noise", "counts:1000:0.08:5", "--out", str(data), "--quiet"]) == 0
    assert "BeerLambert" in capsys.readouterr().out
    args = ["reconstruct", "--in", str(data), "--quiet", "--param", "lam=3", "--param", "readout=5"]
    assert main([*args, "--method", "gauss-newton-tv", "--out", str(out)]) == 0
    fbp_out = tmp_path / "fbp.h5"
    assert main(["reconstruct", "--in", str(data), "--quiet", "--method", "prelog-fbp", "--out", str(fbp_out)]) == 0
    with h5py.File(out) as gn, h5py.File(fbp_out) as fbp:
        assert gn.attrs["method"] == "gauss-newton-tv" and gn["x_hat"].shape == (2, 1, 32, 32)
        assert float(gn["psnr"][:].mean()) > float(fbp["psnr"][:].mean()) + 0.5
    code, _, err = run_cli("reconstruct", "--in", str(data), "--method", "fbp", "--out", str(tmp_path / "no.h5"))
    assert code != 0 and "BeerLambert" in err and not (tmp_path / "no.h5").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "tv", "--param", "lambda=1"], "unknown parameter(s) lambda"),
        (["--method", "tv", "--param", "lam"], "KEY=VALUE"),
        (["--method", "magic"], "unknown method"),
        (["--method", "fbp", "--index", "7:9"], "selects no items"),
        (["--method", "fbp", "--index", "x"], "not an integer"),
        (["--method", "fbp", "--batch-size", "0"], "batch size must be a positive integer"),
        (["--pretrained", "lpd-ellipses", "--method", "tv"], "or --pretrained/--checkpoint (a learned model)"),
        (["--pretrained", "lpd-ellipses", "--param", "lam=1"], "takes no method parameters (got lam)"),
        (["--pretrained", "lpd"], "no pretrained model 'lpd'"),
        (["--checkpoint", "missing"], "missing.safetensors does not exist"),
    ],
)
def test_reconstruct_bad_arguments(tmp_path, args, message):
    data = tmp_path / "d.h5"
    assert main(["simulate", "--n", "2", "--size", "16", "--angles", "6", "--out", str(data), "--quiet"]) == 0
    out = tmp_path / "r.h5"
    status, _, err = run_cli("reconstruct", "--in", str(data), "--out", str(out), "--quiet", *args)
    assert status == 1 and message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "r.png").exists()


def test_reconstruct_with_a_learned_model_writes_its_output_and_names_it(tmp_path):
    import h5py

    data = tmp_path / "d.h5"
    assert main(["simulate", "--n", "3", "--size", "32", "--angles", "12", "--out", str(data), "--quiet"]) == 0
    out = tmp_path / "lgd.h5"
    args = ["reconstruct", "--pretrained", "lgd-ellipses", "--in", str(data), "--out", str(out), "--index", "1:3"]
    status, _, err = run_cli(*args, "--batch-size", "1", "--quiet")
    assert status == 0, err
    assert "warning: the data's operator differs from the one the model was trained with in angles" in err
    model, dataset = pretrained("lgd-ellipses"), load(data)
    with torch.no_grad():
        expected = model(dataset.tensors([1, 2]).y.float(), dataset.op)
    with h5py.File(out) as f:
        torch.testing.assert_close(torch.from_numpy(f["x_hat"][:]), expected, atol=1e-5, rtol=1e-5)
        assert list(f["index"][:]) == [1, 2] and f.attrs["method"] == "lgd-ellipses"
        assert json.loads(f.attrs["model"]) == model.provenance["model"] and json.loads(f.attrs["params"]) == {}
        assert f.attrs["weights_sha256"] == model.provenance["sha256"] and f["psnr"].shape == (2,)
    assert (tmp_path / "lgd.png").stat().st_size > 0


def test_reconstruct_missing_input(tmp_path):
    status, _, err = run_cli(
        "reconstruct", "--method", "fbp", "--in", str(tmp_path / "none.h5"), "--out", str(tmp_path / "r.h5")
    )
    assert status == 1 and "does not exist" in err


def test_operator_benchmark_writes_results(tmp_path):
    status, stdout, err = run_cli("benchmark", "operators", "--cases", "a", "--repeats", "1", "--out", str(tmp_path))
    assert status == 0, err
    result = json.loads((tmp_path / "operators-cpu.json").read_text())
    ours = [row for row in result["rows"] if row["method"] == "learnrecon (CSR)"]
    assert [row["batch"] for row in ours] == [1, 16]
    assert all(row["adjoint mismatch"] < 1e-5 and row["forward ms/img"] > 0 for row in ours)
    assert "| a | learnrecon (CSR) |" in stdout
    status, _, err = run_cli("benchmark", "operators", "--cases", "z", "--out", str(tmp_path))
    assert status == 1 and "unknown operator benchmark case" in err
    # Its results are not replaced without --overwrite (refused before any timing), and are with it.
    before = (tmp_path / "operators-cpu.json").read_text()
    status, _, err = run_cli("benchmark", "operators", "--cases", "a", "--repeats", "1", "--out", str(tmp_path))
    assert status == 1 and "operators-cpu.json already exists" in err
    assert (tmp_path / "operators-cpu.json").read_text() == before
    args = ("benchmark", "operators", "--cases", "a", "--repeats", "1", "--out", str(tmp_path), "--overwrite")
    status, _, err = run_cli(*args)
    assert status == 0, err
    assert json.loads((tmp_path / "operators-cpu.json").read_text())["rows"] != result["rows"]


@pytest.mark.parametrize(("text", "expected"), [(None, [0, 1, 2, 3, 4]), ("4", [4]), ("-1", [4]), ("-5", [0]),
                                                ("1:4:2", [1, 3]), ("-3:", [2, 3, 4])])  # fmt: skip
def test_parse_index_selects_items_as_python_indexing_does(text, expected):
    assert parse_index(text, 5).tolist() == expected


@pytest.mark.parametrize("text", ["5", "-6", "0:5:0", "1:2:3:4", "a:b"])
def test_parse_index_refuses_out_of_range_and_malformed_indices(text):
    with pytest.raises(ParameterError):
        parse_index(text, 5)


def _data(tmp_path, n=4, truth=True):
    path = tmp_path / "d.h5"
    assert main(["simulate", "--n", str(n), "--size", "16", "--angles", "6", "--out", str(path), "--quiet"]) == 0
    if not truth:
        import h5py

        with h5py.File(path, "a") as f:
            del f["x"]
    return path


def test_reconstruct_file_stores_psnr_and_ssim_and_times_each_item(tmp_path, monkeypatch):
    import h5py

    from learnrecon import evaluation
    from learnrecon.data import load

    data = _data(tmp_path)
    clock = iter([5.0, 7.0])
    monkeypatch.setattr(evaluation, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    summary = reconstruct_file(data, tmp_path / "r.h5", "fbp", progress=False)
    assert summary["n"] == 4 and summary["seconds_per_item"] == pytest.approx(0.5)
    x = load(data).tensors().x
    with h5py.File(tmp_path / "r.h5") as f:
        x_hat = torch.from_numpy(f["x_hat"][:])
        torch.testing.assert_close(torch.from_numpy(f["ssim"][:]), metrics.ssim(x_hat, x).double())
        torch.testing.assert_close(torch.from_numpy(f["psnr"][:]), metrics.psnr(x_hat, x).double())
    assert summary["ssim"] == pytest.approx(float(metrics.ssim(x_hat, x).mean()))


def test_reconstruct_refuses_an_existing_figure_before_writing_anything(tmp_path):
    data = _data(tmp_path, n=2)
    (tmp_path / "r.png").write_bytes(b"keep me")
    with pytest.raises(DataFileError, match="already exists"):
        reconstruct_file(data, tmp_path / "r.h5", "fbp", progress=False)
    assert not (tmp_path / "r.h5").exists() and (tmp_path / "r.png").read_bytes() == b"keep me"


def test_reconstruct_figure_names_the_files_items_and_draws_error_maps_only_against_truth(tmp_path, monkeypatch):
    from learnrecon import reconstruction

    calls = []
    monkeypatch.setattr(reconstruction, "reconstruction_grid", lambda path, *args: calls.append(args))
    with pytest.raises(FileNotFoundError):  # the spy writes no figure to rename
        reconstruct_file(_data(tmp_path), tmp_path / "r.h5", "fbp", index="1:4:2", progress=False)
    (_, _, titles, captions, error_maps) = calls[0]
    assert titles == ["item 1", "item 3"] and error_maps and len(captions["fbp"]) == 2
    truthless = tmp_path / "no-truth"
    truthless.mkdir()
    with pytest.raises(FileNotFoundError):
        reconstruct_file(_data(truthless, truth=False), truthless / "r.h5", "fbp", index="2", progress=False)
    (_, _, titles, captions, error_maps) = calls[1]
    assert titles == ["item 2"] and captions is None and not error_maps


def test_reconstruct_runs_a_learned_model_in_evaluation_mode(tmp_path):

    class ModeProbe(torch.nn.Module):
        """Reconstructs 1 in training mode and 0 in evaluation mode."""

        def forward(self, y, op):
            return torch.full((y.shape[0], 1, *op.domain_shape), float(self.training))

    model = ModeProbe().train()
    reconstruct_file(_data(tmp_path, n=2), tmp_path / "r.h5", "probe", model=model, progress=False)
    import h5py

    with h5py.File(tmp_path / "r.h5") as f:
        assert (f["x_hat"][:] == 0).all()


def test_a_missing_optional_extra_is_one_line_on_stderr_and_status_1(tmp_path, monkeypatch, capsys):
    import learnrecon.report.html

    def missing(*args):
        raise ImportError("the report needs the 'markdown' package: pip install learnrecon[report]")

    monkeypatch.setattr(learnrecon.report.html, "write_html_report", missing)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "learnrecon report: error: the report needs the 'markdown' package: pip install learnrecon[report]\n"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("learnrecon report [rank 1 of 2]: error: ")


def test_no_command_prints_help_and_exits_2_and_an_interrupt_exits_130(tmp_path, monkeypatch, capsys):
    import learnrecon.report.html

    assert main([]) == 2 and "COMMAND" in capsys.readouterr().out

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(learnrecon.report.html, "write_html_report", interrupted)
    assert main(["report", str(tmp_path)]) == 130
    assert "interrupted; no output was written" in capsys.readouterr().err


def test_reconstruct_prints_milliseconds_per_item(tmp_path, monkeypatch, capsys):
    import learnrecon.reconstruction

    seen = {}

    def fake(source, out, method, params, *args, **kwargs):
        seen["params"] = params
        return {"method": method, "n": 4, "seconds_per_item": 0.0125, "output": out, "figure": "f.png"}

    monkeypatch.setattr(learnrecon.reconstruction, "reconstruct_file", fake)
    args = ["reconstruct", "--method", "tv", "--param", " lam = 0.5 ", "--in", "d.h5", "--out", "r.h5", "--quiet"]
    assert main(args) == 0
    assert capsys.readouterr().out == "tv on 4 items (12.5 ms each); wrote r.h5 and f.png\n"
    assert seen["params"] == {"lam": "0.5"}


def test_operator_benchmark_passes_no_astra_and_no_deepinv_through(tmp_path, monkeypatch):
    import learnrecon.benchmark.operators

    seen = []
    monkeypatch.setattr(learnrecon.benchmark.operators, "run_operator_benchmark", lambda *args: seen.append(args) or "")
    out = str(tmp_path)
    assert main(["benchmark", "operators", "--no-astra", "--out", out]) == 0
    assert main(["benchmark", "operators", "--no-deepinv", "--out", out]) == 0
    assert [args[4:6] for args in seen] == [(False, True), (True, False)]


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "one"])
def test_data_range_must_be_a_finite_positive_number(text):
    from learnrecon.cli import _parse_data_range

    assert _parse_data_range("image") == "image" and _parse_data_range("255") == 255.0
    with pytest.raises(ParameterError, match="--data-range"):
        _parse_data_range(text)


def test_reconstruct_refuses_an_output_named_like_its_figure(tmp_path, capsys):
    """--out r.png: the figure's name is the output's, so the HDF5 was written to r.png and then either
    refused as existing (exit 1, an HDF5 file named .png left behind) or, with --overwrite, replaced by the
    figure (exit 0, the reconstructions lost). Refused before any work instead."""
    data = _data(tmp_path, n=2)
    for extra in ([], ["--overwrite"]):
        args = ["reconstruct", "--method", "fbp", "--in", str(data), "--out", str(tmp_path / "r.png"), "--quiet"]
        assert main([*args, *extra]) == 1
        assert ".png" in capsys.readouterr().err and not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("text", ["::-1", "4:0:-2"])
def test_a_negative_index_step_is_refused_without_a_traceback(tmp_path, text, capsys):
    """parse_index took Python slice syntax, but torch refuses a negative step with a raw ValueError (a
    traceback from the command line)."""
    with pytest.raises(ParameterError, match="step"):
        parse_index(text, 5)
    data = _data(tmp_path, n=5)
    args = ["reconstruct", "--method", "fbp", "--in", str(data), "--out", str(tmp_path / "r.h5"), "--index", text]
    assert main([*args, "--quiet"]) == 1 and f"--index {text!r}" in capsys.readouterr().err
