"""Figures: the reconstruction grid's panel titles wrap long method names instead of running into each other."""

import torch

from learnrecon.report import reconstruction_grid
from learnrecon.report.figures import TITLE_WIDTH, _title


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
    from learnrecon.benchmark.runner import results_table

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
    from learnrecon.benchmark import get_preset
    from learnrecon.benchmark.runner import pretrained_methods
    from learnrecon.models import pretrained
    from learnrecon.operators import ParallelBeam2D

    op = ParallelBeam2D(32, 6, n_detectors=47)
    names = ("fbpconvnet-ellipses", "lgd-ellipses")
    methods, provenance = pretrained_methods(replace(get_preset("smoke"), pretrained=names), op)
    y = op(phantoms.random_ellipses(1, 32, seed=0))
    with torch.no_grad():
        for label, name in zip(methods, names, strict=True):
            assert provenance[label]["name"] == name
            torch.testing.assert_close(methods[label](y), pretrained(name)(y, op))


def test_tv_tuning_keeps_the_better_variant():
    from dataclasses import replace

    from learnrecon import phantoms
    from learnrecon.benchmark import get_preset
    from learnrecon.benchmark.runner import EvalSet, tune_tv
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
