"""Figures: the reconstruction grid's panel titles wrap long method names instead of running into each other."""

import json
import math
import os
import types
from dataclasses import replace

import pytest
import torch

from learnrecon import metrics
from learnrecon.errors import DataFileError, LearnreconError
from learnrecon.report import figures as report_figures
from learnrecon.report import machine_info, markdown_table, metric_bars, reconstruction_grid, training_curve
from learnrecon.report.figures import TITLE_WIDTH, _title
from learnrecon.report.html import write_html_report
from learnrecon.report.tables import write_json


def test_long_method_names_wrap_and_short_ones_stay_on_one_line():
    long = "|FBPConvNet (shipped, adapted to DIVal) − truth|"
    lines = _title(long).split("\n")
    assert len(lines) == 2 and all(len(line) <= TITLE_WIDTH for line in lines)
    assert " ".join(lines) == long  # wrapped at spaces, nothing dropped
    assert _title("TV") == "TV"
    path = "runs/fbpconvnet_dival/best.safetensors (6000 steps)"  # a word longer than a line stays whole
    assert _title(path).split("\n") == ["runs/fbpconvnet_dival/best.safetensors", "(6000 steps)"]


def test_reconstruction_grid_writes_a_figure(tmp_path):
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    names = ["FBP (hann)", "FBPConvNet (shipped, adapted to DIVal)"]
    captions = {name: ["20.00 dB / 0.500"] * 2 for name in names}
    path = reconstruction_grid(tmp_path / "grid.png", list(x), {n: list(x) for n in names}, ["a", "b"], captions)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reconstruction_grid_captions_each_method_with_its_scores(tmp_path, monkeypatch):
    from learnrecon.report import figures

    titles, save = [], figures._save

    def spy(fig, path):
        titles.extend(ax.get_title() for ax in fig.axes)
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    reconstruction_grid(tmp_path / "g.png", list(x), {"TV": list(x)}, ["a"], {"TV": ["20.00 dB / 0.500"]})
    assert "TV\n20.00 dB / 0.500" in titles


def test_results_table_columns_rows_and_time():
    """PSNR and SSIM per test set in the methods' order, and the time per image of the largest set."""
    from learnrecon.benchmark import results_table

    def cell(psnr, ssim, ms, n):
        return {"psnr": psnr, "ssim": ssim, "ms_per_image": ms, "psnr_per_image": [psnr] * n}

    summary = {
        "results": {
            "TV": {"Shepp–Logan": cell(20.0, 0.5, 9.0, 1), "ellipses": cell(25.0, 0.7, 2.0, 4)},
            "FBP (hann)": {"Shepp–Logan": cell(18.0, 0.4, 9.0, 1), "ellipses": cell(22.0, 0.6, 1.0, 4)},
        }
    }
    lines = results_table(summary).splitlines()
    assert lines[0] == "| method | Shepp–Logan PSNR | Shepp–Logan SSIM | ellipses PSNR | ellipses SSIM | ms / image |"
    assert lines[2] == "| TV | 20.00 | 0.500 | 25.00 | 0.700 | 2.0 |"
    assert lines[3] == "| FBP (hann) | 18.00 | 0.400 | 22.00 | 0.600 | 1.0 |"


def test_the_benchmarks_shipped_methods_are_each_their_own_model():
    from dataclasses import replace

    from learnrecon import phantoms
    from learnrecon.benchmark import get_preset, pretrained_methods
    from learnrecon.models import pretrained
    from learnrecon.operators import ParallelBeam2D

    op = ParallelBeam2D(32, 6, n_detectors=47)
    names = ("fbpconvnet-ellipses", "lgd-ellipses")
    methods, provenance = pretrained_methods(replace(get_preset("smoke"), pretrained=names), op)
    y = op(phantoms.random_ellipses(1, 32, seed=0))
    with torch.no_grad():
        for label, name in zip(methods, names, strict=True):
            assert provenance[label]["name"] == name
            torch.testing.assert_close(methods[label](y, op), pretrained(name)(y, op))


