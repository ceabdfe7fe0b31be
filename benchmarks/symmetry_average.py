"""How far the shipped models are from equivariant: each alone and averaged over the symmetries of the geometry.

Usage: python benchmarks/symmetry_average.py [--preset quick|dival] [--threads 2]

The presets' geometry (128², 30 uniform angles over [0, π)) is carried onto itself by the eight quarter turns
and reflections of the image grid (``learnrecon.operators.symmetry``), and so is the distribution of the
training ellipses. A model that had learned that symmetry would give the same result as its average over the
eight (``learnrecon.models.ensemble.SymmetryAverage``); the gain of the average measures what it has not
learned, at eight times the cost. A model that is averaged so by construction (an FBPConvNet with ``symmetric:
true``) is reported as shipped and with the same weights not averaged. For each shipped model of the preset
this reconstructs its Shepp–Logan and 100 held-out ellipses both ways and reports the mean PSNR/SSIM and the
time per image.
Writes benchmarks/results/symmetry-average-<preset>.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import provenance, publish

from learnrecon import metrics
from learnrecon.benchmark import PRETRAINED_LABELS, make_tasks
from learnrecon.benchmark.presets import get_preset
from learnrecon.evaluation import predict
from learnrecon.models import pretrained
from learnrecon.models.ensemble import SymmetryAverage
from learnrecon.report import machine_info, markdown_table
from learnrecon.runtime import tune_malloc


def row_for(label: str, variant: str, model, op, tasks) -> dict:
    """Mean PSNR/SSIM of ``model`` on each test set and its time per image (all test sets together)."""
    row, seconds, images = {"model": label, "variant": variant}, 0.0, 0
    for task in tasks:
        start = time.perf_counter()
        x_hat = predict(model, task.test.y, op)
        seconds += time.perf_counter() - start
        images += task.test.y.shape[0]
        row[f"PSNR {task.test.name}"] = float(metrics.psnr(x_hat, task.test.x).mean())
        row[f"SSIM {task.test.name}"] = float(metrics.ssim(x_hat, task.test.x).mean())
    row["ms/image"] = 1000 * seconds / images
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("quick", "dival"), default="quick", help="the benchmark preset's data")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    tune_malloc()  # as the learnrecon command does (benchmarks/allocator.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    op = preset.operator()
    tasks = make_tasks(preset, op)
    rows = []
    for name in preset.pretrained:
        model, label = pretrained(name), PRETRAINED_LABELS.get(name, name)
        if getattr(model, "symmetric", False):  # an FBPConvNet whose U-Net is averaged so already
            rows.append(row_for(label, "as shipped: its U-Net averaged over 8 symmetries", model, op, tasks))
            model.symmetric = False
            rows.append(row_for(label, "the same U-Net, not averaged", model, op, tasks))
            continue
        rows.append(row_for(label, "alone", model, op, tasks))
        rows.append(row_for(label, "averaged over 8 symmetries", SymmetryAverage(model), op, tasks))
    info = machine_info()
    stem = f"symmetry-average-{preset.name}"
    digits = {key: 3 for key in rows[0] if key.startswith("SSIM")}
    table = markdown_table(rows, list(rows[0]), digits={**digits, "ms/image": 1})
    text = (
        f"# Shipped models alone and averaged over the symmetries of the geometry ({preset.name} preset)\n\n"
        f"Data: {preset.description}.\n\n"
        "x̂(y) = (1/8) Σ_g g⁻¹ f(T_g y) over the quarter turns and reflections g of the image grid, "
        "T_g their action on the data (A g = T_g A). Mean PSNR (dB) and SSIM on Shepp–Logan and 100 held-out "
        "ellipses; time per image over both test sets.\n"
        f"{provenance(info)}\n\n{table}"
    )
    publish(stem, {"machine": info, "preset": preset.name, "rows": rows}, text)


if __name__ == "__main__":
    main()
