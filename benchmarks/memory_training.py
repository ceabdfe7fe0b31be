"""Reconstruction quality of the memory-saving ways to train, at equal steps: plain LPD, invertible LPD, greedy LPD
and LPD trained on a quarter of the angles per step.

Usage: python benchmarks/memory_training.py [--size 64] [--angles 32] [--steps 300] [--batch 4] [--width 16]
                                            [--iterations 10] [--threads 1]

Each run trains from scratch with the trainer (``Trainer.from_config``) on the same simulated ellipses (``size``²,
``angles`` parallel-beam angles, 5 % relative Gaussian noise, FBP initialisation), the same seeds, steps, batch and
learning rate (1e-3, cosine): ``lpd``; ``ilpd`` (its width chosen for about LPD's number of parameters: four
couplings an iteration on half the channels); ``lpd greedy`` (``training.greedy_steps = steps / (iterations + 1)``:
one stage an iteration, then as many steps end to end); ``lpd 1/4 angles`` (``training.angle_fraction = 0.25``,
validated with every angle). Reports the validation PSNR of the last step (32 held-out ellipses) and the wall time.
A reduced CPU case: the issue's targets are stated for the quick preset (128², 30 angles) and longer training.
Writes benchmarks/results/memory-training-cpu.{json,md} (``--stem``; ``--merge A.json B.json`` publishes the rows of
runs made in parallel processes as one table).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import torch
from results_file import provenance, publish

from learnrecon.config import from_dict
from learnrecon.report import machine_info, markdown_table
from learnrecon.training import Trainer


def run(name: str, model: dict, training: dict, args: argparse.Namespace, out: Path) -> dict:
    values = {
        "model": model,
        "data": {
            "operator": {"type": "ParallelBeam2D", "image_size": args.size, "n_angles": args.angles},
            "noise": "relative:0.05",
            "seed": 1000,
            "n_validation": 32,
            "validation_seed": 999,
        },
        "training": {
            "steps": args.steps,
            "batch_size": args.batch,
            "lr": 1e-3,
            "threads": args.threads,
            "device": "cpu",
            "log_every": 10,
            "validate_every": args.steps,
            "checkpoint_every": args.steps,
            "figure_every": 10 * args.steps,
            **training,
        },
    }
    torch.manual_seed(0)
    trainer = Trainer.from_config(from_dict(values), out / name.replace(" ", "_").replace("/", "-"), progress=False)
    parameters = sum(p.numel() for p in trainer.model.parameters())
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.close()
    with (trainer.out / "validation.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    return {
        "run": name,
        "parameters": parameters,
        "validation PSNR": float(last["psnr"]),
        "validation SSIM": float(last["ssim"]),
        "wall s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--angles", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="lpd,ilpd,greedy,subsampled")
    parser.add_argument("--stem", default="memory-training-cpu", help="results/<stem>.{json,md}")
    parser.add_argument(
        "--merge", nargs="*", default=None, help="publish the rows of these results JSON files together instead"
    )
    args = parser.parse_args()
    n, w = args.iterations, args.width
    lpd = {"name": "lpd", "params": {"n_iter": n, "width": w, "init": "fbp"}}
    ilpd_width = max(2, round(w * 0.7))
    ilpd = {"name": "ilpd", "params": {"n_iter": n, "width": ilpd_width, "init": "fbp"}}
    greedy_steps = args.steps // (n + 1)
    runs = {
        "lpd": ("lpd", lpd, {}),
        "ilpd": (f"ilpd (width {ilpd_width})", ilpd, {}),
        "greedy": (f"lpd greedy ({greedy_steps} steps a stage)", lpd, {"greedy_steps": greedy_steps}),
        "subsampled": ("lpd 1/4 angles", lpd, {"angle_fraction": 0.25}),
    }
    rows = []
    if args.merge is not None:
        for path in args.merge:
            rows += json.loads(Path(path).read_text())["rows"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.runs.split(",") if args.merge is None else ():
            name, model, training = runs[key]
            rows.append(run(name, model, training, args, Path(tmp)))
            print(rows[-1], flush=True)
    info = machine_info()
    digits = {"parameters": 0, "validation PSNR": 2, "validation SSIM": 3, "wall s": 0}
    text = (
        f"# Memory-saving training at equal steps: {args.size}², {args.angles} angles, {args.steps} steps, batch "
        f"{args.batch}, LPD width {w}, {n} iterations\n\n"
        "Each from scratch with the same data, seeds and learning rate; validation PSNR (dB) of the last step on 32 "
        "held-out ellipses, wall time of the training (the validation included). A reduced CPU case, on a 2-core "
        "CPU shared with other jobs (the wall times are indicative).\n"
        f"{provenance(info)}\n\n" + markdown_table(rows, list(rows[0]), digits=digits) + "\n"
    )
    publish(args.stem, {"machine": info, "args": vars(args), "rows": rows}, text)


if __name__ == "__main__":
    main()
