"""Time per image of the shipped models by inference batch size, on the quick preset's 100 held-out ellipses.

Usage: python benchmarks/inference_batch.py [--batch-sizes 16,8,4,1] [--repeats 2] [--threads 0]

Run it in a fresh process with nothing else running: on Linux with glibc, ``malloc`` serves a request over
its mmap threshold (at most 32 MB) with fresh pages from the kernel and returns them on ``free``, so a
model whose activations exceed it pays page faults on every call (a 32-channel 128² float32 activation is
33.5 MB at batch 16). How fast a batch size runs then depends on what the process allocated before (in
``learnrecon benchmark`` the model trained from scratch runs first); each model here is timed at each batch
size ``--repeats`` times in turn, with nothing before it. Writes benchmarks/results/inference-batch.{json,md}.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from learnrecon.benchmark.presets import get_preset
from learnrecon.benchmark.runner import PRETRAINED_LABELS, make_tasks, reconstruct
from learnrecon.models import pretrained
from learnrecon.report import machine_info, markdown_table, write_json

RESULTS = Path(__file__).parent / "results"


def ms_per_image(model, op, y: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    reconstruct(lambda batch: model(batch, op), y, batch_size=batch_size)
    return 1000 * (time.perf_counter() - start) / y.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="16,8,4,1", help="comma-separated batch sizes, timed in this order")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the batch sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    preset = get_preset("quick")
    op = preset.operator()
    ellipses = make_tasks(preset, op)[1].test
    rows = []
    for name in preset.pretrained:
        model = pretrained(name)
        times = {size: [ms_per_image(model, op, ellipses.y, size) for _ in range(args.repeats)] for size in sizes}
        for size, values in times.items():
            row = {"model": PRETRAINED_LABELS.get(name, name), "batch": size}
            row.update({f"ms/image, pass {i + 1}": value for i, value in enumerate(values)})
            rows.append(row)
    info = machine_info()
    write_json(RESULTS / "inference-batch.json", {"machine": info, "rows": rows})
    table = markdown_table(rows, list(rows[0]), digits={"batch": 0, **{k: 1 for k in rows[0] if k.startswith("ms")}})
    text = (
        "# Time per image of the shipped models by inference batch size (quick preset, 100 held-out ellipses)\n\n"
        "Each model timed at each batch size in turn, in one fresh process, once per pass; no gradients.\n"
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads). Command: `{shlex.join(['python', *sys.argv])}`.\n\n"
        f"{table}"
    )
    (RESULTS / "inference-batch.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
