"""Peak memory of the commands that stream a data set: ``learnrecon simulate`` and ``learnrecon reconstruct``.

Each command runs in a fresh process (``python -m learnrecon.cli``, as the ``learnrecon`` script runs it) on
data sets of 2,000 and 20,000 images of 128² (the quick preset's geometry: 30 angles, 183 detectors); the learned
model, about 1 s per image on a 2-core CPU, runs on the first ``--model-images`` of them (200 and 2,000 by
default). Its peak resident memory is the child's ``ru_maxrss`` from ``os.wait4``. The commands read, reconstruct
and write one batch at a time, so the peak should not grow with the number of images.

    python benchmarks/streaming.py [--sizes 2000,20000] [--model-sizes 200,2000] [--folder /tmp/streaming]

writes benchmarks/results/streaming-cpu.md and .json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from learnrecon.report import machine_info, markdown_table, write_json

RESULTS = Path(__file__).resolve().parent / "results"

#: The commands measured at each size: name -> arguments after ``learnrecon`` (``{data}``, ``{out}`` filled in).
COMMANDS = {
    "simulate": ["simulate", "--n", "{n}", "--size", "128", "--angles", "30", "--detectors", "183", "--out", "{data}"],
    "reconstruct --method fbp": ["reconstruct", "--method", "fbp", "--in", "{data}", "--out", "{out}"],
}  # fmt: skip
#: The learned model's command, on its own (smaller) data sets.
MODEL_COMMANDS = {
    "simulate": COMMANDS["simulate"],
    "reconstruct --pretrained lpd-ellipses": [
        "reconstruct", "--pretrained", "lpd-ellipses", "--in", "{data}", "--out", "{out}",
    ],
}  # fmt: skip


def run(args: list[str]) -> tuple[float, float]:
    """Run ``learnrecon args`` in a fresh process: its peak resident memory (MiB) and wall time (s)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "learnrecon.cli", *args, "--quiet"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"learnrecon {' '.join(args)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def measure(commands: dict[str, list[str]], n: int, folder: Path) -> list[dict]:
    """Run each command on a data set of ``n`` images (simulated by the first): one row per command."""
    data, out = folder / f"data-{n}.h5", folder / f"recon-{n}.h5"
    rows = []
    for name, template in commands.items():
        for path in (out, out.with_suffix(".png"), *([data] if name == "simulate" else [])):
            path.unlink(missing_ok=True)
        peak, seconds = run([a.format(n=n, data=data, out=out) for a in template])
        rows.append({"command": name, "images": n, "peak RSS (MiB)": peak, "seconds": seconds})
        print(rows[-1], flush=True)
    rows.append({"command": "data file size (MiB)", "images": n, "peak RSS (MiB)": data.stat().st_size / 2**20})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000", help="numbers of images for simulate and FBP")
    parser.add_argument("--model-sizes", default="200,2000", help="numbers of images for the learned model")
    parser.add_argument("--folder", default="/tmp/learnrecon-streaming", help="where the data files go (deleted)")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            rows += measure(COMMANDS, n, folder)
        for n in (int(s) for s in args.model_sizes.split(",")):
            rows += measure(MODEL_COMMANDS, n, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    info = machine_info()
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "streaming-cpu.json", {"machine": info, "rows": rows})
    table = markdown_table(rows, ["command", "images", "peak RSS (MiB)", "seconds"], digits={"peak RSS (MiB)": 0})
    (RESULTS / "streaming-cpu.md").write_text(
        "# Peak memory of the streaming commands\n\n"
        f"`python benchmarks/streaming.py --sizes {args.sizes} --model-sizes {args.model_sizes}`: each command in a "
        "fresh process, its peak resident memory from `os.wait4`; 128² images, 30 angles, 183 detectors, 5 % "
        "relative noise. The target: within 1.5 GB at 20,000 images, and about the same as at 2,000.\n\n"
        f"{table}\n"
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']}, learnrecon "
        f"{info['learnrecon']}; other work ran on the machine at the same time, so the times are upper bounds.\n"
    )


if __name__ == "__main__":
    main()
