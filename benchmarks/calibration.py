"""Calibration from data alone: a centre-of-rotation shift and a Gaussian blur width, against the true values.

Usage: python benchmarks/calibration.py [--size 128] [--n 16] [--noise 0.05]

Shift: parallel beam, 30 angles over [0, π), ``n`` ellipse phantoms (the shipped models' kind), data shifted by
the true offset with ``noise`` relative Gaussian noise; ``estimate_detector_shift`` (Helgason–Ludwig moments).
Blur: the same phantoms blurred by ``GaussianBlur(σ)`` with the same noise; ``estimate_blur_width`` with 32 prior
images of another seed and the same noise model. Writes benchmarks/results/calibration.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import provenance, publish

from learnrecon import phantoms
from learnrecon.calibration import edge_width, estimate_blur_width, estimate_detector_shift
from learnrecon.noise import gaussian
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.calibrated import GaussianBlur, ShiftedDetector
from learnrecon.report import machine_info, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = phantoms.draw_ellipses("ellipses", n=args.n, size=args.size, seed=2).double()
    prior = phantoms.draw_ellipses("ellipses", n=32, size=args.size, seed=77).double()
    noisy = lambda z, seed: gaussian(z, relative=args.noise, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    ray = ParallelBeam2D(args.size, 30)
    rows, record = [], {"machine": machine_info(), "options": vars(args), "shift": [], "blur": []}
    for true in (-3.0, -0.4, 0.0, 0.7, 1.5, 2.3):
        start = time.perf_counter()
        estimate = estimate_detector_shift(noisy(ShiftedDetector(ray, true)(x), 0), ray)
        error = estimate - true
        record["shift"].append({"true": true, "estimate": estimate, "error_cells": error})
        rows.append(
            {
                "parameter": "detector shift (cells)",
                "true": f"{true:g}",
                "estimate": f"{estimate:.3f}",
                "error": f"{error:+.3f} cells",
                "s": f"{time.perf_counter() - start:.2f}",
            }
        )
    for true in (0.8, 1.0, 1.5, 2.0, 2.5, 3.0):
        start = time.perf_counter()
        y = noisy(GaussianBlur(args.size, true)(x), 0)
        estimate = estimate_blur_width(y, prior, noise=lambda z: noisy(z, 5))
        raw = edge_width(y)
        record["blur"].append({"true": true, "estimate": estimate, "raw_edge_width": raw})
        rows.append(
            {
                "parameter": "blur width σ (px)",
                "true": f"{true:g}",
                "estimate": f"{estimate:.3f} (raw edge width {raw:.3f})",
                "error": f"{100 * (estimate / true - 1):+.1f} %",
                "s": f"{time.perf_counter() - start:.1f}",
            }
        )
    text = (
        "# Calibration from data alone\n\n"
        f"{args.n} random-ellipse phantoms of {args.size}², {100 * args.noise:g} % relative Gaussian noise. Shift: "
        "parallel beam, 30 angles, moment method. Blur: re-blur edge ratio read off the response curve of 32 prior "
        "images (another seed) with the same noise model.\n\n"
        f"{markdown_table(rows, list(rows[0]))}\n\n{provenance(record['machine'])}\n"
    )
    publish("calibration", record, text)


if __name__ == "__main__":
    main()
