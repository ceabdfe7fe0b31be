"""Training throughput: optimiser steps per second of the shipped models (batch 5, 128², 30 angles).

Usage: python benchmarks/training.py [--models lpd,lgd,fbpconvnet] [--steps 10] [--device cpu] [--amp]
[--checkpoint-activations]

Times full training steps of the shipped ``<model>-ellipses`` networks (their architecture, e.g. the
width-24 U-Net, with their weights) on the ``configs/<model>_ellipses.yaml`` data (simulated batch, forward,
loss, backward, clipping, Adam) after two warm-up steps, and the megabytes autograd keeps from a forward pass
for the backward pass. Writes benchmarks/results/training-<device>[-bf16][-checkpointed].json and .md;
``--amp`` runs the networks in bfloat16 autocast (CUDA); ``--checkpoint-activations`` recomputes each
iteration of the unrolled models (LGD, LPD) in the backward pass instead of keeping its activations. The batch
is simulated on the CPU in the step ("of which data s"); the trainer's ``num_workers`` takes that off the step.
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
from learnrecon.data.sources import make_training_data
from learnrecon.models import pretrained
from learnrecon.report import machine_info, markdown_table
from learnrecon.training.trainer import step_positions

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def saved_for_backward_mb(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, op) -> float:
    """Megabytes a forward pass keeps for the backward pass: the tensors autograd saves (activations) and,
    when the model recomputes its iterations, the states it holds between them to recompute from."""
    sizes = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    def held_state(module: torch.nn.Module, args: tuple) -> None:
        sizes.extend(t.numel() * t.element_size() for t in args[0])

    recompute = getattr(model, "checkpoint_activations", False)
    hooks = [step.register_forward_pre_hook(held_state) for step in model.steps] if recompute else []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.mse_loss(model(y, op).float(), x)
    for hook in hooks:
        hook.remove()
    del loss
    return sum(sizes) / 2**20


def time_steps(name: str, steps: int, device: torch.device, amp: bool = False, recompute: bool = False) -> dict:
    values = yaml.safe_load((CONFIGS / f"{name}_ellipses.yaml").read_text())
    config = from_dict(values)
    data, op = make_training_data(config.data)
    model = pretrained(f"{name}-ellipses", device=str(device)).train()
    model.checkpoint_activations = recompute
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
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        saved = saved_for_backward_mb(model, x, y, op)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": config.training.batch_size,
        "steps/s": 1 / median,
        "s/step": median,
        "of which data s": statistics.median(data_times),
        "kept for backward MB": saved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="lpd,lgd,fbpconvnet")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument(
        "--checkpoint-activations", action="store_true", help="recompute unrolled iterations in the backward pass"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [
        time_steps(name, args.steps, device, args.amp, args.checkpoint_activations) for name in args.models.split(",")
    ]
    info = machine_info(device)
    tag = info.get("gpu", "cpu").replace(" ", "-") + ("-bf16" if args.amp else "")
    tag += "-checkpointed" if args.checkpoint_activations else ""
    table = markdown_table(
        rows, list(rows[0]), digits={"steps/s": 2, "s/step": 3, "of which data s": 3, "kept for backward MB": 1}
    )
    text = (
        f"# Training throughput: the shipped models (128², 30 angles, batch 5), median of {args.steps} "
        f"steps after 2 warm-up steps, device {info['device']}"
        + (", each unrolled iteration recomputed in the backward pass" if args.checkpoint_activations else "")
        + f"\n\n{provenance(info)}\n\n{table}"
    )
    publish(f"training-{tag}", {"machine": info, "steps": args.steps, "rows": rows}, text)


if __name__ == "__main__":
    main()