def test_tv_tuning_keeps_the_better_variant():
    from dataclasses import replace

    from learnrecon import phantoms
    from learnrecon.benchmark import EvalSet, get_preset, tune_tv
    from learnrecon.noise import gaussian
    from learnrecon.operators import ParallelBeam2D

    op = ParallelBeam2D(32, 10)
    x = phantoms.shepp_logan(32).float().reshape(1, 1, 32, 32)
    y = gaussian(op(x), relative=0.05, generator=torch.Generator().manual_seed(0))
    preset = replace(get_preset("smoke"), tv_lambdas=(0.3, 3.0), tv_iterations=20)
    params, grids = tune_tv(preset, op, EvalSet("validation", x, y), progress=False)
    best = {variant: max(r["mean PSNR"] for r in grid) for variant, grid in grids.items()}
    assert ("isotropic" if params["isotropic"] else "anisotropic") == max(best, key=best.get)
    chosen = grids["isotropic" if params["isotropic"] else "anisotropic"]
    assert params["lam"] == max(chosen, key=lambda row: row["mean PSNR"])["lambda"]


def test_markdown_table_separator_has_a_cell_per_column_and_missing_or_nan_cells_are_empty_or_dashed():
    """The separator row must have as many cells as the header, or Markdown renders no table."""
    table = markdown_table([{"a": 1.234, "b": math.nan}, {"a": 2.0}], ["a", "b", "c"], digits={"a": 1})
    assert table.splitlines() == ["| a | b | c |", "| --- | --- | --- |", "| 1.2 | — |  |", "| 2.0 |  |  |"]


def test_write_json_writes_nan_and_infinity_as_null_at_any_depth(tmp_path):
    """results.json must be strict JSON: NaN and ±∞ (in dicts, lists and tuples, e.g. a preset's fields, or
    the PSNR of an exact reconstruction) are null."""
    data = {"a": math.nan, "b": [1.0, math.inf], "c": (-math.inf, 2), "d": "x"}
    text = write_json(tmp_path / "r.json", data).read_text()

    def refuse(constant):
        raise AssertionError(f"{constant} is not strict JSON")

    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None], "c": [None, 2], "d": "x"}


def _saved_figures(monkeypatch):
    """Spy on report.figures._save: the list of figures saved (closed afterwards, so inspect on the spot)."""
    seen, save = [], report_figures._save

    def spy(fig, path):
        seen.append(
            [
                {
                    "title": ax.get_title(),
                    "clim": ax.images[0].get_clim() if ax.images else None,
                    "array": ax.images[0].get_array().data.copy() if ax.images else None,
                    "bars": [p.get_height() for p in ax.patches],
                }
                for ax in fig.axes
            ]
        )
        return save(fig, path)

    monkeypatch.setattr(report_figures, "_save", spy)
    return seen


def test_reconstruction_grid_shows_reconstructions_on_the_truths_scale_and_each_methods_own_error(
    tmp_path, monkeypatch
):
    """Row 1: truth, then each method on the truth's grey range; row 2: each method's |x̂ − x| on a shared
    scale up to the largest error.
    """
    seen = _saved_figures(monkeypatch)
    truth = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    small, large = truth + 0.1, truth - 0.5
    reconstruction_grid(tmp_path / "g.png", [truth], {"A": [small], "B": [large]}, ["t"])
    axes = seen[0]  # 2 rows x 3 columns, row-major
    assert axes[1]["clim"] == axes[2]["clim"] == (0.0, 1.0)
    torch.testing.assert_close(torch.as_tensor(axes[4]["array"]), (small - truth).abs()[0])
    torch.testing.assert_close(torch.as_tensor(axes[5]["array"]), (large - truth).abs()[0])
    assert axes[4]["clim"] == axes[5]["clim"] == pytest.approx((0.0, 0.5))


def test_metric_bars_leave_a_gap_for_a_method_missing_from_a_group(tmp_path, monkeypatch):
    """A method scored on one test set only (e.g. a checkpoint) is drawn as a missing bar, not an error."""
    seen = _saved_figures(monkeypatch)
    path = metric_bars(tmp_path / "psnr.png", {"a": {"TV": 20.0, "LPD": 30.0}, "b": {"TV": 25.0}}, "PSNR")
    assert path.stat().st_size > 0
    heights = seen[0][0]["bars"]
    assert heights[:3] == [20.0, 25.0, 30.0] and math.isnan(heights[3])


