"""Time per image of the shipped models with glibc malloc's default policy and with ``tune_malloc``.

Usage: python benchmarks/allocator.py [--batch-sizes 16,8,4,1] [--repeats 2] [--threads 0]

glibc serves a request over its mmap threshold (at most 32 MB; a 32-channel 128² float32 activation is
33.5 MB at batch 16) with fresh pages from the kernel and returns them on ``free``, so the models take page
faults on every forward pass; how often smaller requests do depends on what the process freed before.
``learnrecon.runtime.tune_malloc`` (which the ``learnrecon`` command calls) keeps them on the heap for reuse.
Each policy runs in a fresh process with nothing before it: each shipped model reconstructs the quick
preset's 100 held-out ellipses at each batch size in turn, ``--repeats`` times; the process's time in the
kernel and its minor page faults are reported beside. Writes benchmarks/results/allocator.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from results_file import provenance, publish

from learnrecon.report import machine_info, markdown_table

POLICIES = {"default": "glibc's default", "tuned": "tune_malloc"}


def measure(policy: str, sizes: list[int], repeats: int) -> dict:
    """In this process: set ``policy``, then time every shipped model at every batch size ``repeats`` times."""
    from learnrecon.benchmark import PRETRAINED_LABELS, make_tasks
    from learnrecon.benchmark.presets import get_preset
    from learnrecon.evaluation import predict
    from learnrecon.models import pretrained
    from learnrecon.runtime import tune_malloc

    if policy == "tuned" and not tune_malloc():
        raise SystemExit("tune_malloc did not apply here (not glibc, or the environment sets the allocator)")
    preset = get_preset("quick")
    op = preset.operator()
    y = make_tasks(preset, op)[1].test.y
    times = {}
    for name in preset.pretrained:
        model = pretrained(name)
        for size in sizes:
            for _ in range(repeats):
                start = time.perf_counter()
                predict(model, y, op, batch_size=size)
                elapsed = 1000 * (time.perf_counter() - start) / y.shape[0]
                times.setdefault(f"{PRETRAINED_LABELS.get(name, name)}|{size}", []).append(elapsed)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"ms_per_image": times, "kernel_seconds": usage.ru_stime, "minor_page_faults": usage.ru_minflt}


def run_policy(policy: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", policy, "--batch-sizes", args.batch_sizes]
    command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="16,8,4,1", help="comma-separated batch sizes, timed in this order")
    parser.add_argument("--repeats", type=int, default=2, help="passes over each batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    if args.worker:
        print(json.dumps(measure(args.worker, sizes, args.repeats)))
        return
    runs = {policy: run_policy(policy, args) for policy in POLICIES}
    rows = []
    for key in runs["default"]["ms_per_image"]:
        model, size = key.split("|")
        row = {"model": model, "batch": int(size)}
        for policy, label in POLICIES.items():
            row[f"ms/image, {label}"] = min(runs[policy]["ms_per_image"][key])
        rows.append(row)
    info = machine_info()
    table = markdown_table(rows, list(rows[0]), digits={"batch": 0, **{k: 1 for k in rows[0] if k.startswith("ms")}})
    process = "; ".join(
        f"{label}: {runs[policy]['kernel_seconds']:.1f} s in the kernel, "
        f"{runs[policy]['minor_page_faults']:,} minor page faults"
        for policy, label in POLICIES.items()
    )
    text = (
        "# Time per image of the shipped models with glibc malloc's default policy and with tune_malloc\n\n"
        f"Quick preset, 100 held-out ellipses; the faster of {args.repeats} passes. Each policy in one fresh "
        f"process ({process}).\n"
        f"{provenance(info)}\n\n{table}"
    )
    publish("allocator", {"machine": info, "runs": runs, "rows": rows}, text)


if __name__ == "__main__":
    main()
