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
