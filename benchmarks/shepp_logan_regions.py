"""Where each method's error lies on the quick preset's Shepp–Logan test: the skull rim against the rest.

Usage: python benchmarks/shepp_logan_regions.py [--threads 2]

Reconstructs the quick preset's Shepp–Logan data (5 % relative noise, the benchmark's noise draw) with
FBP, TV (tuned on the validation noise draw, as in the benchmark) and the shipped models, and splits the
squared error between the skull rim (the skull label of :func:`learnrecon.phantoms.shepp_logan_labels`
dilated by ``--margin`` pixels) and the rest of the image. PSNR of a region is ``10 log10(1 / MSE)``
over its pixels (the phantom spans [0, 1]). Writes benchmarks/results/shepp-logan-regions.{json,md} and a
figure of the top of the skull in each reconstruction, with error maps.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from results_file import RESULTS, provenance, publish

from learnrecon import phantoms
from learnrecon.benchmark import make_tasks, pretrained_methods, tune_tv
from learnrecon.benchmark.presets import get_preset
from learnrecon.evaluation import predict
from learnrecon.report import machine_info, markdown_table, reconstruction_grid
from learnrecon.solvers import fbp, tv_pdhg


def rim_mask(size: int, margin: int) -> torch.Tensor:
    """(H, W) bool: pixels within ``margin`` pixels (chessboard distance) of the Shepp–Logan skull."""
    skull = (phantoms.shepp_logan_labels(size) == 1).float()[None, None]
    return F.max_pool2d(skull, 2 * margin + 1, stride=1, padding=margin)[0, 0] > 0


def region_row(name: str, x_hat: torch.Tensor, x: torch.Tensor, rim: torch.Tensor) -> dict:
    """PSNR over the whole image, the rim and the rest, and the rim's share of the squared error."""
    squared = (x_hat - x)[0, 0].double() ** 2

    def db(values: torch.Tensor) -> float:
        return 10 * math.log10(1 / float(values.mean()))

    return {
        "method": name,
        "PSNR": db(squared),
        "PSNR rim": db(squared[rim]),
        "PSNR elsewhere": db(squared[~rim]),
        "rim share of squared error": float(squared[rim].sum() / squared.sum()),
    }


def crop_figure(path: Path, x: torch.Tensor, reconstructions: dict[str, torch.Tensor], rows: list[dict]) -> None:
    """The top of the skull (rows 0–47, columns 8–55) in the truth and each reconstruction, with error maps,
    each captioned with its PSNR over the image and over the rim."""
    crop = (0, 0, slice(0, 48), slice(8, 56))
    images = {name: [x_hat[crop]] for name, x_hat in reconstructions.items()}
    captions = {row["method"]: [f"{row['PSNR']:.2f} dB, rim {row['PSNR rim']:.2f} dB"] for row in rows}
    reconstruction_grid(path, [x[crop]], images, ["top of the skull"], captions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--margin", type=int, default=2, help="pixels added around the skull label")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset("quick")
    op = preset.operator()
    task = make_tasks(preset, op)[0]  # Shepp–Logan
    tv_params, _ = tune_tv(preset, op, task.validation)
    methods = {
        f"FBP ({preset.fbp_filter})": lambda y, op: fbp(y, op, filter=preset.fbp_filter),
        "TV": lambda y, op: tv_pdhg(y, op, n_iter=preset.tv_iterations, **tv_params),
        **pretrained_methods(preset, op)[0],
    }
    x, rim = task.test.x, rim_mask(preset.image_size, args.margin)
    reconstructions = {name: predict(method, task.test.y, op) for name, method in methods.items()}
    rows = [region_row(name, x_hat, x, rim) for name, x_hat in reconstructions.items()]
    info = machine_info()
    summary = {"machine": info, "tv": tv_params, "margin": args.margin, "rows": rows}
    crop_figure(RESULTS / "shepp-logan-skull.png", x, reconstructions, rows)
    table = markdown_table(rows, list(rows[0]), digits={"rim share of squared error": 3})
    text = (
        "# Shepp–Logan error by region (quick preset: 128², 30 angles, 5 % relative noise)\n\n"
        f"Rim: the skull label dilated by {args.margin} pixels ({int(rim.sum())} of {rim.numel()} pixels). "
        f"TV: {tv_params}, tuned on the validation noise draw.\n"
        f"{provenance(info)}\n"
        "The top of the skull, rows 0–47 and columns 8–55, with error maps: shepp-logan-skull.png.\n\n"
        f"{table}"
    )
    publish("shepp-logan-regions", summary, text)


if __name__ == "__main__":
    main()
