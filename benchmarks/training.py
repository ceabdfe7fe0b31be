"""Training throughput: optimiser steps per second of the shipped models (batch 5, 128², 30 angles).

Usage: python benchmarks/training.py [--models lpd,lgd,fbpconvnet] [--steps 10] [--device cpu] [--amp]
Times full training steps of the shipped ``<model>-ellipses`` networks (their architecture, e.g. the
width-24 U-Net, with their weights) on the ``configs/<model>_ellipses.yaml`` data (simulated batch, forward,
loss, backward, clipping, Adam) after two warm-up steps, and writes
benchmarks/results/training-<device>[-bf16].json and .md; ``--amp`` runs the networks in bfloat16 autocast
(CUDA). The batch is simulated on the CPU in the step ("of which data s"); the trainer's ``num_workers``
takes that off the step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml
from results_file import provenance, publish

from learnrecon.config import from_dict
from learnrecon.models import pretrained
from learnrecon.report import machine_info, markdown_table
from learnrecon.training.data import make_training_data, step_positions

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def time_steps(name: str, steps: int, device: torch.device, amp: bool = False) -> dict:
    values = yaml.safe_load((CONFIGS / f"{name}_ellipses.yaml").read_text())
    config = from_dict(values)
    data, op = make_training_data(config.data)
    model = pretrained(f"{name}-ellipses", device=str(device)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data_times, step_times = [], []
    for step in range(steps + 2):
        start = time.perf_counter()
        x, y = (v.to(device) for v in data.batch(step_positions(step, config.training.batch_size)))
        loaded = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.mse_loss(model(y, op).float(), x)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            data_times.append(loaded - start)
            step_times.append(time.perf_counter() - start)
    median = statistics.median(step_times)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": config.training.batch_size,
        "steps/s": 1 / median,
        "s/step": median,
        "of which data s": statistics.median(data_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="lpd,lgd,fbpconvnet")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [time_steps(name, args.steps, device, args.amp) for name in args.models.split(",")]
    info = machine_info(device)
    tag = info.get("gpu", "cpu").replace(" ", "-") + ("-bf16" if args.amp else "")
    table = markdown_table(rows, list(rows[0]), digits={"steps/s": 2, "s/step": 3, "of which data s": 3})
    text = (
        f"# Training throughput: the shipped models (128², 30 angles, batch 5), median of {args.steps} "
        f"steps after 2 warm-up steps, device {info['device']}\n\n{provenance(info)}\n\n{table}"
    )
    publish(f"training-{tag}", {"machine": info, "steps": args.steps, "rows": rows}, text)


if __name__ == "__main__":
    main()