def test_figures_are_saved_into_folders_they_create(tmp_path):
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path = reconstruction_grid(tmp_path / "new" / "deeper" / "g.png", list(x), {"TV": list(x)}, ["a"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curve_plots_the_validation_psnr_when_the_run_has_one(tmp_path, monkeypatch):
    seen = _saved_figures(monkeypatch)
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.25\n3,0.125\n")
    training_curve(tmp_path / "t1.png", tmp_path)
    (tmp_path / "validation.csv").write_text("step,psnr\n2,20.0\n3,21.5\n")
    training_curve(tmp_path / "t2.png", tmp_path)
    assert len(seen[0]) == 1 and len(seen[1]) == 2  # the loss axis, then the loss and PSNR axes


def test_machine_info_names_the_cpu_count_and_the_device(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 12345)  # tells the thread count from os.cpu_count()
    info = machine_info()
    assert info["cpu_count"] == os.cpu_count() and info["torch_threads"] == 12345
    assert info["device"] == "cpu" and "gpu" not in info
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    info = machine_info("cuda:1")
    assert info["device"] == "cuda:1" and info["gpu"] == "Fake GPU"


def _report_folder(tmp_path, figure="figures/psnr.png"):
    png = b"\x89PNG\r\n\x1a\n bytes"
    (tmp_path / figure).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / figure).write_bytes(png)
    (tmp_path / "report.md").write_text(f"# r\n\n![PSNR]({figure})\n")
    return png


def test_html_report_embeds_upper_case_and_ampersand_figure_names(tmp_path):
    import base64

    for name in ("figures/PSNR.PNG", "figures/a&b.png"):
        png = _report_folder(tmp_path, name)
        page = write_html_report(tmp_path, overwrite=True).read_text()
        assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page


def test_a_failed_html_report_makes_no_folder_for_its_out(tmp_path):
    (tmp_path / "report.md").write_text("# r\n\n![x](figures/gone.png)\n")
    with pytest.raises(DataFileError, match="missing"):
        write_html_report(tmp_path, tmp_path / "new" / "page.html")
    assert not (tmp_path / "new").exists()
    _report_folder(tmp_path)
    assert write_html_report(tmp_path, tmp_path / "new" / "page.html").is_file()  # made when it succeeds


def test_html_report_refuses_to_embed_an_existing_file_outside_its_folder(tmp_path):
    """An existing ../outside.png, not only a missing one: the error for a missing file also says "outside"."""
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n private")
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "report.md").write_text("# r\n\n![x](../secret.png)\n")
    with pytest.raises(DataFileError, match="outside .*only the report's own figures"):
        write_html_report(folder)
    assert not (folder / "report.html").exists()


def test_tune_log_grid_extends_past_a_winning_edge_then_refines_around_the_best():
    """Grid (1, 10), optimum at 10^-4.4: extended down 4 times to 1e-4, then refined by 10^±0.25, 10^±0.5."""
    from learnrecon.benchmark import tune_log_grid

    def score(value):
        return -((math.log10(value) + 4.4) ** 2)

    best, rows = tune_log_grid(score, (1.0, 10.0), "test", progress=False)
    assert best == pytest.approx(10**-4.5)
    exponents = [round(math.log10(row["lambda"]), 2) for row in rows]
    assert exponents == [-4.5, -4.25, -4.0, -3.75, -3.5, -3.0, -2.0, -1.0, 0.0, 1.0]
    assert [row["mean PSNR"] for row in rows] == [score(row["lambda"]) for row in rows]

    # and upwards, never past the bounds, rounding when integer
    best, rows = tune_log_grid(lambda v: v, (1.0, 10.0), "up", progress=False, bounds=(0, 500), integer=True)
    assert best == 500 and [row["lambda"] for row in rows] == [1.0, 10.0, 100.0, 158.0, 281.0, 500.0]


def test_evaluate_reports_mean_scores_and_milliseconds_per_image(monkeypatch):
    from learnrecon import evaluation
    from learnrecon.operators import Identity

    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    clock = iter([10.0, 10.5])
    monkeypatch.setattr(evaluation, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    result = evaluation.evaluate(lambda y, op: noisy[: y.shape[0]], torch.zeros(2, 1, 16, 16), x, Identity((16, 16)))
    assert result["ms_per_image"] == pytest.approx(250.0)  # 0.5 s for 2 images
    assert result["ssim"] == pytest.approx(float(metrics.ssim(noisy, x).mean()))
    assert result["psnr"] == pytest.approx(float(metrics.psnr(noisy, x).mean()))
    assert result["ssim_per_image"] == pytest.approx(metrics.ssim(noisy, x).reshape(-1).tolist())


def test_training_record_counts_hours_over_all_rounds_and_the_best_validation_psnr():
    from learnrecon.benchmark import training_record

    meta = {
        "step": 100,
        "seconds": 3600.0,
        "device": "cuda",
        "best_psnr": 31.5,
        "commit": "abc",
        "started_from": {"step": 50, "seconds": 1800.0},
    }
    assert training_record(meta) == {
        "steps": 150,
        "rounds": 2,
        "training_hours": 1.5,
        "last_round_steps": 100,
        "last_round_device": "cuda",
        "validation_psnr": 31.5,
        "commit": "abc",
    }


def test_train_from_scratch_gives_the_trainer_minutes_as_seconds_and_reports_minutes(tmp_path, monkeypatch):
    from learnrecon.benchmark import get_preset, methods, train_from_scratch

    seen = {}

    class FakeTrainer:
        @classmethod
        def from_config(cls, config, folder, progress=True):
            trainer = cls()
            trainer.model, trainer.op = torch.nn.Identity(), None
            return trainer

        def train(self, until=None, max_seconds=None):
            seen["max_seconds"] = max_seconds
            return {"steps": 7, "seconds": 90.0, "best_psnr": 25.0}

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(methods, "Trainer", FakeTrainer)
    preset = replace(get_preset("smoke"), train_minutes=2.5)
    label, _, info = train_from_scratch(preset, tmp_path, progress=False)
    assert seen["max_seconds"] == 150.0 and seen["closed"]
    assert label == "LPD (trained here, 7 steps)"
    assert (info["steps"], info["minutes"], info["best_validation_psnr"]) == (7, 1.5, 25.0)


def _fake_run(calls):
    """A stand-in for runner._run/write_outputs: a finished benchmark folder without the simulation."""

    def run(preset, folder, progress):
        calls.append(folder)
        return {"results": {}}, [], {}

    def write(folder, preset, tests, results, summary):
        (folder / "results.json").write_text("{}")

    return run, write


def test_benchmark_replaces_an_empty_folder_and_a_stale_temporary_folder(tmp_path, monkeypatch):
    """--overwrite may replace an empty folder; a .NAME.tmp left by a killed run is cleared, not an error."""
    from learnrecon.benchmark import get_preset, runner

    calls = []
    run, write = _fake_run(calls)
    monkeypatch.setattr(runner, "_run", run)
    monkeypatch.setattr(runner, "write_outputs", write)
    out = tmp_path / "out"
    out.mkdir()
    stale = tmp_path / ".out.tmp"
    stale.mkdir()
    (stale / "left-over").write_text("from a run that was killed")
    runner.run_benchmark(get_preset("smoke"), out, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["results.json"]


def test_benchmark_checks_its_checkpoints_before_any_work(tmp_path, monkeypatch):
    from learnrecon.benchmark import get_preset, runner

    calls = []
    run, write = _fake_run(calls)
    monkeypatch.setattr(runner, "_run", run)
    monkeypatch.setattr(runner, "write_outputs", write)
    preset = replace(get_preset("smoke"), checkpoints=(str(tmp_path / "missing.safetensors"),))
    with pytest.raises(LearnreconError, match="does not exist"):
        runner.run_benchmark(preset, tmp_path / "out", progress=False)
    assert calls == [] and sorted(tmp_path.iterdir()) == []


def test_benchmark_figures_show_two_samples_per_test_set_with_their_own_scores(tmp_path, monkeypatch):
    """The grid: the first two images of each test set, captioned with their own PSNR/SSIM; the bar charts:
    mean PSNR in psnr.png and mean SSIM in ssim.png.
    """
    from learnrecon.benchmark import EvalSet, report

    grids, bars = [], {}
    monkeypatch.setattr(report, "reconstruction_grid", lambda *args: grids.append(args))
    monkeypatch.setattr(report, "metric_bars", lambda path, values, metric: bars.update({path.name: values}))
    monkeypatch.setattr(report, "report_markdown", lambda preset, summary: "")
    monkeypatch.setattr(report, "write_html_report", lambda folder: None)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    tests = [EvalSet("SL", x[:1], x[:1]), EvalSet("ell", x, x)]

    def result(psnr, ssim):
        n = len(psnr)
        return {"psnr": sum(psnr) / n, "ssim": sum(ssim) / n, "psnr_per_image": psnr, "ssim_per_image": ssim,
                "reconstruction": x[:n]}  # fmt: skip

    results = {
        "A": {"SL": result([20.0], [0.5]), "ell": result([21.0, 22.0, 23.0], [0.6, 0.7, 0.8])},
        "B": {"SL": result([30.0], [0.9]), "ell": result([31.0, 32.0, 33.0], [0.1, 0.2, 0.3])},
    }
    report.write_outputs(tmp_path, None, tests, results, {"results": {}})
    ((_, truths, recon, titles, captions),) = grids
    assert titles == ["SL", "ell 0", "ell 1"] and len(truths) == len(recon["A"]) == 3
    assert captions["A"] == ["20.00 dB / 0.500", "21.00 dB / 0.600", "22.00 dB / 0.700"]
    assert captions["B"] == ["30.00 dB / 0.900", "31.00 dB / 0.100", "32.00 dB / 0.200"]
    assert bars["psnr.png"] == {"SL": {"A": 20.0, "B": 30.0}, "ell": {"A": 22.0, "B": 32.0}}
    assert bars["ssim.png"] == {"SL": {"A": 0.5, "B": 0.9}, "ell": {"A": pytest.approx(0.7), "B": pytest.approx(0.2)}}


def test_report_names_the_chosen_tv_variant_and_fbp_cutoffs_only_when_tuned():
    from learnrecon.benchmark import get_preset
    from learnrecon.benchmark.report import _fbp_tuning, report_markdown

    one = {"frequency_scaling": 1.0, "grid": [{"frequency_scaling": 1.0, "mean PSNR": 20.0}]}
    two = {"frequency_scaling": 0.8, "grid": [*one["grid"], {"frequency_scaling": 0.8, "mean PSNR": 21.0}]}
    assert _fbp_tuning(one) == ""
    assert _fbp_tuning(two) == " FBP cut-off 0.8 of Nyquist, chosen the same way (1: 20.00 dB, 0.8: 21.00 dB)."
    rows = [{"lambda": 0.5, "mean PSNR": 20.0}]
    tv = {"lam": 0.5, "isotropic": False, "nonneg": True, "validation": "val", "grids": {"anisotropic": rows}}
    cell = {"psnr": 20.0, "ssim": 0.5, "ms_per_image": 1.0, "psnr_per_image": [20.0]}
    summary = {
        "machine": machine_info(),
        "tuned": {"SL": {"FBP": one, "TV": tv}},
        "results": {"TV": {"SL": cell}},
        "pretrained": {},
        "checkpoints": {},
        "reproduced": {},
        "trained_here": {},
    }
    report = report_markdown(get_preset("smoke"), summary)
    assert "**SL**: anisotropic TV, λ = 0.5, with non-negativity, chosen by mean PSNR on val.\n" in report
    assert "FBP cut-off" not in report


def test_benchmark_test_sets_are_not_their_validation_sets():
    """Test ellipses are other images than the validation ellipses; Shepp–Logan gets another noise draw."""
    from learnrecon.benchmark import get_preset, make_tasks
    from learnrecon.operators import ParallelBeam2D

    preset = replace(get_preset("smoke"), image_size=16, n_angles=4, n_detectors=23, n_validation=2, n_test=2)
    shepp_logan, ellipses = make_tasks(preset, ParallelBeam2D(16, 4, n_detectors=23))
    assert torch.equal(shepp_logan.test.x, shepp_logan.validation.x)
    assert not torch.equal(shepp_logan.test.y, shepp_logan.validation.y)
    for a in ellipses.test.x:
        assert all(not torch.equal(a, b) for b in ellipses.validation.x)
